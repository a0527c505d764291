"""Backchannels: the little words a listener says to show they are listening ("mm-hm", "right").

Said over the agent, they are not a turn and not an interruption. Recognisers spell them many ways
("Mhm.", "Mm-hmm", "uh huh"), so text is compared with hyphens, spaces and punctuation folded away,
phrase by phrase. "Uh-uh" (no) is deliberately absent.
"""

from __future__ import annotations

import re

_PHRASES = (
    "mhm", "mmhm", "mmhmm", "mhmm", "mm", "mmm", "hmm", "hm", "uhhuh", "uhhuhh", "aha", "ah", "oh", "uh", "um",
    "ok", "okay", "k", "yeah", "yea", "yep", "yup", "right", "sure", "alright", "allright", "cool", "gotcha",
    "gotit", "isee", "ohokay", "okaythen", "soundsgood", "great", "fine", "nice", "wow",
)
_FOLDED = frozenset(_PHRASES)
_LONGEST_WORDS = 2  # "got it", "i see", "sounds good"


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,.!?;:]+", text.lower().replace("-", "")) if w]


def is_backchannel(text: str) -> bool:
    """True when `text` holds nothing but backchannel words (and something at all)."""
    words = _words(text)
    if not words:
        return False
    i = 0
    while i < len(words):
        for size in range(_LONGEST_WORDS, 0, -1):
            if "".join(words[i : i + size]) in _FOLDED and i + size <= len(words):
                i += size
                break
        else:
            return False
    return True
