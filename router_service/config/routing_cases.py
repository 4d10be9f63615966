"""The ``tests:`` of a routing file, and of its sibling ``<name>.tests.yaml``.

A case::

    tests:
      - name: pager storm          # optional; default "tests[i]"
        payload: {source: pager, ticket: {priority: 9}}
        kind: emergency            # at least one of kind, rule, agents
        rule: pager-high-priority
        agents: [oncall-agent, support-agent]

``routing.yaml`` may carry them itself or sit beside ``routing.tests.yaml`` (a mapping with one
key, ``tests``); both count. Errors name the file, the YAML path and the line, like the rest of
the routing file. The sibling file does not change the routing version (a content hash of the
routing file alone): tests do not route anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from router_service.config.routing_conditions import json_value
from router_service.config.routing_file import RoutingConfig
from router_service.config.yaml_doc import Doc, list_of, load_yaml, mapping_of, string_of
from router_service.domain.classify import DEFAULT_RULE
from router_service.domain.errors import ConfigError
from router_service.domain.routing_tests import CaseResult, RoutingCase, run_cases

_CASE_KEYS = ("name", "payload", "kind", "rule", "agents")


def sibling_tests_file(path: str | Path) -> Path:
    """``routing.yaml`` -> ``routing.tests.yaml`` (``.yml`` likewise)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tests{path.suffix or '.yaml'}")


def parse_cases(doc: Doc, value: object, config: RoutingConfig) -> tuple[RoutingCase, ...]:
    """The ``tests`` list; rule ids and agents must exist in ``config``."""
    cases = []
    rule_ids = {r.id for r in config.classifier.rules} | {DEFAULT_RULE}
    for i, item in enumerate(list_of(doc, value, ("tests",), allow_empty=True)):
        path: tuple[str | int, ...] = ("tests", i)
        spec = mapping_of(doc, item, path, required=("payload",), optional=_CASE_KEYS)
        if not any(key in spec for key in ("kind", "rule", "agents")):
            raise doc.error(path, "a test needs at least one of kind, rule, agents")
        payload = spec["payload"]
        if not isinstance(payload, dict):
            raise doc.error((*path, "payload"), "the payload must be a mapping")
        json_value(doc, payload, (*path, "payload"))  # refuses non-JSON values
        name = string_of(doc, spec.get("name", f"tests[{i}]"), (*path, "name"))
        rule = string_of(doc, spec["rule"], (*path, "rule")) if "rule" in spec else None
        if rule is not None and rule not in rule_ids:
            raise doc.error((*path, "rule"), f"unknown rule {rule!r}")
        agents = None
        if "agents" in spec:
            items = list_of(doc, spec["agents"], (*path, "agents"))
            agents = tuple(string_of(doc, a, (*path, "agents", j)) for j, a in enumerate(items))
            for j, agent in enumerate(agents):
                if agent not in config.agents:
                    raise doc.error((*path, "agents", j), f"unknown agent {agent!r}")
        kind = string_of(doc, spec["kind"], (*path, "kind")) if "kind" in spec else None
        line = doc.lines.get(path)
        cases.append(RoutingCase(name, payload, kind, rule, agents, f"{doc.source}:{line or '?'}"))
    return tuple(cases)


def with_sibling_cases(config: RoutingConfig, path: str | Path) -> RoutingConfig:
    """``config`` plus the cases of its sibling ``*.tests.yaml``, when there is one."""
    sibling = sibling_tests_file(path)
    try:
        text = sibling.read_text(encoding="utf-8")
    except FileNotFoundError:
        return config
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{sibling}: cannot read the tests file: {exc}") from exc
    data, doc = load_yaml(text, str(sibling))
    top = mapping_of(doc, data, (), required=("tests",))
    return dataclasses.replace(config, tests=config.tests + parse_cases(doc, top["tests"], config))


def check_cases(config: RoutingConfig) -> list[CaseResult]:
    return run_cases(config.classifier, config.table, config.tests)


def require_passing(config: RoutingConfig) -> None:
    """``ConfigError`` listing the failing cases: a file whose own tests fail is not served."""
    failed = [r for r in check_cases(config) if not r.passed]
    if failed:
        details = "; ".join(r.describe().replace("\n", " ").replace("  ", " ") for r in failed)
        raise ConfigError(
            f"{config.source}: {len(failed)} of {len(config.tests)} routing tests fail: {details}",
            details={"file": config.source, "failed": [r.case.name for r in failed]},
        )
