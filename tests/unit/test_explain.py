"""The decision trace: every rule in order, why each matched or not, the same winner as classify."""

from __future__ import annotations

from typing import Any

import pytest

from router_service.config.routing_file import DEFAULT_ROUTING_FILE, load_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.domain import classify as classify_module
from router_service.domain.classify import (
    Classifier,
    Condition,
    Exists,
    Keywords,
    Not,
    Prefix,
    Regex,
    Rule,
)
from router_service.domain.explain import explain
from router_service.domain.routing import Mode
from router_service.service.explain import explain_payload

SHIPPED = load_routing_config(DEFAULT_ROUTING_FILE)

PAYLOADS: list[dict[str, Any]] = [
    {"message": "help me understand policy"},
    {"source": "pager", "ticket": {"priority": 9}},
    {"source": "pager", "ticket": {"priority": 2}, "text": "sev1 now"},
    {"rating": 4, "message": "invoice INV-1234"},
    {"type": "feedback"},
    {"nothing": ["to", "see"]},
    {"deep": {"list": [{"x": "my Credit   Card was charged"}]}},
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_trace_picks_the_same_winner_as_classify(payload: dict[str, Any]) -> None:
    decision = explain(SHIPPED.classifier, SHIPPED.table, payload)
    found = SHIPPED.classifier.classify(payload)
    assert (decision.kind, decision.rule) == (found.kind, found.rule)
    assert [r.id for r in decision.rules] == [r.id for r in SHIPPED.classifier.rules]
    assert sum(r.won for r in decision.rules) == (0 if found.rule == "default" else 1)


def test_every_rule_says_why_with_path_value_and_hit() -> None:
    payload = {"message": "help me understand policy", "source": "web"}
    rules = {r.id: r for r in explain(SHIPPED.classifier, SHIPPED.table, payload).rules}
    pager = rules["pager-high-priority"].condition
    assert not pager.matched
    assert pager.children[0].as_dict() == {
        "op": "equals",
        "matched": False,
        "argument": "pager",
        "field": "source",
        "found": "web",
    }
    assert pager.children[1].found == "<missing>"
    policy = rules["policy-keywords"]
    assert policy.won
    assert (policy.condition.hit, policy.condition.at) == ("policy", "message")
    support = rules["support-keywords"]
    assert support.matched
    assert not support.won
    assert support.condition.hit == "help"


def test_regex_and_nested_paths_report_the_text_and_where() -> None:
    payload = {"items": [{"note": "see inv20931 please"}]}
    rule = next(
        r
        for r in explain(SHIPPED.classifier, SHIPPED.table, payload).rules
        if r.id == "invoice-number"
    )
    assert rule.won
    assert rule.condition.hit == "inv20931"
    assert rule.condition.at == "items.0.note"


def test_the_plan_lists_agents_mode_and_timeouts() -> None:
    decision = explain(
        SHIPPED.classifier,
        SHIPPED.table,
        {"text": "outage"},
        default_timeout_s=1.0,
    )
    body = decision.as_dict()
    assert body["kind"] == "emergency"
    assert body["plan"] == {
        "mode": "aggregate",
        "agents": [
            {"name": "oncall-agent", "timeout_s": 2.0},
            {"name": "support-agent", "timeout_s": 1.0},
        ],
    }
    forced = explain(SHIPPED.classifier, SHIPPED.table, {"text": "outage"}, Mode.FALLBACK)
    assert forced.plan.mode is Mode.FALLBACK


def test_explain_payload_adds_version_urls_and_circuits() -> None:
    version = RoutingSource.fixed(SHIPPED).current()
    answer = explain_payload(
        version, {"text": "outage"}, circuits={"oncall-agent": "open"}, default_timeout_s=1.0
    )
    assert answer["routing_version"] == version.version
    assert answer["dispatched"] is False
    agents = {a["name"]: a for a in answer["plan"]["agents"]}
    assert agents["oncall-agent"]["circuit_open"] is True
    assert agents["support-agent"]["circuit"] == "closed"
    assert agents["support-agent"]["url"].endswith("/agents/support-agent")


def test_no_match_is_the_default_rule() -> None:
    decision = explain(SHIPPED.classifier, SHIPPED.table, {"x": 1})
    assert (decision.kind, decision.rule) == ("default", "default")
    assert not any(r.matched for r in decision.rules)
    assert "no string in the payload hit" in decision.rules[1].as_dict()["why"]


def test_the_trace_walks_the_payloads_strings_as_often_as_classify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once for each path a rule reads, shared by every rule: each condition walked the payload
    itself, and a 258 kB body of one-item lists cost explain 112 ms (classify 34)."""
    walks: list[object] = []
    gather = classify_module._string_leaves

    def counted(value: Any, into: list[str], depth: int) -> list[str]:
        if depth == classify_module.MAX_SCAN_DEPTH:
            walks.append(value)  # a walk from its root; the deeper calls are the same walk
        return gather(value, into, depth)

    monkeypatch.setattr(classify_module, "_string_leaves", counted)
    payload = {"message": "refund please", "a": [["a"]] * 100}
    SHIPPED.classifier.classify(payload)
    by_classify = len(walks)
    walks.clear()
    explain(SHIPPED.classifier, SHIPPED.table, payload)
    assert by_classify >= 1
    assert len(walks) == by_classify


# Letters whose cases ``str.lower`` and the matching engines fold differently (the capital I
# with a dot lowers to two characters; the dotless i, the long s, the final sigma and the micro
# sign lower to themselves): the trace lowered both sides of a case-insensitive prefix and said
# "no match" where routing matched.
UNEVEN_CASES = [
    ("i", "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}"),
    ("i", "\N{LATIN SMALL LETTER DOTLESS I}"),
    ("s", "\N{LATIN SMALL LETTER LONG S}"),
    ("\N{MICRO SIGN}", "\N{GREEK CAPITAL LETTER MU}"),
    ("\N{MICRO SIGN}", "\N{GREEK SMALL LETTER MU}"),
    ("\N{GREEK SMALL LETTER SIGMA}", "\N{GREEK SMALL LETTER FINAL SIGMA}"),
]


def any_case_conditions(word: str) -> list[Condition]:
    """Every condition with a case-insensitive form, for ``word``: on the field and on the whole
    payload, and each negated."""
    plain: list[Condition] = [
        Keywords((word,)),
        Keywords((word,), "subject"),
        Regex(word, flags="i"),
        Regex(f"^{word}", "subject", "i"),
        Prefix(word, case_sensitive=False),
        Prefix(word, "subject", case_sensitive=False),
    ]
    return [*plain, *(Not(c) for c in plain)]


@pytest.mark.parametrize(
    ("written", "sent"), [*UNEVEN_CASES, *((sent, written) for written, sent in UNEVEN_CASES)]
)
def test_every_any_case_condition_is_explained_as_classify_decides_it_for_unevenly_folding_letters(
    written: str, sent: str
) -> None:
    for word, text in ((written, sent), (f"{written}nvoice", f"{sent}NVOICE 2291 overdue")):
        rules = tuple(Rule(f"r{i}", "billing", c) for i, c in enumerate(any_case_conditions(word)))
        payload = {"subject": text}
        decision = explain(Classifier(rules), SHIPPED.table, payload)
        for rule, trace in zip(rules, decision.rules, strict=True):
            routed = Classifier((rule,)).classify(payload).rule == rule.id
            assert trace.matched is routed, (rule.condition, text)


def test_a_case_insensitive_prefix_explains_a_turkish_capital_i_as_routing_does() -> None:
    rule = Rule("invoice-subject", "billing", Prefix("invoice", "subject", case_sensitive=False))
    classifier = Classifier((rule,))
    payload = {"subject": "İNVOICE 2291 overdue"}
    assert classifier.classify(payload).rule == "invoice-subject"
    decision = explain(classifier, SHIPPED.table, payload)
    assert (decision.kind, decision.rule) == ("billing", "invoice-subject")
    trace = decision.rules[0].condition
    assert (trace.matched, trace.hit, trace.at) == (True, "İNVOICE", "subject")


@pytest.mark.parametrize(
    "segment", ["\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}", "9" * 5000]
)
@pytest.mark.parametrize("items", [[1, 2], {"x": 1}])
def test_a_path_segment_of_other_digits_is_read_as_routing_reads_it(
    segment: str, items: Any
) -> None:
    """Explain read paths with ``str.isdigit`` and ``int``: a superscript two indexed nothing
    where routing reads a key, and raised (a 500) on a list."""
    rule = Rule("r", "k", Exists(f"items.{segment}", True))
    classifier = Classifier((rule,))
    for payload in ({"items": items}, {"items": {segment: 1}}):
        decision = explain(classifier, SHIPPED.table, payload)
        assert decision.rule == classifier.classify(payload).rule, payload
