"""Top-N table from a py-spy raw profile (`py-spy record -f raw`): self and inclusive share per function.

    .venv/bin/py-spy record --nonblocking -f raw -o .bench/profile-50.raw --pid <service pid>
    .venv/bin/python -m bench.profile_top .bench/profile-50.raw --top 25 --exclude _find_and_load build_engines
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    """`parse_inbound (shared/twilio_media.py:134)` -> `parse_inbound (shared/twilio_media.py)`."""
    frame = _LINE.sub(")", frame.strip())
    return re.sub(r"\(.*?/site-packages/", "(", frame).replace("(/work/main/", "(")


def top(raw: str, n: int, exclude: tuple[str, ...] = ()) -> str:
    """`exclude`: drop stacks with a frame containing any of these (e.g. start-up imports)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if any(part in frame for frame in frames for part in exclude):
            continue
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    rows = ["| self % | incl. % | function (file) |", "|---:|---:|---|"]
    for name, count in own.most_common(n):
        rows.append(f"| {100 * count / total:.1f} | {100 * inclusive[name] / total:.1f} | `{name}` |")
    rows += ["", f"Inclusive, top {n}:", "", "| incl. % | function (file) |", "|---:|---|"]
    for name, count in inclusive.most_common(n):
        rows.append(f"| {100 * count / total:.1f} | `{name}` |")
    return f"{total} samples\n\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--exclude", nargs="*", default=[], help="drop stacks with a frame containing these")
    args = parser.parse_args()
    print(top(args.raw.read_text(), args.top, tuple(args.exclude)))


if __name__ == "__main__":
    main()
