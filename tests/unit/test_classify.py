"""Classification rules: every operator, paths, combinators, rule order, and properties."""

from __future__ import annotations

import math
import re
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router_service.domain.classify import (
    DEFAULT_CLASSIFICATION,
    MAX_SCAN_DEPTH,
    AllOf,
    AnyOf,
    Classification,
    Classifier,
    Compare,
    Comparison,
    Equals,
    Exists,
    Keywords,
    Not,
    Prefix,
    Regex,
    Rule,
    json_equal,
)

# --- keywords ----------------------------------------------------------------------------------


def test_keywords_match_case_insensitively_anywhere_in_the_payload() -> None:
    cond = Keywords(("policy",))
    assert cond.matches({"message": "help me understand POLICY"})
    assert cond.matches({"deep": {"list": [1, {"text": "a Policy question"}]}})


def test_keywords_are_whole_words_only() -> None:
    cond = Keywords(("policy",))
    assert not cond.matches({"message": "the policyholder called"})
    assert not cond.matches({"message": "insurancepolicy"})
    assert not cond.matches({"message": "policy_id"})  # underscore is a word character


@pytest.mark.parametrize(
    "text", ["policy?", "(policy)", "policy.", "'policy'", "x-policy", "é policy"]
)
def test_keywords_match_next_to_punctuation(text: str) -> None:
    assert Keywords(("policy",)).matches({"m": text})


def test_any_keyword_of_the_set_matches() -> None:
    cond = Keywords(("outage", "sev1", "emergency"))
    assert cond.matches({"m": "we have a SEV1"})
    assert cond.matches({"m": "Outage in eu-west"})
    assert cond.matches({"m": "sev1-ish"})  # '-' is not a word character
    assert not cond.matches({"m": "sev12 severity"})


def test_phrases_match_across_any_whitespace() -> None:
    cond = Keywords(("on fire",))
    assert cond.matches({"m": "the server is on fire"})
    assert cond.matches({"m": "ON \t\n  Fire!"})
    assert not cond.matches({"m": "onfire"})
    assert not cond.matches({"m": "on fireplace"})


def test_keywords_on_a_hostile_payload_are_answered() -> None:
    """Every keyword tried at every position (Python's ``re``) took 0.1 s for 256 kB of spaces
    against the shipped file's keywords, and grows with the number of keywords; RE2 is linear
    in the text whatever their number (a backtracking engine's cost ends in the suite's
    timeout here)."""
    many = Keywords(tuple(f"{letter}{i}" for i in range(2_000) for letter in "ab"))
    assert not many.matches({"m": ["a " * 131_000] * 40})  # each "a" begins 2,000 words
    assert many.matches({"m": "a " * 131_000 + "B1999."})
    phrases = Keywords(tuple(f"word{i} term{i}" for i in range(5_000)))
    assert phrases.matches({"m": " " * 262_000 + "WORD4999\u00a0\tterm4999."})


def test_keywords_searched_across_leaves_at_once_never_join_two_leaves() -> None:
    phrase = Keywords(("on fire",))
    assert not phrase.matches({"a": "on", "b": "fire"})
    assert not phrase.matches({"m": ["on ", " fire"]})
    assert phrase.matches({"m": ["on", "x on fire"]})
    assert not Keywords(("policy",)).matches({"m": ["poli", "cy"]})
    assert Keywords(("policy",)).matches({"m": "\x00policy\x00"})
    assert Keywords(("policy",)).matches({"m": ["", "policy"], "n": 1})
    with pytest.raises(ValueError, match="NUL"):
        Keywords(("on\x00fire",))


class _CountedReads(dict[str, Any]):
    """A payload that counts how often its values are read."""

    reads = 0

    def values(self) -> Any:
        type(self).reads += 1
        return super().values()


