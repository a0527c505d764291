"""Cut an agent's streamed text into speakable pieces, each as soon as it is complete.

The first piece decides time to first audio, so it goes at the reply's first natural break (a comma,
semicolon, colon or dash) once it holds `first_clause_min_chars`, or, in a long sentence with no such
mark, where a new phrase begins (before "and", "in", "to"...) once it holds `first_phrase_min_chars`
(the voice is told the text around it, `held` included, so it keeps the sentence's tune); later pieces go
at sentence ends, so each keeps its prosody (a clause is cut only from a sentence past `min_clause_chars`).
Abbreviations ("Dr.", "e.g.") and decimals ("3.5") do not end a sentence.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "jr", "sr", "no", "approx"})
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:]\s|\s[-\u2013\u2014]+\s")
# The space before a word that starts a phrase; the word must be whole (followed by a space).
_PHRASE_START = re.compile(r"\s(?=(?:and|but|or|so|because|from|in|on|at|to|with|for|until|when|where|if|"
                           r"after|before|which|who)\s)")


class SentenceChunker:
    def __init__(self, first_clause_min_chars: int = 20, min_clause_chars: int = 120, max_chars: int = 240,
                 first_phrase_min_chars: int = 32) -> None:
        self._buffer = ""
        self._first_clause_min_chars = first_clause_min_chars
        self._first_phrase_min_chars = first_phrase_min_chars
        self._min_clause_chars = min_clause_chars
        self._max_chars = max_chars
        self._pieces = 0

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the pieces that are now complete."""
        self._buffer += delta
        pieces: list[str] = []
        while (piece := self._next_piece()) is not None:
            if piece:
                pieces.append(piece)
                self._pieces += 1
        return pieces

    @property
    def held(self) -> str:
        """Text streamed past the last piece, not yet a piece: what the voice is told comes next."""
        return self._buffer.strip()

    def flush(self) -> list[str]:
        """The end of the reply: whatever is left is the last piece."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next_piece(self) -> str | None:
        for match in _SENTENCE_END.finditer(self._buffer):
            if not self._is_false_end(match.start()):
                return self._take(match.end())
        first = self._pieces == 0
        if first or len(self._buffer) >= self._min_clause_chars:
            at_least = self._first_clause_min_chars if first else self._min_clause_chars // 2
            clauses = [m for m in _CLAUSE_END.finditer(self._buffer) if m.start() >= at_least]
            if clauses:
                return self._take(clauses[0].end())
        if first:
            phrases = [m for m in _PHRASE_START.finditer(self._buffer) if m.start() >= self._first_phrase_min_chars]
            if phrases:
                return self._take(phrases[0].start() + 1)
        if len(self._buffer) >= self._max_chars:
            cut = self._buffer.rfind(" ", 0, self._max_chars)
            return self._take(cut + 1 if cut > 0 else self._max_chars)
        return None

    def _is_false_end(self, index: int) -> bool:
        if self._buffer[index] != ".":
            return False
        word = self._buffer[:index].rsplit(None, 1)[-1].lower() if self._buffer[:index].strip() else ""
        word = word.lstrip("(\"'")
        if word in _ABBREVIATIONS:
            return True
        # "3.5" never reaches here (no whitespace after the dot); a lone initial like "J." is a name.
        return len(word) == 1 and word.isalpha()

    def _take(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        return piece
