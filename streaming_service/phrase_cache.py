"""Audio for fixed phrases (greetings, reprompts, apologies), so the first words of a call never wait
on a vendor. Bounded in memory; a shared Redis tier can sit behind the same two methods."""

from __future__ import annotations

from collections import OrderedDict


class PhraseCache:
    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, engine: str, voice: str | None, text: str) -> bytes | None:
        key = (engine, voice or "", text)
        audio = self._entries.get(key)
        if audio is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return audio

    def put(self, engine: str, voice: str | None, text: str, audio: bytes) -> None:
        self._entries[(engine, voice or "", text)] = audio
        self._entries.move_to_end((engine, voice or "", text))
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