def test_a_classification_reads_the_payloads_strings_once_for_every_rule() -> None:
    """Each string rule walked the whole payload itself: 131,000 small numbers cost 230 ms
    against the shipped file's six string rules."""
    rules = (
        Rule("a", "a", Keywords(("refund",))),
        Rule("b", "b", Regex(r"INV-\d+")),
        Rule("c", "c", AnyOf((Prefix("urgent"), Keywords(("outage",))))),
        Rule("d", "d", Not(Keywords(("hello",)))),
    )
    payload = _CountedReads(message="hello there", numbers=[1] * 1_000)
    assert Classifier(rules).classify(payload) == DEFAULT_CLASSIFICATION
    assert _CountedReads.reads == 1


def test_keywords_treat_regex_metacharacters_literally() -> None:
    assert Keywords(("c++",)).matches({"m": "I write c++ daily"})
    assert not Keywords(("a.b",)).matches({"m": "axb"})
    assert Keywords(("a.b",)).matches({"m": "see a.b now"})


def test_keywords_with_a_field_look_only_there() -> None:
    cond = Keywords(("refund",), field="subject")
    assert cond.matches({"subject": "Refund please", "body": "x"})
    assert not cond.matches({"subject": "hello", "body": "refund"})
    assert not cond.matches({"body": "refund"})  # missing field
    assert not cond.matches({"subject": 42})  # not a string


def test_keywords_on_a_container_field_search_its_strings() -> None:
    cond = Keywords(("vip",), field="tags")
    assert cond.matches({"tags": ["new", "VIP"]})
    assert not cond.matches({"tags": ["new"], "other": "vip"})


def test_keywords_do_not_look_at_mapping_keys() -> None:
    assert not Keywords(("policy",)).matches({"policy": 1})


def test_scan_depth_is_bounded() -> None:
    payload: Any = "policy"
    for _ in range(MAX_SCAN_DEPTH + 5):
        payload = [payload]
    assert not Keywords(("policy",)).matches({"m": payload})
    shallow: Any = "policy"
    for _ in range(MAX_SCAN_DEPTH - 2):
        shallow = [shallow]
    assert Keywords(("policy",)).matches({"m": shallow})


