"""Extra training text for the offline recogniser's booking-domain language model: the answers a caller
gives most often and that matter most (yes/no to a read-back, a full name, a time, a phone number).

Kept apart from `offline_stt.py` (the recogniser) so the phrase data can grow without touching the
engine. `offline_stt.domain_sentences()` adds these sentences to its sampled templates. Every full
name (first x last) and every yes/no answer appears explicitly and often, so the trigram model knows
"is john smith" and "yes please" instead of backing off to whatever sounds close ("john to a",
"yeah earlier"): measured with `bench/offline_stt_wer.py`.

The yes/no answers also make a small grammar: the recogniser decodes a final that looks like a yes/no
answer (`looks_like_yes_no`) once more against it, so a misheard "yes please" cannot come out as
"yeah earlier" or "yeah really".
"""

from __future__ import annotations

import itertools

FIRST_NAMES = ["john", "sarah", "michael", "emily", "david", "maria", "james", "anna", "robert", "lisa",
               "daniel", "laura", "chris", "alex", "kate", "tom", "peter", "susan", "mark", "jennifer"]
SURNAMES = ["smith", "jones", "brown", "johnson", "williams", "miller", "davis", "garcia", "wilson"]

YES = ["yes", "yes please", "yeah", "yes that's right", "yes that's correct", "yes that works", "yes book it",
       "yes please book it", "that's right", "that's correct", "correct", "sure", "okay", "yep",
       "yes that's fine", "sounds good", "perfect", "please do", "go ahead"]
NO = ["no", "no thanks", "no thank you", "no thank you goodbye", "no that's all", "no that's it",
      "no that's wrong", "that's not right", "nope", "not really", "no that's everything thank you"]
DIGITS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMBER_ANSWERS = ["the number i'm calling from", "this number", "the number you have",
                  "you can reach me on this number", "use the number i'm calling from"]

NAME_FORMS = ["my name is {first} {last}", "{first} {last}", "it's {first} {last}", "this is {first} {last}",
              "my name is {first}", "the name is {first} {last}", "under {first} {last}",
              "put it under {first} {last}"]
CLOSINGS = ["thank you", "thanks", "thank you goodbye", "thanks bye", "goodbye", "bye"]
YES_NO_CUES = {"yes", "yeah", "yep", "yup", "no", "nope", "sure", "okay", "correct", "perfect"}
# A yes/no answer names no day, time or person: a final with one of these is left as heard. A lone
# first name is not one of them: "yes please" comes out as "yeah lisa" now and then, while a caller
# giving a name says "it's", "name is" or a surname too.
_NOT_YES_NO = {"at", "on", "for", "am", "pm", "today", "tomorrow", "morning", "afternoon", "evening",
               "appointment", "name", "is", "it's", *DIGITS, *SURNAMES}
YES_NO_ANSWERS = frozenset(YES + NO + CLOSINGS)
ANSWER_WEIGHT = 30  # yes/no answers weigh like a common template


def robust_sentences() -> list[str]:
    sentences: list[str] = []
    for first, last in itertools.product(FIRST_NAMES, SURNAMES):
        sentences += [form.format(first=first, last=last) for form in NAME_FORMS]
    sentences += (YES + NO + NUMBER_ANSWERS) * ANSWER_WEIGHT
    # Phone numbers read digit by digit, in groups, as a caller gives them.
    sentences += [" ".join(group) for group in itertools.product(DIGITS, repeat=3)][::3]
    sentences += [f"it's {a} {b} {c} {d}" for a, b, c, d in zip(DIGITS, DIGITS[3:] + DIGITS[:3],
                                                                 DIGITS[5:] + DIGITS[:5], DIGITS[7:] + DIGITS[:7],
                                                                 strict=True)]
    return sentences


def looks_like_yes_no(text: str) -> bool:
    """A short final opening like a yes or a no, with no day, time or name in it, that is not one of
    the yes/no answers already."""
    words = text.split()
    return (0 < len(words) <= 4 and words[0] in YES_NO_CUES and not _NOT_YES_NO.intersection(words)
            and text not in YES_NO_ANSWERS)


def yes_no_grammar() -> str:
    """JSGF of the yes/no answers and closings, for the recogniser's second look at a short answer."""
    return "#JSGF V1.0;\ngrammar yes_no;\npublic <answer> = " + " | ".join(sorted(YES_NO_ANSWERS)) + ";\n"
