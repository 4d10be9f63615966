"""A rule's ``regex`` runs in time linear in the text it searches: RE2, not Python's ``re``.

The pattern is the operator's; the text is the client's payload. Python's ``re`` backtracks,
and a pattern as ordinary as ``^(\\w+\\s?)*$`` took 2 s to fail on a 40-character message, each
character more doubling it: one signal held the event loop, and every other client with it.
RE2 (the engine of Envoy's ``safe_regex``, of Go and of RE2-based rule engines) guarantees time
linear in the text for every pattern it accepts. It accepts no backreferences and no lookaround;
such a pattern is refused when the routing file is loaded, with RE2's reason.

Where RE2 reads a pattern differently from ``re``: ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII
(``\\pL``, ``\\p{N}`` and ``[\\p{L}\\p{N}_]`` are the Unicode classes), and ``$`` without the ``m``
flag matches only at the very end of the text. The flags are the same letters: ``i`` (any
case), ``m`` (``^``/``$`` at every line), ``s`` (``.`` matches a newline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

FLAG_LETTERS = "ims"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is raised (and reported with the file's path) instead


def check_flags(letters: str) -> str:
    """``letters`` when each is one of ``i``, ``m``, ``s``; ``ValueError`` names another."""
    for letter in letters:
        if letter not in FLAG_LETTERS:
            raise ValueError(f"unknown regex flag {letter!r} (use i, m, s)")
    return letters


def compile_search(pattern: str, flags: str = "") -> Callable[[str], Any]:
    """The pattern's search (a match object or ``None``, as ``re``'s); ``ValueError`` with
    RE2's reason when it cannot run the pattern (a backreference, a lookaround, a pattern
    past its memory budget)."""
    letters = "".join(sorted(set(check_flags(flags))))
    try:
        compiled = re2.compile(f"(?{letters}){pattern}" if letters else pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    search: Callable[[str], Any] = compiled.search
    return search