@pytest.mark.parametrize("words", [(), ("",), ("  ",), ("ok", "")])
def test_keywords_reject_empty_sets_and_words(words: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Keywords(words)


# --- regex -------------------------------------------------------------------------------------


def test_regex_searches_strings() -> None:
    cond = Regex(r"\bINV-\d{4,}\b")
    assert cond.matches({"m": "about INV-20931 please"})
    assert not cond.matches({"m": "about inv-20931 please"})  # case-sensitive by default
    assert Regex(r"\bINV-\d{4,}\b", flags="i").matches({"m": "about inv-20931 please"})


def test_regex_with_field_ignores_other_fields_and_non_strings() -> None:
    cond = Regex(r"^\d+$", field="order")
    assert cond.matches({"order": "12345"})
    assert not cond.matches({"order": 12345})
    assert not cond.matches({"other": "12345"})


def test_regex_multiline_and_dotall_flags() -> None:
    assert Regex(r"^b$", flags="m").matches({"m": "a\nb\nc"})
    assert not Regex(r"^b$").matches({"m": "a\nb\nc"})
    assert Regex(r"a.b", flags="s").matches({"m": "a\nb"})


def test_a_backtracking_pattern_on_a_hostile_payload_is_answered() -> None:
    """The operator's pattern, the client's text: with a backtracking engine this search takes
    about 2**64 steps (the suite's timeout ends it); RE2 is linear in the text."""
    words = Regex(r"^(\w+\s?)*$", field="message")
    assert not words.matches({"message": "a" * 64 + "!"})
    assert not words.matches({"message": "word " * 20_000 + "!"})
    assert words.matches({"message": "word " * 20_000})
    assert not Regex(r"(a|aa)+$").matches({"m": "a" * 100_000 + "b"})


def test_regex_refuses_what_only_a_backtracking_engine_can_run() -> None:
    for pattern in (r"(a)\1", r"(?<!x)a", r"a(?=b)", r"(?P<n>a)(?P=n)"):
        with pytest.raises(ValueError, match="invalid"):
            Regex(pattern)


def test_regex_character_classes_are_ascii_and_unicode_ones_are_spelled_out() -> None:
    """RE2's reading, documented in the routing file's reference: a word class is ASCII."""
    assert not Regex(r"^\w+$").matches({"m": "été"})
    assert Regex(r"^[\p{L}\p{N}_]+$").matches({"m": "été"})
    assert Regex(r"^CAFÉ$", flags="i").matches({"m": "café"})


def test_regex_rejects_unknown_flags() -> None:
    with pytest.raises(ValueError, match="unknown regex flag 'q'"):
        Regex("x", flags="q")


# --- prefix ------------------------------------------------------------------------------------


def test_prefix_is_case_sensitive_unless_told() -> None:
    assert Prefix("URGENT:", field="subject").matches({"subject": "URGENT: db"})
    assert not Prefix("URGENT:", field="subject").matches({"subject": "urgent: db"})
    insensitive = Prefix("URGENT:", field="subject", case_sensitive=False)
    assert insensitive.matches({"subject": "urgent: db"})
    assert not insensitive.matches({"subject": "not urgent: db"})


def test_prefix_without_field_checks_every_string() -> None:
    cond = Prefix("re:", case_sensitive=False)
    assert cond.matches({"a": 1, "b": ["x", "RE: your ticket"]})
    assert not cond.matches({"a": "your ticket re: x"})


def test_prefix_treats_metacharacters_literally() -> None:
    assert Prefix("[x]", case_sensitive=False).matches({"m": "[X] done"})
    assert not Prefix("[x]", case_sensitive=False).matches({"m": "x done"})


# --- equals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [
        ("pager", "pager", True),
        ("pager", "Pager", False),
        (1, 1, True),
        (1, 1.0, True),  # JSON has one number type
        (1, True, False),  # bool is not int
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (None, None, True),
        (None, False, False),
        ("1", 1, False),
        ([1, "a"], [1, "a"], True),
        ([1, "a"], [1, "a", None], False),
        ([1], [True], False),
        ({"a": [1]}, {"a": [1.0]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
    ],
)
def test_equals_uses_json_equality(expected: Any, actual: Any, match: bool) -> None:
    assert Equals("v", expected).matches({"v": actual}) is match


def test_equals_on_a_missing_path_never_matches_even_null() -> None:
    assert not Equals("v", None).matches({})
    assert not Equals("a.b", None).matches({"a": {}})


def test_json_equal_accepts_tuples_and_frozen_mappings() -> None:
    from types import MappingProxyType

    assert json_equal((1, MappingProxyType({"a": True})), [1, {"a": True}])


# --- exists ------------------------------------------------------------------------------------


def test_exists_true_and_false() -> None:
    assert Exists("a.b").matches({"a": {"b": 0}})
    assert Exists("a.b").matches({"a": {"b": None}})  # null is present
    assert not Exists("a.b").matches({"a": {}})
    assert Exists("a.b", present=False).matches({"a": {}})
    assert not Exists("a.b", present=False).matches({"a": {"b": 1}})


# --- numeric comparisons -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "match"),
    [
        (Comparison.GT, 9, 10, True),
        (Comparison.GT, 9, 9, False),
        (Comparison.GTE, 9, 9, True),
        (Comparison.GTE, 9, 8.999, False),
        (Comparison.LT, 0.5, 0.4999, True),
        (Comparison.LT, 0.5, 0.5, False),
        (Comparison.LTE, 0.5, 0.5, True),
        (Comparison.LTE, -1, 0, False),
        (Comparison.GTE, 9, 10**30, True),
        (Comparison.GT, 1.5, 2, True),
    ],
)
def test_comparisons_at_their_edges(op: Comparison, value: float, actual: Any, match: bool) -> None:
    assert Compare("n", op, value).matches({"n": actual}) is match


