"""What the caller has heard: outbound sentences, their audio, marks, and Twilio's echoes.

Twilio plays our audio in order, at real time, from the moment it arrives, and echoes a mark when the
audio before it has played. We send ahead of playback, so the position is modelled from the clock:
each frame starts playing when the one before it has finished (or when it was sent, if the buffer had
run dry). Every returning mark re-aligns the model: the audio before it finished when the echo came
back. Besides the mark after each sentence, a position mark goes out after every second of audio, so
the model is never more than a second of audio away from Twilio's own account.

After a `clear` Twilio echoes every pending mark at once, so echoes of cleared marks do not count.
Every sentence keeps its audio, so a reply paused by a suspected interruption can be sent again from
the frame the caller last heard (`pause` / `unheard` / `resume`). A sentence cut for good is credited
with the share of its words that fits the audio that played.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shared.audio.mulaw import BYTES_PER_MS, FRAME_BYTES

_BYTES_PER_S = BYTES_PER_MS * 1000
POSITION_MARK_BYTES = _BYTES_PER_S  # a position mark after every second of a sentence's audio


@dataclass
class SpokenSentence:
    mark: str
    text: str
    audio_ms: float = 0.0  # length of the whole sentence's audio, once known
    first_sent_at: float | None = None
    heard: bool = False
    audio: bytearray = field(default_factory=bytearray)  # every frame produced so far, kept for a replay
    sent_bytes: int = 0  # of `audio`, handed to Twilio since the last (re)start
    heard_bytes: int = 0  # of `audio`, known to have played before a pause
    complete: bool = False  # synthesis finished: `audio` is whole
    mark_sent: bool = False


@dataclass
class _Play:
    sentence: SpokenSentence
    offset: int  # byte offset in the sentence's audio
    size: int
    start_at: float  # modelled time this frame starts playing


@dataclass
class PlaybackTracker:
    _sentences: list[SpokenSentence] = field(default_factory=list)
    _by_mark: dict[str, SpokenSentence] = field(default_factory=dict)
    _cleared: set[str] = field(default_factory=set)
    _last_heard_at: float | None = None
    _counter: int = 0
    _plays: list[_Play] = field(default_factory=list)
    _buffer_end: float = 0.0  # modelled time Twilio's buffer runs dry
    _position_marks: dict[str, _Play] = field(default_factory=dict)

    def begin_sentence(self, text: str, now: float | None = None) -> SpokenSentence:
        sentence = SpokenSentence(mark=self._new_mark(), text=text, first_sent_at=now)
        self._sentences.append(sentence)
        self._by_mark[sentence.mark] = sentence
        return sentence

    def frame_sent(self, sentence: SpokenSentence, size: int, now: float | None = None) -> str | None:
        """`size` bytes of `sentence.audio` from `sentence.sent_bytes` are going to Twilio now. Returns the
        name of a position mark to send right after them, when one is due."""
        now = time.monotonic() if now is None else now
        if sentence.first_sent_at is None:
            sentence.first_sent_at = now
        start = max(now, self._buffer_end)
        play = _Play(sentence, sentence.sent_bytes, size, start)
        self._plays.append(play)
        self._buffer_end = start + size / _BYTES_PER_S
        before, sentence.sent_bytes = sentence.sent_bytes, sentence.sent_bytes + size
        if before // POSITION_MARK_BYTES == sentence.sent_bytes // POSITION_MARK_BYTES:
            return None
        name = self._new_mark("p")
        self._position_marks[name] = play
        return name

    def on_mark(self, name: str, now: float | None = None) -> SpokenSentence | None:
        """Twilio echoed a mark: return the sentence it completes, or None if it doesn't count."""
        if name in self._cleared:
            self._cleared.discard(name)
            return None
        now = time.monotonic() if now is None else now
        position = self._position_marks.pop(name, None)
        if position is not None:
            self._realign(position, now)
            return None
        sentence = self._by_mark.pop(name, None)
        if sentence is None:
            return None
        sentence.heard = True
        self._last_heard_at = now
        last = [p for p in self._plays if p.sentence is sentence]
        if last:
            self._realign(last[-1], now)
        return sentence

    def _realign(self, played: _Play, echoed_at: float) -> None:
        """The echo of a mark sent right after `played` came back: it finished playing by then."""
        index = next((i for i, p in enumerate(self._plays) if p is played), None)
        if index is None:
            return
        shift_s = echoed_at - (played.start_at + played.size / _BYTES_PER_S)
        sentence = played.sentence  # heard for certain up to here, whatever the clock says later
        sentence.heard_bytes = max(sentence.heard_bytes, played.offset + played.size)
        del self._plays[: index + 1]  # played for certain: no longer needed for the position
        for play in self._plays:
            play.start_at += shift_s
        self._buffer_end += shift_s

    @property
    def pending(self) -> bool:
        """Audio was sent (or is being produced) that Twilio has not finished playing."""
        return bool(self._by_mark)

    # --- suspected interruptions: pause now, then resume or give up -----------------------------

    def pause(self, now: float | None = None) -> None:
        """A `clear` is being sent: note how far each sentence played, and rewind every unheard
        sentence to there so a resume sends the rest again (under a fresh mark)."""
        now = time.monotonic() if now is None else now
        positions = self._positions(now)
        for sentence in self._sentences:
            if sentence.heard:
                continue
            heard = max(positions.get(id(sentence), 0), sentence.heard_bytes)
            if sentence.complete and sentence.audio and heard >= len(sentence.audio):
                sentence.heard = True  # played out; its echo was simply still in flight
                self._by_mark.pop(sentence.mark, None)
                continue
            sentence.heard_bytes = heard - heard % FRAME_BYTES  # resume on a frame boundary
            sentence.sent_bytes = sentence.heard_bytes
            if sentence.mark_sent or sentence.mark in self._by_mark:
                self._by_mark.pop(sentence.mark, None)
                if sentence.mark_sent:
                    self._cleared.add(sentence.mark)
                sentence.mark = self._new_mark()
                sentence.mark_sent = False
                self._by_mark[sentence.mark] = sentence
        self._plays.clear()
        self._buffer_end = now
        self._cleared.update(self._position_marks)  # echoed at once after the clear: they mean nothing
        self._position_marks.clear()

    def unheard(self) -> list[SpokenSentence]:
        return [s for s in self._sentences if not s.heard]

    def _positions(self, now: float) -> dict[int, int]:
        """Bytes of each sentence played by `now`, from the modelled timeline."""
        played: dict[int, int] = {}
        for play in self._plays:
            if play.start_at >= now:
                break
            done = min(play.size, int((now - play.start_at) * _BYTES_PER_S + 1e-6))
            played[id(play.sentence)] = max(played.get(id(play.sentence), 0), play.offset + done)
        for sentence in self._sentences:  # sentences sent before the timeline existed (tests, old callers)
            if id(sentence) not in played and not sentence.heard and not sentence.audio \
                    and sentence.audio_ms > 0:
                start = max(filter(None, (self._last_heard_at, sentence.first_sent_at)), default=now)
                ms = max(0.0, (now - start) * 1000)
                played[id(sentence)] = int(min(ms, sentence.audio_ms) * BYTES_PER_MS)
                break
        return played

    # --- interruptions for good -------------------------------------------------------------------

    def interrupt(self, now: float | None = None) -> tuple[str, str]:
        """The caller barged in and a `clear` is being sent: return (spoken, heard) text of the
        sentences since the last interruption, and forget them."""
        self.pause(now)
        return self.give_up()

    def give_up(self) -> tuple[str, str]:
        """After `pause`: the reply is abandoned. (spoken, heard) text, and the sentences forgotten."""
        heard_parts: list[str] = []
        for sentence in self._sentences:
            if sentence.heard:
                heard_parts.append(sentence.text)
                continue
            total = len(sentence.audio) if sentence.audio else sentence.audio_ms * BYTES_PER_MS
            if sentence.heard_bytes > 0 and total > 0 and (sentence.complete or not sentence.audio):
                words = sentence.text.split()
                share = min(1.0, sentence.heard_bytes / total)
                heard_parts.append(" ".join(words[: int(len(words) * share)]))
            break  # later sentences were never reached
        spoken = " ".join(s.text for s in self._sentences)
        for mark, sentence in self._by_mark.items():
            if sentence.mark_sent:
                self._cleared.add(mark)
        self._by_mark.clear()
        self._sentences.clear()
        self._plays.clear()
        self._cleared.update(self._position_marks)
        self._position_marks.clear()
        return spoken, " ".join(p for p in heard_parts if p)

    def drop(self, sentence: SpokenSentence) -> None:
        """A sentence that produced no audio: nothing to play or wait for."""
        self._by_mark.pop(sentence.mark, None)
        sentence.heard = True

    def unplayed_ms(self) -> float:
        return sum(s.audio_ms for s in self._sentences if not s.heard)

    def forget_heard(self) -> None:
        """A reply finished playing in full; start the next reply's accounting afresh."""
        self._sentences = [s for s in self._sentences if not s.heard]

    def _new_mark(self, prefix: str = "s") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"
