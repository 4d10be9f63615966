"""The routing file's agents, rules and routes: every mistake in an entry names file, path and
line."""

from __future__ import annotations

import pytest

from tests.support.routing_parsing import AGENTS, ROUTES, build, error

# --- agents ------------------------------------------------------------------------------------


def test_agents_must_be_a_non_empty_list() -> None:
    assert error("agents: []\n" + ROUTES) == "routing.yaml: agents: must not be empty (line 1)"
    assert error("agents: {a: 1}\n" + ROUTES) == (
        "routing.yaml: agents: expected a list, got a mapping (line 1)"
    )


def test_agent_unknown_key() -> None:
    text = build(agents="agents:\n  - name: a\n    url: http://x/a\n    timeout: 5\n")
    assert error(text) == (
        "routing.yaml: agents[0]: unknown key 'timeout' "
        "(allowed: name, url, timeout_ms, protocol, a2a_version) (line 4)"
    )


def test_agent_missing_url() -> None:
    text = build(agents="agents:\n  - name: a\n")
    assert error(text) == "routing.yaml: agents[0]: missing required key 'url' (line 2)"


@pytest.mark.parametrize("name", ["Policy", "-a", "a b", "_a", "a/b", "é"])
def test_agent_names_are_restricted(name: str) -> None:
    text = build(agents=f"agents:\n  - name: '{name}'\n    url: http://x/\n")
    assert error(text) == (
        f"routing.yaml: agents[0].name: invalid agent name {name!r} ([a-z0-9][a-z0-9_.-]*) (line 2)"
    )


def test_agent_name_must_be_a_string() -> None:
    text = build(agents="agents:\n  - name: 12\n    url: http://x/\n")
    assert error(text) == (
        "routing.yaml: agents[0].name: expected a non-empty string, got int 12 (line 2)"
    )


def test_agent_names_are_unique() -> None:
    text = build(agents=AGENTS + "  - name: a\n    url: http://other/\n")
    assert error(text) == "routing.yaml: agents[2].name: duplicate agent name 'a' (line 7)"


@pytest.mark.parametrize(
    "url",
    ["ftp://x/a", "http://", "x/a", "http:///path", "//host/a", "http://h:99999/", " http://h/"],
)
def test_agent_url_must_be_http_with_a_host(url: str) -> None:
    text = build(agents=f"agents:\n  - name: a\n    url: '{url}'\n")
    message = error(text)
    assert message.startswith("routing.yaml: agents[0].url: ")
    assert message.endswith("(line 3)")
    assert repr(url) in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "must be positive, got 0"),
        ("-5", "must be positive, got -5"),
        ("'100'", "expected a number, got string '100'"),
        ("true", "expected a number, got bool True"),
        (".nan", "expected a number, got string '.nan'"),
        ("!!float .nan", "expected a number, got float nan"),
        ("null", "expected a number, got null"),
    ],
)
def test_agent_timeout_must_be_a_positive_number(value: str, problem: str) -> None:
    text = build(agents=f"agents:\n  - name: a\n    url: http://x/\n    timeout_ms: {value}\n")
    assert error(text) == f"routing.yaml: agents[0].timeout_ms: {problem} (line 4)"


# --- rules -------------------------------------------------------------------------------------


def test_rules_must_be_a_list_of_mappings() -> None:
    assert error(AGENTS + "rules: {a: 1}\n" + ROUTES) == (
        "routing.yaml: rules: expected a list, got a mapping (line 7)"
    )
    text = build("- just a string\n")
    assert error(text) == (
        "routing.yaml: rules[0]: expected a mapping, got string 'just a string' (line 8)"
    )


@pytest.mark.parametrize("missing", ["id", "kind", "when"])
def test_rule_required_keys(missing: str) -> None:
    fields = {"id": "id: r", "kind": "kind: k", "when": "when: {field: a, exists: true}"}
    del fields[missing]
    text = build("- " + "\n  ".join(fields.values()) + "\n")
    assert error(text) == f"routing.yaml: rules[0]: missing required key {missing!r} (line 8)"


def test_rule_unknown_key() -> None:
    text = build("- id: r\n  kind: k\n  when: {field: a, exists: true}\n  priority: 1\n")
    assert error(text) == (
        "routing.yaml: rules[0]: unknown key 'priority' (allowed: id, kind, when) (line 11)"
    )