@pytest.mark.parametrize("actual", [True, False, "10", None, [10], {"n": 10}, math.nan])
def test_comparisons_only_match_numbers(actual: Any) -> None:
    for op in Comparison:
        assert not Compare("n", op, 0).matches({"n": actual})


def test_comparison_on_missing_field_does_not_match() -> None:
    assert not Compare("n", Comparison.LT, 100).matches({})


@pytest.mark.parametrize("bad", [True, math.nan, math.inf, "9"])
def test_comparison_requires_a_finite_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="finite number"):
        Compare("n", Comparison.GT, bad)


# --- dotted paths ------------------------------------------------------------------------------


def test_dotted_paths_walk_mappings_and_list_indexes() -> None:
    payload = {"ticket": {"priority": 9}, "items": [{"name": "disk"}, {"name": "cpu"}]}
    assert Equals("ticket.priority", 9).matches(payload)
    assert Equals("items.0.name", "disk").matches(payload)
    assert Equals("items.1.name", "cpu").matches(payload)
    assert not Exists("items.2.name").matches(payload)  # out of range
    assert not Exists("items.x").matches(payload)  # a list has no keys
    assert not Exists("ticket.priority.x").matches(payload)  # a number has no fields
    assert not Exists("items.-1").matches(payload)  # only non-negative indexes


def test_a_digit_segment_is_a_key_in_a_mapping() -> None:
    assert Equals("codes.0", "zero").matches({"codes": {"0": "zero"}})


def test_a_string_is_not_indexed() -> None:
    assert not Exists("s.0").matches({"s": "abc"})


# --- combinators -------------------------------------------------------------------------------


def test_all_any_not() -> None:
    pager = Equals("source", "pager")
    high = Compare("ticket.priority", Comparison.GTE, 9)
    both = AllOf((pager, high))
    either = AnyOf((pager, high))
    assert both.matches({"source": "pager", "ticket": {"priority": 9}})
    assert not both.matches({"source": "pager", "ticket": {"priority": 8}})
    assert either.matches({"source": "email", "ticket": {"priority": 9}})
    assert not either.matches({"source": "email"})
    assert Not(pager).matches({"source": "email"})
    assert Not(pager).matches({})
    assert not Not(Not(pager)).matches({})


def test_nested_combinators() -> None:
    cond = AllOf((Keywords(("refund",)), Not(AnyOf((Exists("vip"), Equals("tier", "gold"))))))
    assert cond.matches({"m": "refund please"})
    assert not cond.matches({"m": "refund please", "tier": "gold"})
    assert not cond.matches({"m": "refund please", "vip": False})


# --- the classifier ----------------------------------------------------------------------------

RULES = (
    Rule("pager", "emergency", AllOf((Equals("source", "pager"), Exists("ticket")))),
    Rule("emergency-words", "emergency", Keywords(("outage", "on fire"))),
    Rule("policy-words", "policy", Keywords(("policy",))),
    Rule("help-words", "support", Keywords(("help",))),
)


def test_first_matching_rule_wins() -> None:
    classifier = Classifier(RULES)
    assert classifier.classify({"m": "help me understand policy"}) == Classification(
        "policy", "policy-words"
    )
    assert classifier.classify({"m": "help, policy outage"}) == Classification(
        "emergency", "emergency-words"
    )
    assert classifier.classify({"m": "help"}) == Classification("support", "help-words")


def test_rule_order_is_what_decides() -> None:
    reordered = Classifier((RULES[3], RULES[2]))
    assert reordered.classify({"m": "help me understand policy"}).kind == "support"


def test_no_match_is_the_default_classification() -> None:
    result = Classifier(RULES).classify({"m": "hello there"})
    assert result == Classification("default", "default")
    assert result is DEFAULT_CLASSIFICATION
    assert Classifier(()).classify({}) is DEFAULT_CLASSIFICATION


def test_a_match_returns_a_prebuilt_outcome() -> None:
    classifier = Classifier(RULES)
    first = classifier.classify({"m": "policy"})
    assert classifier.classify({"m": "policy again"}) is first


