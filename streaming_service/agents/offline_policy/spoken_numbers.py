"""Spoken numbers to digits, word by word: "three thirty" → "3 30", "five five five" → "5 5 5".

Speech-to-text writes numbers either way depending on vendor and context, so the policy normalises
first and then only deals with digits.
"""

from __future__ import annotations

import re

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}
_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]+|\s+")


def words_to_digits(text: str) -> str:
    """Lowercase `text` with number words (cardinal and ordinal, up to fifty-nine) as digits.

    "oh" only counts as zero between other digits ("five oh one"), never as an exclamation.
    """
    tokens = _TOKEN.findall(text.lower().replace("-", " "))
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        value, ordinal = _value(token)
        if value is None or (token == "oh" and not _digit_before(out)):
            out.append(token)
            index += 1
            continue
        # "twenty five" / "twenty-fifth": a tens word followed by a unit word is one number.
        if token in _TENS and index + 2 < len(tokens) and tokens[index + 1].isspace():
            unit, unit_ordinal = _value(tokens[index + 2])
            if unit is not None and 1 <= unit <= 9:
                value, ordinal = value + unit, unit_ordinal
                index += 2
        out.append(f"{value}{_suffix(value) if ordinal else ''}")
        index += 1
    return "".join(out)


def _value(token: str) -> tuple[int | None, bool]:
    if token in _UNITS:
        return _UNITS[token], False
    if token in _TENS:
        return _TENS[token], False
    if token in _ORDINALS:
        return _ORDINALS[token], True
    return None, False


def _digit_before(out: list[str]) -> bool:
    for token in reversed(out):
        if token.isspace() or token == ",":
            continue
        return token.isdigit()
    return False


def _suffix(value: int) -> str:
    if 10 <= value % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")


def spoken_time(hour: int, minute: int) -> str:
    """A clock time as a person says it: "3 pm", "3:30 pm", "noon"."""
    if hour == 12 and minute == 0:
        return "noon"
    suffix = "am" if hour < 12 else "pm"
    h12 = hour % 12 or 12
    return f"{h12} {suffix}" if minute == 0 else f"{h12}:{minute:02d} {suffix}"


def ordinal(value: int) -> str:
    return f"{value}{_suffix(value)}"
