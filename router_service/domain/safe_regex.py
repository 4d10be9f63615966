"""A rule's ``regex`` and ``keywords`` run in time linear in the text they search: RE2, not
Python's ``re``.

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

The searches call the binding's ``RE2.Match`` on the UTF-8 bytes straight: the package's
``re``-like ``search`` maps every offset back to characters through a generator, 1.5 µs a call
against 0.6 µs, and classification searches every string leaf of a payload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import re2
from re2 import _re2

FLAG_LETTERS = "ims"
# Python's ``\w`` and ``\s`` on text, spelled for RE2 (whose own are ASCII): a keyword is a whole
# word when no letter, digit or underscore touches it, and a phrase's words may be apart by any
# whitespace, as ``str.isspace`` counts it.
_WORD = r"\p{L}\p{N}_"
_SPACES = r"[\s\x{0B}\x{1C}-\x{1F}\x{85}\p{Z}]+"
# Between two string leaves searched as one text (``compile_words``): neither a word character
# nor whitespace, so a keyword ends at it as at a leaf's end, and no phrase spans it.
LEAF_SEPARATOR = "\x00"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is raised (and reported with the file's path) instead
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


def check_flags(letters: str) -> str:
    """``letters`` when each is one of ``i``, ``m``, ``s``; ``ValueError`` names another."""
    for letter in letters:
        if letter not in FLAG_LETTERS:
            raise ValueError(f"unknown regex flag {letter!r} (use i, m, s)")
    return letters


def _compile(pattern: str, flags: str) -> Callable[[int, bytes, int, int], list[tuple[int, int]]]:
    """RE2's ``Match`` for the pattern; ``ValueError`` with RE2's reason when it cannot run the
    pattern (a backreference, a lookaround, a pattern past its memory budget)."""
    letters = "".join(sorted(set(check_flags(flags))))
    source = f"(?{letters}){pattern}" if letters else pattern
    regexp = _re2.RE2(source.encode("utf-8", "surrogatepass"), _OPTIONS)
    if not regexp.ok():
        reason = regexp.error()
        raise ValueError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason)
    match: Callable[[int, bytes, int, int], list[tuple[int, int]]] = regexp.Match
    return match


def _utf8(text: str) -> bytes:
    # A lone surrogate (refused in bodies; possible in text from elsewhere) cannot match a
    # pattern of valid UTF-8, and must not raise here.
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class Searches:
    """One compiled pattern, two ways to ask it: ``test`` (whether it occurs in a text, as a
    ``re.search`` that found something) and ``hit`` (the text its first match covers, or
    ``None``; for the explanation of a decision)."""

    test: Callable[[str], bool]
    hit: Callable[[str], str | None]


def compile_searches(pattern: str, flags: str = "") -> Searches:
    match = _compile(pattern, flags)

    def test(text: str) -> bool:
        data = _utf8(text)
        return match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    return Searches(test, _text_of(match, 0))


def _text_of(
    match: Callable[[int, bytes, int, int], list[tuple[int, int]]], group: int
) -> Callable[[str], str | None]:
    """The text ``group`` of the first match covers in a text, or ``None``."""

    def text_of(text: str) -> str | None:
        data = _utf8(text)
        start, end = match(_UNANCHORED, data, 0, len(data))[group]
        return None if start < 0 else data[start:end].decode("utf-8", "surrogatepass")

    return text_of


def compile_words(words: tuple[str, ...]) -> Callable[[str], str | None]:
    """Whether any of ``words`` (words or phrases) occurs as a whole word, in any case: the text
    that hit, or ``None``. One RE2 alternation, linear in the text however many words there are
    (``re`` tries every word at every position: 0.1 s for 256 kB of spaces against the shipped
    file's keywords). Several leaves may be searched as one text, joined by
    ``LEAF_SEPARATOR``, which no word may hold."""
    if any(LEAF_SEPARATOR in w for w in words):
        raise ValueError("keywords may not hold a NUL character")
    phrases = {_SPACES.join(map(re2.escape, w.split())) for w in words}
    alternatives = "|".join(sorted(phrases, key=len, reverse=True))
    # RE2 has no lookaround: the characters either side are matched, and the words captured.
    match = _compile(f"(?:^|[^{_WORD}])({alternatives})(?:[^{_WORD}]|$)", "i")
    return _text_of(match, 1)
