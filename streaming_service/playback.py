"""What the caller has heard: outbound sentences, their marks, and Twilio's echoes.

Twilio plays our audio in order and echoes a mark when the audio before it has played. After a
`clear` it echoes every pending mark at once, so echoes that arrive after a clear do not count.
A sentence that was cut off is credited with the share of its words that fits the time it played.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class SpokenSentence:
    mark: str
    text: str
    audio_ms: float = 0.0
    first_sent_at: float | None = None
    heard: bool = False


@dataclass
class PlaybackTracker:
    _sentences: list[SpokenSentence] = field(default_factory=list)
    _by_mark: dict[str, SpokenSentence] = field(default_factory=dict)
    _cleared: set[str] = field(default_factory=set)
    _last_heard_at: float | None = None
    _counter: int = 0

    def begin_sentence(self, text: str, now: float | None = None) -> SpokenSentence:
        self._counter += 1
        sentence = SpokenSentence(mark=f"s{self._counter}", text=text, first_sent_at=now)
        self._sentences.append(sentence)
        self._by_mark[sentence.mark] = sentence
        return sentence

    def on_mark(self, name: str, now: float | None = None) -> SpokenSentence | None:
        """Twilio echoed a mark: return the sentence it completes, or None if it doesn't count."""
        if name in self._cleared:
            self._cleared.discard(name)
            return None
        sentence = self._by_mark.pop(name, None)
        if sentence is None:
            return None
        sentence.heard = True
        self._last_heard_at = time.monotonic() if now is None else now
        return sentence

    @property
    def pending(self) -> bool:
        """Audio was sent that Twilio has not finished playing."""
        return bool(self._by_mark)

    def interrupt(self, now: float | None = None) -> tuple[str, str]:
        """The caller barged in and a `clear` is being sent: return (spoken, heard) text of the
        sentences since the last interruption, and forget them."""
        now = time.monotonic() if now is None else now
        heard_parts: list[str] = []
        playing_since = self._last_heard_at
        for sentence in self._sentences:
            if sentence.heard:
                heard_parts.append(sentence.text)
                continue
            start = max(filter(None, (playing_since, sentence.first_sent_at)), default=now)
            played_ms = max(0.0, (now - start) * 1000)
            if sentence.audio_ms > 0 and played_ms > 0:
                words = sentence.text.split()
                share = min(1.0, played_ms / sentence.audio_ms)
                heard_parts.append(" ".join(words[: int(len(words) * share)]))
            break  # later sentences were never reached
        spoken = " ".join(s.text for s in self._sentences)
        self._cleared.update(self._by_mark)
        self._by_mark.clear()
        self._sentences.clear()
        return spoken, " ".join(p for p in heard_parts if p)

    def unplayed_ms(self) -> float:
        return sum(s.audio_ms for s in self._sentences if not s.heard)

    def forget_heard(self) -> None:
        """A reply finished playing in full; start the next reply's accounting afresh."""
        self._sentences = [s for s in self._sentences if not s.heard]