def test_kinds_lists_what_rules_can_produce() -> None:
    assert Classifier(RULES).kinds == {"emergency", "policy", "support"}


def test_rule_ids_are_unique_and_default_is_reserved() -> None:
    with pytest.raises(ValueError, match="unique"):
        Classifier((RULES[0], RULES[0]))
    with pytest.raises(ValueError, match="reserved"):
        Classifier((Rule("default", "x", Exists("a")),))


def test_conditions_are_frozen_and_compare_by_configuration() -> None:
    assert Keywords(("a", "b"), field="m") == Keywords(("a", "b"), field="m")
    assert Regex("x", flags="i") != Regex("x")
    with pytest.raises(AttributeError):
        Keywords(("a",)).words = ("b",)  # type: ignore[misc]


# --- properties --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=6)

EVERY_OPERATOR = Classifier(
    (
        Rule("kw", "a", Keywords(("on fire", "x"), field="m")),
        Rule("re", "b", Regex(r"\d{3}", field="items.0")),
        Rule("pre", "c", Prefix("re:", field="0", case_sensitive=False)),
        Rule("eq", "d", Equals("a.b", [1, {"c": None}])),
        Rule("gt", "e", Compare("n", Comparison.GT, 1.5)),
        Rule("lte", "f", Compare("items.1.n", Comparison.LTE, -3)),
        Rule("ex", "g", Not(Exists("zzz", present=True))),
        Rule("any", "h", AnyOf((Keywords(("policy",)), Regex("^$")))),
    )
)


@given(payloads)
def test_classify_never_raises_and_returns_a_known_kind(payload: dict[str, Any]) -> None:
    result = EVERY_OPERATOR.classify(payload)
    assert result.kind in EVERY_OPERATOR.kinds | {"default"}


word = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)


@given(word, st.data())
def test_keyword_matches_any_casing_of_itself(keyword: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(keyword), max_size=len(keyword)))
    cased = "".join(c.swapcase() if flip else c for c, flip in zip(keyword, flips, strict=True))
    before = data.draw(st.sampled_from(["", "x ", "well, ", "(", "\n"]))
    after = data.draw(st.sampled_from(["", " y", "!", ")", "."]))
    assert Keywords((keyword,)).matches({"m": before + cased + after})


# Letters of several scripts and cases, digits, underscores, and the whitespace and punctuation
# that separate words.
mixed_text = st.text(alphabet="aAbBéÉßžΣ\u03c31_ -.\t\n\u00a0\u2003\x85", max_size=24)
mixed_word = st.text(alphabet="aAbBéÉžΣ\u03c31_", min_size=1, max_size=4)


@given(
    st.lists(st.lists(mixed_word, min_size=1, max_size=2), min_size=1, max_size=3),
    st.lists(mixed_text, max_size=3),
)
def test_keywords_read_words_and_spaces_as_pythons_re_did(
    phrases: list[list[str]], texts: list[str]
) -> None:
    """RE2 reads the same whole words as Python's ``re`` with its Unicode ``\\w`` and ``\\s``,
    leaf by leaf."""
    words = tuple(" ".join(p) for p in phrases)
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    reference = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    expected = any(reference.search(text) for text in texts)
    assert Keywords(words).matches({"m": texts}) == expected


@given(word, word)
def test_keyword_never_matches_inside_a_longer_word(keyword: str, glue: str) -> None:
    assert not Keywords((keyword,)).matches({"m": keyword + glue})
    assert not Keywords((keyword,)).matches({"m": glue + keyword})


@given(word, word, st.lists(st.sampled_from([" ", "\t", "\n", "  "]), min_size=1, max_size=3))
def test_phrases_match_with_any_whitespace_between_words(a: str, b: str, gap: list[str]) -> None:
    assert Keywords((f"{a} {b}",)).matches({"m": f"say {a.upper()}{''.join(gap)}{b} now"})
