"""The fault suite's quick subset, for real (``python -m chaos --quick``), and its invariant
checks on hand-made records that break each one: a check that cannot fail proves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.invariants import (
    Answer,
    DeadLetter,
    Evidence,
    LogRow,
    Receipt,
    Verdict,
    evaluate,
)
from tests.support.processes import ROOT

QUICK_TIMEOUT_S = 600


def _answer(log_id: str, status: int = 200, trace: str = "t1", **extra: object) -> Answer:
    return Answer(log_id=log_id, status=status, trace_id=trace, **extra)  # type: ignore[arg-type]


def _receipt(log_id: str, agent: str = "a", trace: str = "t1", effect: bool = True) -> Receipt:
    return Receipt(agent=agent, key=log_id, body_log_id=log_id, trace_id=trace, effect=effect)


def _verdict(
    answers: list[Answer],
    receipts: list[Receipt] | None = None,
    rows: list[LogRow] | None = None,
    letters: list[DeadLetter] | None = None,
    crash_affected: frozenset[str] = frozenset(),
) -> Verdict:
    if rows is None:
        rows = [LogRow(a.log_id, "delivered") for a in answers]
    evidence = Evidence(answers, receipts or [], rows, letters or [], crash_affected)
    return evaluate(evidence)


def _invariants(verdict: Verdict) -> set[str]:
    return {v.invariant for v in verdict.violations}


def test_clean_evidence_holds_every_invariant() -> None:
    verdict = _verdict([_answer("s1"), _answer("s2")], [_receipt("s1"), _receipt("s2")])
    assert verdict.passed, verdict.violations
    assert (verdict.requests, verdict.acknowledged, verdict.lost) == (2, 2, 0)


def test_an_acknowledged_signal_without_its_log_row_is_lost() -> None:
    verdict = _verdict([_answer("s1"), _answer("s2")], rows=[LogRow("s1", "delivered")])
    assert verdict.lost == 1
    assert _invariants(verdict) == {"a"}


def test_an_acknowledged_signal_still_in_progress_is_lost() -> None:
    verdict = _verdict([_answer("s1")], rows=[LogRow("s1", "in_progress")])
    assert verdict.lost == 1
    assert "a" in _invariants(verdict)


def test_a_parked_signal_without_a_dead_letter_is_lost() -> None:
    answers = [_answer("s1", 202)]
    verdict = _verdict(answers, rows=[LogRow("s1", "dead_lettered")])
    assert verdict.lost == 1
    assert _invariants(verdict) == {"a"}
    parked = _verdict(
        answers, rows=[LogRow("s1", "dead_lettered")], letters=[DeadLetter(1, "s1", "")]
    )
    assert parked.passed, parked.violations


def test_a_client_duplicate_that_reaches_an_agent_is_a_duplicate_dispatch() -> None:
    answers = [_answer("s1", trace="t1"), _answer("s1", trace="t2")]
    receipts = [_receipt("s1", trace="t1"), _receipt("s1", trace="t2")]
    verdict = _verdict(answers, receipts)
    assert verdict.duplicate_dispatches == 1
    assert _invariants(verdict) == {"b"}


def test_a_client_duplicate_reaching_a_failing_agent_still_counts() -> None:
    answers = [_answer("s1", 202, trace="t1"), _answer("s1", 202, trace="t2")]
    receipts = [_receipt("s1", trace="t1", effect=False), _receipt("s1", trace="t2", effect=False)]
    verdict = _verdict(
        answers, receipts, [LogRow("s1", "dead_lettered")], [DeadLetter(1, "s1", "")]
    )
    assert verdict.duplicate_dispatches == 1


def test_a_repeated_effect_with_no_fault_is_a_duplicate_dispatch() -> None:
    verdict = _verdict([_answer("s1")], [_receipt("s1"), _receipt("s1")])
    assert verdict.duplicate_dispatches == 1
    assert verdict.redeliveries == 0
    assert _invariants(verdict) == {"b"}


def test_a_repeated_effect_after_a_crash_is_a_redelivery() -> None:
    answers = [_answer("s1", 0, error="ServerDisconnectedError"), _answer("s1", trace="t2")]
    receipts = [_receipt("s1"), _receipt("s1"), _receipt("s1", agent="b")]
    verdict = _verdict(answers, receipts, crash_affected=frozenset({"s1"}))
    assert verdict.passed, verdict.violations
    assert (verdict.redeliveries, verdict.duplicate_dispatches) == (1, 0)


def test_a_repeated_effect_after_a_database_failure_is_a_redelivery() -> None:
    answers = [_answer("s1", 503, code="database_unavailable"), _answer("s1", trace="t2")]
    verdict = _verdict(answers, [_receipt("s1"), _receipt("s1")])
    assert verdict.passed, verdict.violations
    assert (verdict.redeliveries, verdict.duplicate_dispatches) == (1, 0)
    overloaded = [_answer("s1", 503, code="overloaded"), _answer("s1", trace="t2")]
    assert _verdict(overloaded, [_receipt("s1"), _receipt("s1")]).duplicate_dispatches == 1


def test_a_repeated_effect_the_router_recorded_as_a_retry_is_a_redelivery() -> None:
    receipts = [_receipt("s1"), _receipt("s1")]
    rows = [LogRow("s1", "delivered", {"a": 2})]
    retried = _verdict([_answer("s1")], receipts, rows=rows)
    assert retried.passed, retried.violations
    assert (retried.redeliveries, retried.retries, retried.duplicate_dispatches) == (1, 1, 0)
    three = _verdict([_answer("s1")], [*receipts, _receipt("s1")], rows=rows)
    assert three.duplicate_dispatches == 1
    assert _invariants(three) == {"b"}


def test_effects_of_a_replay_the_router_recorded_as_failed_are_redeliveries() -> None:
    """A replay timed out while the agent held it (the agent took it, and its retry), was
    recorded as failed, and another replayer sent it again: three effects, the last dispatch
    one attempt. Judged a replay done twice, the quick suite failed on a loaded machine."""
    receipts = [_receipt("s1"), _receipt("s1"), _receipt("s1")]
    rows = [LogRow("s1", "delivered", {"a": 1})]
    parked = [DeadLetter(1, "s1", "a")]
    evidence = Evidence(
        [_answer("s1", 202)], receipts, rows, parked, failed_replays={("s1", "a"): 1}
    )
    verdict = evaluate(evidence)
    assert verdict.passed, verdict.violations
    assert (verdict.redeliveries, verdict.duplicate_dispatches) == (2, 0)
    whole_signal = Evidence(
        [_answer("s1", 202)], receipts, rows, parked, failed_replays={("s1", ""): 1}
    )
    assert evaluate(whole_signal).passed
    # A failed replay explains at most its own attempts; one of another agent explains none.
    many = Evidence(
        [_answer("s1", 202)], receipts * 2, rows, parked, failed_replays={("s1", "a"): 1}
    )
    assert evaluate(many).duplicate_dispatches == 2  # six effects: one, three, two too many
    other = Evidence([_answer("s1", 202)], receipts, rows, parked, failed_replays={("s1", "b"): 1})
    assert _invariants(evaluate(other)) == {"b"}


def test_retried_attempts_at_a_failing_agent_are_not_effects() -> None:
    receipts = [_receipt("s1", effect=False), _receipt("s1", effect=False), _receipt("s1")]
    verdict = _verdict([_answer("s1")], receipts)
    assert verdict.passed, verdict.violations


def test_a_receipt_without_the_log_id_as_idempotency_key_is_a_violation() -> None:
    wrong = Receipt(agent="a", key="other", body_log_id="s1", trace_id="t1")
    missing = Receipt(agent="a", key=None, body_log_id="s1", trace_id="t1")
    for receipt in (wrong, missing):
        assert _invariants(_verdict([_answer("s1")], [receipt])) == {"b"}


def test_a_500_is_a_violation_and_a_503_during_an_outage_is_expected() -> None:
    crashed = _verdict([_answer("s1", 500, code="internal_error")], rows=[])
    assert crashed.server_errors == 1
    assert _invariants(crashed) == {"c"}
    outage = _verdict([_answer("s1", 503, code="database_unavailable")], rows=[])
    assert outage.passed, outage.violations
    assert (outage.expected_503, outage.five_xx) == (1, 1)
    other = _verdict([_answer("s1", 503, code="database_error"), _answer("s2", 502)], rows=[])
    assert other.server_errors == 2
    assert _invariants(other) == {"c"}


def test_no_answer_outside_a_fault_is_a_violation() -> None:
    silent = _verdict([_answer("s1", 0, error="ServerDisconnectedError")], rows=[])
    assert _invariants(silent) == {"c"}
    crashed = _verdict([_answer("s1", 0)], rows=[], crash_affected=frozenset({"s1"}))
    assert crashed.passed, crashed.violations


def test_two_dead_letters_for_one_signal_and_agent_are_a_violation() -> None:
    letters = [DeadLetter(1, "s1", "a"), DeadLetter(2, "s1", "a"), DeadLetter(3, "s1", "b")]
    verdict = _verdict([_answer("s1", 200)], rows=[LogRow("s1", "partial")], letters=letters)
    assert verdict.dlq_duplicates == 1
    assert _invariants(verdict) == {"d"}


def test_a_signal_left_in_progress_is_stuck() -> None:
    rows = [LogRow("s1", "in_progress")]
    verdict = _verdict([_answer("s1", 0)], rows=rows, crash_affected=frozenset({"s1"}))
    assert verdict.stuck == 1
    assert _invariants(verdict) == {"e"}


@pytest.mark.timeout(QUICK_TIMEOUT_S + 120)
def test_quick_fault_suite_holds_every_invariant(tmp_path: Path) -> None:
    """Real routers, agents, replayers and a private Postgres; kill -9, pg_terminate_backend,
    failing agents, duplicates, concurrent replayers and SIGTERM: nothing lost or doubled."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chaos", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=QUICK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM first: chaos then stops its processes and deletes its Postgres cluster.
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"python -m chaos --quick ran past {QUICK_TIMEOUT_S} s:\n{output.decode()}")
    text = output.decode(errors="replace")
    results_file = tmp_path / "results.json"
    assert results_file.exists(), text
    results = json.loads(results_file.read_text())
    assert results["scenarios"], text
    problems = []
    for scenario in results["scenarios"]:
        name = scenario["name"]
        if scenario["error"]:
            problems.append(f"{name} did not finish: {scenario['error']}")
        for key in ("lost", "duplicate_dispatches", "server_errors", "stuck", "dlq_duplicates"):
            if scenario[key]:
                problems.append(f"{name}: {key} = {scenario[key]}")
        problems += [f"{name}: {v}" for v in scenario["violations"]]
    assert not problems, "\n".join(problems) + "\n\n" + text
    assert results["passed"] is True
    assert process.returncode == 0, text
    assert (tmp_path / "reliability.md").read_text().startswith("# Reliability")
