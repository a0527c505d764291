"""What a caller's words mean to the rule-based policy: intent, yes/no, name, phone, service.

Keyword and pattern rules, nothing learned. Order matters and is part of the contract: asking for a
person beats everything, cancelling beats booking ("cancel my booking"), rescheduling beats booking
("move my booking"), and a goodbye only counts when nothing else was asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

from streaming_service.agents.offline_policy.spoken_numbers import words_to_digits
from streaming_service.agents.offline_policy.when_parser import MONTHS as _MONTH_WORDS


class Intent(Enum):
    HUMAN = "human"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    BOOK = "book"
    QUESTION = "question"
    GOODBYE = "goodbye"
    NONE = "none"


_HUMAN = re.compile(
    r"\b(human|real person|a person|someone|somebody|receptionist|operator|representative|agent|staff|"
    r"manager|talk to (?:a |an )?(?:real )?(?:person|people)|speak (?:to|with) (?:a|an|the|some)\w*)\b")
_CANCEL = re.compile(r"\b(cancel\w*|call off|won'?t (?:be able to )?make it|can'?t make it)\b")
_RESCHEDULE = re.compile(
    r"\b(reschedul\w*|re-schedul\w*|move (?:my|the|it|our)|change (?:my|the|our) (?:booking|appointment|"
    r"reservation|time)|push (?:it|my \w+) back|different (?:time|day)|another (?:time|day)|postpone)\b")
_BOOK = re.compile(
    r"\b(book\w*|appointment|reserv\w*|schedule|make a booking|come in|get (?:me )?in|slot|availability|"
    r"available|sign (?:me )?up|table for|(?:can|could|may) i (?:get|have|come in|grab)|i'?d like (?:a|an|to come)|"
    r"i (?:want|need) (?:a|an|to come))\b")
_QUESTION = re.compile(
    r"(\?|\b(what|when|where|how|which|who|why|do you|are you|is there|can i (?:park|pay|bring)|open|close|"
    r"hours|address|located|location|price|cost|parking|directions)\b)")
_GOODBYE = re.compile(
    r"\b(bye|goodbye|good bye|that'?s all|that is all|that'?s it|nothing else|no thanks|no thank you|"
    r"i'?m (?:all )?(?:good|done|set)|have a (?:good|nice) (?:day|one)|hang up|all set)\b")

_YES = re.compile(
    r"^(yes|yeah|yep|yup|ya|sure|correct|right|exactly|perfect|absolutely|definitely|certainly|ok|okay|"
    r"please do|go ahead|do it|sounds (?:good|great|right)|that'?s (?:right|correct|perfect|fine|great)|"
    r"that works|it is|book it|confirm\w*|affirmative|of course|fine|great|lovely|alright|all right)\b")
_NO = re.compile(r"^(no|nope|nah|not|wrong|that'?s (?:not|wrong)|incorrect|wait|hold on|actually|don'?t)\b")
_FILLER = re.compile(r"^(?:(?:uh|um|er|erm|oh|well|so|hmm|mm)\b[\s,.!]*)+")


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("’", "'")).strip()


def classify_intent(text: str) -> Intent:
    words = normalise(text)
    if not words:
        return Intent.NONE
    for intent, pattern in ((Intent.HUMAN, _HUMAN), (Intent.CANCEL, _CANCEL), (Intent.RESCHEDULE, _RESCHEDULE),
                            (Intent.BOOK, _BOOK)):
        if pattern.search(words):
            return intent
    if _GOODBYE.search(words):
        return Intent.GOODBYE
    if _QUESTION.search(words):
        return Intent.QUESTION
    return Intent.NONE


def yes_or_no(text: str) -> bool | None:
    """True for an explicit yes, False for a no (or a correction), None when it is neither."""
    words = _FILLER.sub("", normalise(text)).lstrip(",. ")
    if _NO.search(words):
        return False
    if _YES.search(words):
        return True
    return None


# --- slots -----------------------------------------------------------------------------------

_NAME_INTRO = re.compile(
    r"\b(?:my name is|my name's|name'?s|name is|this is|it'?s under|under the name(?: of)?|put it under|i'?m called|"
    r"call me|i am|i'?m)\s+([a-z][a-z'\-]+(?:\s+[a-z][a-z'\-]+)?)")
_NOT_NAMES = frozenset({
    "looking", "calling", "trying", "wondering", "not", "just", "a", "an", "the", "here", "interested", "going",
    "hoping", "wanting", "fine", "good", "okay", "ok", "sorry", "free", "available", "busy", "afraid", "sure",
    "at", "on", "for", "to", "in", "yes", "no", "new", "back", "still", "also", "so", "really",
})
# "... for Dev" / "it's for Ann Lee": a name at the very end of a sentence, after "for".
_NAME_FOR = re.compile(r"\bfor ([a-z][a-z'\-]+(?:\s+[a-z][a-z'\-]+)?)\s*[.!?]?$")
_NOT_NAME_WORDS = frozenset({
    "today", "tomorrow", "tonight", "morning", "afternoon", "evening", "noon", "midday", "week", "next", "this",
    "me", "us", "him", "her", "them", "one", "two", "it", "that", "now", "later", "instead", "please", "sure",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "appointment", "booking",
})
_NAME_STOP = frozenset({"and", "please", "thanks", "thank", "my", "at", "on", "for", "the", "i", "number", "phone"})


def extract_name(text: str, expecting: bool, not_names: Sequence[str] = ()) -> str | None:
    """A name introduced as such ("my name is Ann Lee", "... for Dev"), or the whole answer when a name
    was asked for. `not_names` are words that are never names here (the tenant's services)."""
    words = normalise(text)
    match = _NAME_INTRO.search(words)
    candidate = match.group(1) if match else None
    if candidate is None:
        sentence = re.split(r"(?<=[.!?,])\s+", words)[-1]
        match = _NAME_FOR.search(sentence) or _NAME_FOR.search(words)
        excluded = _NOT_NAME_WORDS | {w for s in not_names for w in s.lower().split()} | set(_MONTH_WORDS)
        if match and not set(match.group(1).split()) & excluded:
            candidate = match.group(1)
    if candidate is None and expecting:
        stripped = _FILLER.sub("", words)
        stripped = re.sub(r"^(it'?s|its|yes|yeah|sure|ok|okay)[,\s]+", "", stripped).strip(" .,!")
        if re.fullmatch(r"[a-z][a-z'\-]*(?:\s+[a-z][a-z'\-]*){0,2}", stripped):
            candidate = stripped
    if not candidate:
        return None
    parts = []
    for word in candidate.split():
        if word in _NAME_STOP:
            break
        parts.append(word)
    if not parts or parts[0] in _NOT_NAMES or words_to_digits(parts[0]) != parts[0]:
        return None
    return " ".join(p.capitalize() for p in parts[:3])


def extract_phone(text: str) -> str | None:
    """A phone number of 7 to 15 digits, spoken digit by digit or written; '+' kept when given."""
    digits_text = words_to_digits(text)
    for match in re.finditer(r"\+?\d[\d\s().,\-]{5,}\d", digits_text):
        digits = re.sub(r"\D", "", match.group(0))
        if 7 <= len(digits) <= 15:
            return ("+" if match.group(0).startswith("+") else "") + digits
    return None


def mentions_caller_id(text: str) -> bool:
    """"this number", "the one I'm calling from": the callback number is the caller ID."""
    return bool(re.search(r"\b(this|same|current) (?:phone )?number\b|\bcalling from\b|\bthis phone\b",
                          normalise(text)))


def extract_service(text: str, services: Sequence[str]) -> str | None:
    """The tenant service the caller named (whole words, singular or plural), else None."""
    words = normalise(text)
    for service in sorted(services, key=len, reverse=True):
        stem = re.escape(service.lower().rstrip("s"))
        if re.search(rf"\b{stem}s?\b", words):
            return service
    return None
