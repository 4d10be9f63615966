"""The routing file: valid shapes load into frozen objects, every mistake in the file's YAML
names file/path/line, and the shipped file routes its examples. Mistakes in its entries are in
``test_routing_config_entries.py``, in rule conditions in ``test_routing_config_conditions.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router_service.config.routing_file import (
    DEFAULT_ROUTING_FILE,
    RoutingConfig,
    load_routing_config,
)
from router_service.domain.classify import Classification
from router_service.domain.errors import ConfigError
from router_service.domain.routing import AgentSpec, Mode
from tests.support.routing_parsing import AGENTS, ROUTES, build, error, line_of, parse

# --- valid files -------------------------------------------------------------------------------


def test_the_example_from_the_docs_loads() -> None:
    text = textwrap.dedent(
        """\
        agents:
          - name: policy-agent
            url: http://127.0.0.1:9100/agents/policy-agent
            timeout_ms: 1000
          - {name: oncall-agent, url: "http://127.0.0.1:9100/agents/oncall-agent"}
          - {name: support-agent, url: "http://127.0.0.1:9100/agents/support-agent"}
          - {name: general-agent, url: "http://127.0.0.1:9100/agents/general-agent"}
        rules:
          - id: emergency-keywords
            kind: emergency
            when: {keywords: [emergency, outage, "on fire", sev1]}
          - id: high-priority-ticket
            kind: emergency
            when: {all: [{field: ticket.priority, gte: 9}, {field: source, equals: pager}]}
        routes:
          emergency: {agents: [oncall-agent, support-agent], mode: aggregate}
          default: {agents: [general-agent], mode: fallback}
        """
    )
    config = parse(text)
    assert config.source == "routing.yaml"
    assert config.agents["policy-agent"] == AgentSpec(
        "policy-agent", "http://127.0.0.1:9100/agents/policy-agent", 1.0
    )
    assert config.agents["oncall-agent"].timeout_s is None
    classify = config.classifier.classify
    assert classify({"m": "we are ON  FIRE"}) == Classification("emergency", "emergency-keywords")
    assert classify({"ticket": {"priority": 9}, "source": "pager"}).rule == "high-priority-ticket"
    assert classify({"ticket": {"priority": 8}, "source": "pager"}).kind == "default"
    plan = config.table.plan("emergency", "emergency-keywords")
    assert plan.mode is Mode.AGGREGATE
    assert plan.agent_names == ["oncall-agent", "support-agent"]
    assert config.table.route_for("default").mode is Mode.FALLBACK


def test_timeout_ms_becomes_seconds_and_mode_defaults_to_first_success() -> None:
    config = parse(build())
    assert config.agents["b.agent_2"].timeout_s == 1.5
    assert config.table.routes["default"].mode is Mode.FIRST_SUCCESS


def test_rules_are_optional() -> None:
    config = parse(build())
    assert config.classifier.rules == ()
    assert config.classifier.classify({"m": "anything"}).kind == "default"


def test_every_operator_parses() -> None:
    config = parse(
        build(
            r"""
            - {id: kw, kind: k1, when: {keywords: [refund, "credit card"], field: body}}
            - {id: re, kind: k2, when: {regex: 'INV-\d+', flags: i}}
            - {id: pre, kind: k3, when: {prefix: "re:", case_sensitive: false, field: subject}}
            - {id: eq, kind: k4, when: {field: tags, equals: [a, {b: null}]}}
            - {id: ex, kind: k5, when: {field: x.y, exists: false}}
            - {id: gt, kind: k6, when: {field: n, gt: 1}}
            - {id: gte, kind: k7, when: {field: n, gte: 0.5}}
            - {id: lt, kind: k8, when: {field: items.0.n, lt: -1}}
            - {id: lte, kind: k9, when: {field: n, lte: -0.5}}
            - id: combo
              kind: k10
              when: {any: [{not: {field: q, exists: true}}, {all: [{field: q, equals: 1}]}]}
            """
        )
    )
    classify = config.classifier.classify
    base = {"x": {"y": 1}, "q": 0}
    assert classify({**base, "body": "Credit\ncard"}).rule == "kw"
    assert classify({**base, "m": "inv-12"}).rule == "re"
    assert classify({**base, "subject": "RE: hi"}).rule == "pre"
    assert classify({**base, "tags": ["a", {"b": None}]}).rule == "eq"
    assert classify({}).rule == "ex"
    assert classify({**base, "n": 2}).rule == "gt"
    assert classify({**base, "n": 0.5}).rule == "gte"
    assert classify({**base, "items": [{"n": -2}]}).rule == "lt"
    assert classify({**base, "n": -0.5}).rule == "lte"
    assert classify({**base, "q": 1}).rule == "combo"
    assert classify({**base, "n": True}).kind == "default"  # bool is not a number


def test_kinds_without_a_route_are_allowed_and_fall_to_default() -> None:
    config = parse(build("- {id: r, kind: orphan, when: {field: a, exists: true}}"))
    assert config.unrouted_kinds == {"orphan"}
    assert config.table.plan("orphan", "r").agent_names == ["a"]


def test_merge_keys_and_anchors_work() -> None:
    routes = (
        "routes:\n"
        "  x: &r {agents: [a, b.agent_2], mode: aggregate}\n"
        "  default: {<<: *r, mode: fallback}\n"
    )
    config = parse(build(routes=routes))
    assert config.table.routes["default"].agents == ("a", "b.agent_2")
    assert config.table.routes["default"].mode is Mode.FALLBACK


def test_loaded_mappings_are_read_only() -> None:
    config = parse(build())
    with pytest.raises(TypeError):
        config.agents["z"] = AgentSpec("z", "http://z")  # type: ignore[index]
    with pytest.raises(TypeError):
        config.table.routes["z"] = config.table.routes["default"]  # type: ignore[index]


# --- files -------------------------------------------------------------------------------------


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(build(), encoding="utf-8")
    assert load_routing_config(path).source == str(path)
    path.write_text(build() + "extra: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key 'extra'"):
        load_routing_config(str(path))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read routing file"):
        load_routing_config(path)


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"agents: '\xe9'\n")
    with pytest.raises(ConfigError, match="cannot read routing file"):
        load_routing_config(path)


def test_error_details_carry_file_path_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse(build(routes="routes:\n  default: {agents: [a], mode: fast}\n"))
    assert info.value.details == {"file": "routing.yaml", "path": "routes.default.mode", "line": 8}


# --- YAML-level errors -------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line() -> None:
    text = build() + "rules: [\n  {id: x\n"
    message = error(text)
    assert message.startswith("routing.yaml: invalid YAML: ")
    assert message.endswith(")")
    assert "(line " in message


def test_empty_file() -> None:
    assert error("") == "routing.yaml: the file is empty; expected 'agents', 'rules', 'routes'"
    assert error("# only a comment\n").startswith("routing.yaml: the file is empty")


def test_more_than_one_document() -> None:
    assert error(build() + "---\n" + build()).startswith(
        "routing.yaml: invalid YAML: expected a single document"
    )


def test_unsafe_yaml_tags_are_refused() -> None:
    message = error("agents: !!python/object/apply:os.system [echo hi]\n" + ROUTES)
    assert message == (
        "routing.yaml: agents: unsupported YAML tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' (line 1)"
    )
    message = error("agents: !!python/name:os.system x\n" + ROUTES)
    assert message.startswith("routing.yaml: invalid YAML: could not determine a constructor")
    assert message.endswith("(line 1)")
    assert error("agents: !!set {a: null}\n" + ROUTES).startswith(
        "routing.yaml: agents: unsupported YAML tag 'tag:yaml.org,2002:set'"
    )


def test_top_level_must_be_a_mapping() -> None:
    assert error("- a\n- b\n") == "routing.yaml: expected a mapping, got a list (line 1)"


def test_unknown_top_level_key() -> None:
    text = build() + "route: {}\n"
    assert error(text) == (
        "routing.yaml: unknown key 'route' (allowed: agents, routes, rules, tests) "
        f"(line {line_of(text, 'route:')})"
    )


@pytest.mark.parametrize("missing", ["agents", "routes"])
def test_required_top_level_keys(missing: str) -> None:
    text = AGENTS if missing == "routes" else ROUTES
    assert error(text) == f"routing.yaml: missing required key {missing!r} (line 1)"


def test_duplicate_yaml_keys_are_errors() -> None:
    text = build(routes="routes:\n  default: {agents: [a]}\n  default: {agents: [b]}\n")
    assert error(text) == (
        f"routing.yaml: routes: duplicate key 'default' (line {line_of(text, 'default', 2)})"
    )


def test_non_string_keys_are_errors() -> None:
    text = build(routes="routes:\n  default: {agents: [a]}\n  404: {agents: [b]}\n")
    assert error(text) == (
        "routing.yaml: routes: keys must be strings, got 404 (quote it) "
        f"(line {line_of(text, '404:')})"
    )


def test_recursive_aliases_are_errors() -> None:
    message = error(AGENTS + "rules: &r [*r]\n" + ROUTES)
    assert message == "routing.yaml: rules[0]: recursive YAML alias (line 7)"


def test_alias_bombs_are_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    message = error("\n".join(lines) + "\n")
    assert "more than 100000 YAML nodes" in message


# --- the shipped file --------------------------------------------------------------------------

SHIPPED_EXAMPLES = [
    ({"message": "help me understand policy"}, "policy", "policy-keywords"),
    ({"message": "What are your terms of service?"}, "policy", "policy-keywords"),
    ({"message": "PRODUCTION   DOWN, all hands"}, "emergency", "emergency-keywords"),
    ({"source": "pager", "ticket": {"priority": 9}}, "emergency", "pager-high-priority"),
    ({"type": "feedback", "message": "help"}, "feedback", "feedback-channel"),
    ({"channel": "survey"}, "feedback", "feedback-channel"),
    ({"rating": 4, "message": "nice"}, "feedback", "rated"),
    ({"message": "a feature request: dark mode"}, "feedback", "feedback-keywords"),
    ({"message": "question about inv-20931"}, "billing", "invoice-number"),
    ({"message": "help, I was charged twice"}, "billing", "billing-keywords"),
    ({"message": "I need help logging in"}, "support", "support-keywords"),
    ({"message": "the app is not working"}, "support", "support-keywords"),
    ({"message": "hello there"}, "default", "default"),
    ({"message": "the policyholder called"}, "default", "default"),
    ({"source": "pager", "ticket": {"priority": True}}, "default", "default"),
]


@pytest.fixture(scope="module")
def shipped() -> RoutingConfig:
    return load_routing_config(DEFAULT_ROUTING_FILE)


def test_the_shipped_file_loads(shipped: RoutingConfig) -> None:
    assert shipped.source == str(DEFAULT_ROUTING_FILE)
    assert DEFAULT_ROUTING_FILE.name == "routing.yaml"
    assert shipped.unrouted_kinds == frozenset()


def test_the_seed_sentence_is_policy(shipped: RoutingConfig) -> None:
    result = shipped.classifier.classify({"message": "help me understand policy"})
    assert result.kind == "policy"
    assert shipped.table.plan(result.kind, result.rule).agent_names[0] == "policy-agent"


@pytest.mark.parametrize(("payload", "kind", "rule"), SHIPPED_EXAMPLES)
def test_shipped_examples(
    shipped: RoutingConfig, payload: dict[str, object], kind: str, rule: str
) -> None:
    assert shipped.classifier.classify(payload) == Classification(kind, rule)


def test_every_shipped_kind_and_rule_has_an_example(shipped: RoutingConfig) -> None:
    assert {kind for _, kind, _ in SHIPPED_EXAMPLES} == set(shipped.table.routes)
    assert {rule for _, _, rule in SHIPPED_EXAMPLES} == {r.id for r in shipped.classifier.rules} | {
        "default"
    }


def test_shipped_routes(shipped: RoutingConfig) -> None:
    routes = shipped.table.routes
    assert {"emergency", "policy", "billing", "support", "feedback", "default"} <= set(routes)
    assert routes["emergency"].mode is Mode.AGGREGATE
    assert len(routes["emergency"].agents) >= 2
    assert any(route.mode is Mode.FALLBACK for route in routes.values())
    assert set(shipped.agents) == {
        "policy-agent",
        "billing-agent",
        "support-agent",
        "oncall-agent",
        "feedback-agent",
        "general-agent",
    }
    for name, agent in shipped.agents.items():
        assert agent.url == f"http://127.0.0.1:9100/agents/{name}"
