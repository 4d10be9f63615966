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
# Python's ``\w`` and ``\s`` on text, spelled for RE2 (whose own are ASCII): a keyword is a whole
# word when no letter, digit or underscore touches it, and a phrase's words may be apart by any
# whitespace, as ``str.isspace`` counts it.
_WORD = r"\p{L}\p{N}_"
_SPACES = r"[\s\x{0B}\x{1C}-\x{1F}\x{85}\p{Z}]+"

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


def compile_words(words: tuple[str, ...]) -> Callable[[str], str | None]:
    """Whether any of ``words`` (words or phrases) occurs as a whole word, in any case: the text
    that hit, or ``None``. One RE2 alternation, linear in the text however many words there are
    (``re`` tries every word at every position: 0.1 s for 256 kB of spaces against the shipped
    file's keywords)."""
    phrases = {_SPACES.join(map(re2.escape, w.split())) for w in words}
    alternatives = "|".join(sorted(phrases, key=len, reverse=True))
    # RE2 has no lookaround: the characters either side are matched, and the words captured.
    search = compile_search(f"(?:^|[^{_WORD}])({alternatives})(?:[^{_WORD}]|$)", "i")

    def found(text: str) -> str | None:
        match = search(text)
        return None if match is None else str(match.group(1))

    return found
