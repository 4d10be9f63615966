"""The routing file's rule conditions: every mistake in a condition, however deep in its
combinators, names file, path and line."""

from __future__ import annotations

import pytest

from router_service.config.routing_conditions import MAX_CONDITION_DEPTH
from tests.support.routing_parsing import build, error, line_of, parse, rule_error

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


def test_a_regex_only_a_backtracking_engine_runs_is_refused_with_the_reason() -> None:
    message, _ = rule_error(r"{regex: '(\w+)\s\1'}")
    pattern = r"(\w+)\s\1"
    assert message == (
        f"routing.yaml: rules[0].when.regex: invalid regex {pattern!r}: "
        r"invalid escape sequence: \1 (line 10)"
    )
    message, _ = rule_error("{regex: '(?<!no )refund'}")
    assert message == (
        "routing.yaml: rules[0].when.regex: invalid regex '(?<!no )refund': "
        "invalid perl operator: (?<! (line 10)"
    )


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
        (".inf", "string '.inf'"),  # a string, as JSON reads it
        ("!!float .inf", "float inf"),
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
    message, _ = rule_error("{field: d, equals: !!timestamp 2024-01-01}")
    assert (
        message == "routing.yaml: rules[0].when.equals: expected a JSON value, got date (quote it) "
        "(line 10)"
    )
    message, _ = rule_error("{field: d, equals: [1, {x: !!float .nan}]}")
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


# --- plain values read as JSON reads them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "payload_value", "other"),
    [
        ("NO", "NO", False),  # YAML 1.1: false
        ("off", "off", False),
        ("12:30", "12:30", 750),  # YAML 1.1: sexagesimal 750
        ("0123", "0123", 83),  # YAML 1.1: octal 83
        ("0x1F", "0x1F", 31),
        ("1_000", "1_000", 1000),
        ("2026-02-30", "2026-02-30", None),  # YAML 1.1: a date it fails to build
        ("2026-01-01", "2026-01-01", None),
    ],
)
def test_a_plain_value_that_json_would_not_read_as_a_number_is_a_string(
    written: str, payload_value: str, other: object
) -> None:
    """A rule's ``equals: NO`` never matched the "NO" of its payloads, and its own tests, read
    the same way, passed."""
    config = parse(build(f"- id: r\n  kind: k\n  when: {{field: v, equals: {written}}}\n"))
    assert config.classifier.classify({"v": payload_value}).rule == "r"
    assert config.classifier.classify({"v": other}).rule != "r"


def test_plain_numbers_booleans_and_null_are_read_as_json_reads_them() -> None:
    rules = "".join(
        f"- id: r{i}\n  kind: k\n  when: {{field: v{i}, equals: {written}}}\n"
        for i, written in enumerate(("10", "-1.5", "1e300", "true", "FALSE", "null", "~"))
    )
    config = parse(build(rules))
    for i, value in enumerate((10, -1.5, 1e300, True, False, None, None)):
        assert config.classifier.classify({f"v{i}": value}).rule == f"r{i}", (i, value)


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("!!int abc", "cannot read 'abc': invalid literal for int()"),
        ("!!timestamp 2026-02-30", "cannot read '2026-02-30': day is out of range for month"),
        ("!!int " + "1" * 5000, "Exceeds the limit (4300 digits)"),
    ],
)
def test_a_value_its_tag_cannot_build_is_an_error_with_its_line(written: str, why: str) -> None:
    """PyYAML raised a plain ValueError: a 500 on reload, and the file watcher died."""
    message, text = rule_error(f"{{field: v, equals: {written}}}")
    assert message.startswith("routing.yaml: rules[0].when.equals: cannot read "), message
    assert why in message
    assert message.endswith(f"(line {line_of(text, 'equals')})")


def test_conditions_nest_at_most_the_bound() -> None:
    """350 nested 'not's loaded and routed, and made every explain a 500 (its recursion)."""
    deep = "{field: v, exists: true}"
    for _ in range(MAX_CONDITION_DEPTH - 1):
        deep = f"{{not: {deep}}}"
    assert parse(build(f"- id: r\n  kind: k\n  when: {deep}\n")).classifier.rules
    message, _ = rule_error(f"{{not: {deep}}}")
    assert f"conditions nest at most {MAX_CONDITION_DEPTH} levels deep" in message


@pytest.mark.parametrize("segment", ["\u00b2", "\u0661", "9" * 5000])  # ², Arabic-Indic one
def test_a_path_segment_of_other_digits_is_a_key(segment: str) -> None:
    """``str.isdigit`` takes superscripts and other scripts' digits, which ``int`` refuses; and
    ``int`` refuses 5,000 digits: loading the file failed with a ValueError."""
    when = f"{{field: 'items.{segment}', exists: true}}"
    config = parse(build(f"- id: r\n  kind: k\n  when: {when}\n"))
    assert config.classifier.classify({"items": {segment: 1}}).rule == "r"
    assert config.classifier.classify({"items": [1, 2]}).rule != "r"
