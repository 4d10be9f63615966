"""Folding agent results into a final status, response and dead letters, per mode."""

from __future__ import annotations

from typing import Any

import pytest

from router_service.domain.outcome import AgentResult, DeadLetter, Status, fold
from router_service.domain.routing import Mode


def ok(agent: str, response: Any, attempts: int = 1) -> AgentResult:
    return AgentResult(agent, True, 200, attempts, 12.5, response=response)


def failed(agent: str, error: str | None, attempts: int = 3) -> AgentResult:
    return AgentResult(agent, False, 503, attempts, 40.0, error=error)


SINGLE_WINNER_MODES = [Mode.FIRST_SUCCESS, Mode.FALLBACK]


@pytest.mark.parametrize("mode", SINGLE_WINNER_MODES)
def test_single_winner_mode_delivers_the_winners_response(mode: Mode) -> None:
    results = [failed("a", "HTTP 503"), ok("b", {"answer": "from b"})]
    outcome = fold(mode, results)
    assert outcome.status is Status.DELIVERED
    assert outcome.response == {"answer": "from b"}
    assert outcome.dead_letters == ()
    assert outcome.results == tuple(results)


@pytest.mark.parametrize("mode", SINGLE_WINNER_MODES)
def test_single_winner_mode_takes_the_first_successful_result(mode: Mode) -> None:
    outcome = fold(mode, [ok("a", "first"), ok("b", "second")])
    assert outcome.response == "first"


@pytest.mark.parametrize("mode", SINGLE_WINNER_MODES)
def test_single_winner_mode_all_failed_parks_one_signal_level_dead_letter(mode: Mode) -> None:
    results = [failed("a", "HTTP 503", attempts=3), failed("b", "timed out", attempts=2)]
    outcome = fold(mode, results)
    assert outcome.status is Status.DEAD_LETTERED
    assert outcome.response is None
    assert outcome.results == tuple(results)
    assert len(outcome.dead_letters) == 1
    (letter,) = outcome.dead_letters
    assert letter.agent is None
    assert letter.attempts == 5
    assert "a: HTTP 503" in letter.error
    assert "b: timed out" in letter.error


@pytest.mark.parametrize("mode", SINGLE_WINNER_MODES)
def test_single_winner_mode_with_no_results_is_dead_lettered(mode: Mode) -> None:
    outcome = fold(mode, [])
    assert outcome.status is Status.DEAD_LETTERED
    assert outcome.dead_letters == (DeadLetter(None, "no agent answered", 0),)


def test_aggregate_all_ok_is_delivered_with_responses_keyed_by_agent() -> None:
    results = [ok("a", {"x": 1}), ok("b", [2]), ok("c", None)]
    outcome = fold(Mode.AGGREGATE, results)
    assert outcome.status is Status.DELIVERED
    assert outcome.response == {"a": {"x": 1}, "b": [2], "c": None}
    assert outcome.dead_letters == ()
    assert outcome.results == tuple(results)


def test_aggregate_some_failed_is_partial_with_a_dead_letter_per_failed_agent() -> None:
    results = [
        ok("a", {"x": 1}),
        failed("b", "HTTP 503", attempts=3),
        failed("c", "timed out", attempts=1),
    ]
    outcome = fold(Mode.AGGREGATE, results)
    assert outcome.status is Status.PARTIAL
    assert outcome.response == {"a": {"x": 1}, "b": None, "c": None}
    assert outcome.dead_letters == (
        DeadLetter("b", "HTTP 503", 3),
        DeadLetter("c", "timed out", 1),
    )


def test_aggregate_all_failed_is_dead_lettered_with_a_letter_per_agent() -> None:
    results = [failed("a", "HTTP 500", attempts=2), failed("b", "HTTP 429", attempts=3)]
    outcome = fold(Mode.AGGREGATE, results)
    assert outcome.status is Status.DEAD_LETTERED
    assert outcome.response == {"a": None, "b": None}
    assert outcome.dead_letters == (
        DeadLetter("a", "HTTP 500", 2),
        DeadLetter("b", "HTTP 429", 3),
    )


def test_aggregate_dead_letter_without_an_error_message_says_failed() -> None:
    outcome = fold(Mode.AGGREGATE, [ok("a", 1), failed("b", None, attempts=1)])
    assert outcome.dead_letters == (DeadLetter("b", "failed", 1),)


def test_agent_result_as_dict_rounds_latency_to_microseconds() -> None:
    result = AgentResult("a", True, 200, 1, 1.23456789, response={"k": "v"})
    assert result.as_dict() == {
        "agent": "a",
        "ok": True,
        "status_code": 200,
        "attempts": 1,
        "latency_ms": 1.235,
        "response": {"k": "v"},
        "error": None,
    }