def test_rule_ids_are_unique() -> None:
    rule = "- {id: r, kind: k, when: {field: a, exists: true}}\n"
    text = build(rule + rule.replace("kind: k", "kind: j"))
    assert (
        error(text) == "routing.yaml: rules[1].id: duplicate rule id 'r' (also rules[0]) (line 9)"
    )


def test_rule_id_default_is_reserved() -> None:
    text = build("- {id: default, kind: k, when: {field: a, exists: true}}\n")
    assert error(text) == (
        "routing.yaml: rules[0].id: rule id 'default' is reserved for no match (line 8)"
    )


@pytest.mark.parametrize(("key", "value"), [("id", "''"), ("kind", "''"), ("kind", "null")])
def test_rule_id_and_kind_are_non_empty_strings(key: str, value: str) -> None:
    fields = {"id": "r", "kind": "k"} | {key: value}
    text = build(
        f"- {{id: {fields['id']}, kind: {fields['kind']}, when: {{field: a, exists: true}}}}\n"
    )
    assert error(text).startswith(
        f"routing.yaml: rules[0].{key}: expected a non-empty string, got "
    )


# --- routes ------------------------------------------------------------------------------------


def routes_error(body: str) -> tuple[str, str]:
    text = build(routes="routes:\n" + body)
    return error(text), text


def test_routes_must_be_a_mapping() -> None:
    message, _ = routes_error("  - default\n")
    assert (
        message == "routing.yaml: routes: expected a mapping of kind -> route, got a list (line 8)"
    )


def test_a_default_route_is_required() -> None:
    message, _ = routes_error("  policy: {agents: [a]}\n")
    assert (
        message
        == "routing.yaml: routes: a 'default' route is required (unrouted kinds use it) (line 8)"
    )


def test_routes_reference_known_agents() -> None:
    message, _ = routes_error("  default: {agents: [a, ghost]}\n")
    assert message == (
        "routing.yaml: routes.default.agents[1]: unknown agent 'ghost' "
        "(declared: a, b.agent_2) (line 8)"
    )


def test_route_agent_lists_are_non_empty_and_without_repeats() -> None:
    message, _ = routes_error("  default: {agents: []}\n")
    assert message == "routing.yaml: routes.default.agents: must not be empty (line 8)"
    message, _ = routes_error("  default: {agents: [a, a]}\n")
    assert message == "routing.yaml: routes.default.agents[1]: agent 'a' listed twice (line 8)"


@pytest.mark.parametrize("mode", ["fast", "null", "1", "FALLBACK"])
def test_route_mode_must_be_known(mode: str) -> None:
    message, _ = routes_error(f"  default:\n    agents: [a]\n    mode: {mode}\n")
    assert message.startswith("routing.yaml: routes.default.mode: unknown mode ")
    assert message.endswith("(allowed: first_success, fallback, aggregate, hedge) (line 10)")


def test_route_unknown_key_and_missing_agents() -> None:
    message, _ = routes_error("  default: {agents: [a], retries: 3}\n")
    assert (
        message == "routing.yaml: routes.default: unknown key 'retries' "
        "(allowed: agents, mode, hedge) (line 8)"
    )
    message, _ = routes_error("  default: {mode: fallback}\n")
    assert message == "routing.yaml: routes.default: missing required key 'agents' (line 8)"


def test_route_kind_must_be_non_empty() -> None:
    message, _ = routes_error("  default: {agents: [a]}\n  '': {agents: [a]}\n")
    assert message == "routing.yaml: routes.: a route kind must be a non-empty string (line 9)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "ftp://bob:hunter2@agents.example.com/a?token=s3cret",
            "'ftp://bob:***@agents.example.com/a?token=***'",
        ),
        ("http://bob:hunter2@agents.example.com:99999/a", None),
        ("http://bob:hunter2@[::1/a", None),
    ],
)
def test_an_agent_url_refused_never_shows_its_credentials(url: str, shown: str | None) -> None:
    """The error reaches the start-up output, the reload's log line and the console."""
    message = error(build(agents=f"agents:\n  - name: a\n    url: '{url}'\n"))
    assert message.startswith("routing.yaml: agents[0].url: ")
    assert "hunter2" not in message
    assert "s3cret" not in message
    if shown is not None:
        assert shown in message
