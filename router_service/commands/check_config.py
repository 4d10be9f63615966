"""``router-service check-config``: validate a routing file, then run its tests like code."""

from __future__ import annotations

from pathlib import Path

import click

from router_service.config.routing_cases import check_cases, sibling_tests_file
from router_service.config.routing_file import load_routing_config


def check_config_file(file: Path) -> int:
    """Print the verdict; the exit status: 0 valid and every test passes, 1 a test fails
    (each with a readable diff), 2 invalid (``ConfigError`` from the loader). A kind with no
    route of its own is a warning line, not a failure."""
    config = load_routing_config(file)
    rules = len(config.classifier.rules)
    click.echo(
        f"{file}: ok ({len(config.agents)} agents, {rules} rules, "
        f"{len(config.table.routes)} routes)"
    )
    for kind in sorted(config.unrouted_kinds):
        # Legal (default takes it), but often a typo in a rule's kind or a route's name.
        ids = [r.id for r in config.classifier.rules if r.kind == kind]
        rules_of = f"rule{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
        click.echo(f"warning: kind {kind!r} ({rules_of}) has no route: it goes to default")
    results = check_cases(config)
    if not results:
        click.echo(f"no tests (add a tests: list, or {sibling_tests_file(file).name})")
        return 0
    failed = [r for r in results if not r.passed]
    for result in failed:
        click.echo(f"FAIL {result.describe()}")
    tested = {r.decision.rule for r in results}
    untested = [r.id for r in config.classifier.rules if r.id not in tested]
    if untested:
        click.echo(f"rules no test reaches: {', '.join(untested)}")
    verdict = "FAILED" if failed else "passed"
    click.echo(f"{len(results)} tests: {len(results) - len(failed)} passed, {len(failed)} failed")
    click.echo(f"tests {verdict}")
    return 1 if failed else 0
