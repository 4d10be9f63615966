"""The routing file: valid shapes load into frozen objects, every mistake names file/path/line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router_service.config.routing_file import (
    DEFAULT_ROUTING_FILE,
    RoutingConfig,
    load_routing_config,
    parse_routing_config,
)
from router_service.domain.classify import Classification
from router_service.domain.errors import ConfigError
from router_service.domain.routing import AgentSpec, Mode

AGENTS = """\
agents:
  - name: a
    url: http://127.0.0.1:9100/agents/a
  - name: b.agent_2
    url: https://agents.example.com:8443/b
    timeout_ms: 1500
"""
ROUTES = """\
routes:
  default: {agents: [a]}
"""


def build(rules: str = "", *, agents: str = AGENTS, routes: str = ROUTES) -> str:
    body = textwrap.dedent(rules).strip("\n") + "\n"
    rules_block = "rules:\n" + textwrap.indent(body, "  ") if rules else ""
    return agents + rules_block + routes


def parse(text: str) -> RoutingConfig:
    return parse_routing_config(text, "routing.yaml")


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.message


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def rule_error(when: str) -> tuple[str, str]:
    """The error for a single rule with condition ``when``, and the config text."""
    text = build(f"- id: r\n  kind: k\n  when: {when}\n")
    return error(text), text


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
    text = build(routes="routes:\n  default: {agents: [a]}\n  on: {agents: [b]}\n")
    assert error(text) == (
        "routing.yaml: routes: keys must be strings, got True (quote it) "
        f"(line {line_of(text, 'on:')})"
    )


def test_recursive_aliases_are_errors() -> None:
    message = error(AGENTS + "rules: &r [*r]\n" + ROUTES)
    assert message == "routing.yaml: rules[0]: recursive YAML alias (line 7)"


def test_alias_bombs_are_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    message = error("\n".join(lines) + "\n")
    assert "more than 100000 YAML nodes" in message


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
        (".nan", "expected a number, got float nan"),
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


# --- conditions --------------------------------------------------------------------------------


def test_unknown_condition_names_path_and_line() -> None:
    text = build(
        """\
        - id: one
          kind: k
          when: {field: a, exists: true}
        - id: two
          kind: k
          when:
            field: message
            regexp: 'INV-\\d+'
        """
    )
    assert error(text) == (
        f"routing.yaml: rules[1].when: unknown condition 'regexp' (line {line_of(text, 'regexp')})"
    )


def test_unknown_condition_deep_inside_combinators() -> None:
    message, text = rule_error(
        "{all: [{field: a, exists: true}, {not: {field: b, gte: 1, bogus: 2}}]}"
    )
    assert message == (
        "routing.yaml: rules[0].when.all[1].not: unknown condition 'bogus' "
        f"(line {line_of(text, 'bogus')})"
    )


def test_condition_must_be_a_mapping() -> None:
    message, _ = rule_error("[keywords]")
    assert message == "routing.yaml: rules[0].when: a condition is a mapping, got a list (line 10)"


def test_condition_needs_an_operator() -> None:
    message, _ = rule_error("{field: a}")
    assert message.startswith("routing.yaml: rules[0].when: needs one of: keywords, regex, prefix")
    assert message.endswith("(line 10)")


def test_condition_takes_one_operator() -> None:
    message, _ = rule_error("{field: n, gte: 1, lte: 5}")
    assert message == (
        "routing.yaml: rules[0].when: one operator per condition, got 'gte' and 'lte'; "
        "combine them with 'all' (line 10)"
    )
    message, _ = rule_error("{all: [], any: []}")
    assert (
        message
        == "routing.yaml: rules[0].when: one operator per condition, got 'all' and 'any' (line 10)"
    )


def test_modifiers_only_go_with_their_operator() -> None:
    message, _ = rule_error("{keywords: [a], flags: i}")
    assert message == "routing.yaml: rules[0].when: 'flags' only goes with 'regex' (line 10)"
    message, _ = rule_error("{regex: a, case_sensitive: false}")
    assert (
        message == "routing.yaml: rules[0].when: 'case_sensitive' only goes with 'prefix' (line 10)"
    )


def test_field_cannot_sit_beside_a_combinator() -> None:
    message, _ = rule_error("{field: a, any: [{field: a, exists: true}]}")
    assert (
        message
        == "routing.yaml: rules[0].when: 'field' cannot sit beside 'any'; move it inside (line 10)"
    )


@pytest.mark.parametrize("op", ["equals: 1", "exists: true", "gt: 1", "gte: 1", "lt: 1", "lte: 1"])
def test_value_operators_need_a_field(op: str) -> None:
    message, _ = rule_error(f"{{{op}}}")
    assert message == f"routing.yaml: rules[0].when: {op.split(':')[0]!r} needs a 'field' (line 10)"


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("''", "expected a non-empty string, got an empty string"),
        ("3", "expected a non-empty string, got int 3"),
        ("a..b", "empty segment in field path 'a..b'"),
        ("a.", "empty segment in field path 'a.'"),
    ],
)
def test_field_must_be_a_dotted_path(field: str, problem: str) -> None:
    message, _ = rule_error(f"{{field: {field}, exists: true}}")
    assert message == f"routing.yaml: rules[0].when.field: {problem} (line 10)"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[]", "must not be empty"),
        ("policy", "expected a list, got string 'policy'"),
    ],
)
def test_keywords_must_be_a_non_empty_list(value: str, problem: str) -> None:
    message, _ = rule_error(f"{{keywords: {value}}}")
    assert message == f"routing.yaml: rules[0].when.keywords: {problem} (line 10)"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("''", "an empty string"), ("'  '", "an empty string"), ("7", "int 7"), ("null", "null")],
)
def test_each_keyword_is_a_non_empty_string(value: str, problem: str) -> None:
    message, _ = rule_error(f"{{keywords: [ok, {value}]}}")
    assert message == (
        "routing.yaml: rules[0].when.keywords[1]: "
        f"expected a non-empty string, got {problem} (line 10)"
    )


def test_regexes_must_compile() -> None:
    message, _ = rule_error("{regex: '(unclosed'}")
    assert message.startswith("routing.yaml: rules[0].when.regex: invalid regex '(unclosed': ")
    assert message.endswith("(line 10)")


def test_regex_flags_are_checked() -> None:
    message, _ = rule_error("{regex: a, flags: iq}")
    assert (
        message
        == "routing.yaml: rules[0].when.flags: unknown regex flag 'q' (use i, m, s) (line 10)"
    )
    message, _ = rule_error("{regex: a, flags: 1}")
    assert (
        message
        == "routing.yaml: rules[0].when.flags: expected letters from 'ims', got int 1 (line 10)"
    )


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("'9'", "string '9'"),
        ("true", "bool True"),
        ("null", "null"),
        (".inf", "float inf"),
        ("[1]", "a list"),
    ],
)
def test_numeric_comparisons_take_numbers(op: str, value: str, shown: str) -> None:
    text = build(f"- id: r\n  kind: k\n  when:\n    field: n\n    {op}: {value}\n")
    assert error(text) == (
        f"routing.yaml: rules[0].when.{op}: expected a number, got {shown} "
        f"(line {line_of(text, op + ':')})"
    )


def test_exists_takes_a_boolean() -> None:
    message, _ = rule_error("{field: a, exists: 'yes'}")
    assert (
        message
        == "routing.yaml: rules[0].when.exists: expected true or false, got string 'yes' (line 10)"
    )


def test_prefix_case_sensitive_takes_a_boolean() -> None:
    message, _ = rule_error("{prefix: a, case_sensitive: 0}")
    assert message == (
        "routing.yaml: rules[0].when.case_sensitive: expected true or false, got int 0 (line 10)"
    )


def test_equals_takes_json_values_only() -> None:
    message, _ = rule_error("{field: d, equals: 2024-01-01}")
    assert (
        message == "routing.yaml: rules[0].when.equals: expected a JSON value, got date (quote it) "
        "(line 10)"
    )
    message, _ = rule_error("{field: d, equals: [1, {x: .nan}]}")
    assert message.startswith("routing.yaml: rules[0].when.equals[1].x: expected a JSON value")


def test_combinators_take_conditions() -> None:
    message, _ = rule_error("{all: []}")
    assert message == "routing.yaml: rules[0].when.all: must not be empty (line 10)"
    message, _ = rule_error("{any: {field: a, exists: true}}")
    assert message == "routing.yaml: rules[0].when.any: expected a list, got a mapping (line 10)"
    message, _ = rule_error("{not: [{field: a, exists: true}]}")
    assert (
        message == "routing.yaml: rules[0].when.not: a condition is a mapping, got a list (line 10)"
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
