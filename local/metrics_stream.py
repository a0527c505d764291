"""Metrics to their own stream when running locally.

In AWS a Lambda's stdout is its CloudWatch log stream, and Powertools writes CloudWatch EMF metric
lines (e.g. `ColdStart`) there on purpose. In the one-process local server that stdout is the console a
person reads, so EMF lines are split off into a file of their own (`.data/metrics.emf.jsonl`); every
other line goes through untouched. Powertools' `single_metric` (the cold-start metric) prints even with
`POWERTOOLS_METRICS_DISABLED`, so switching metrics off is not enough.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO

EMF_PREFIX = '{"_aws"'


class MetricsSplitter:
    """A stdout stand-in: lines that are EMF documents go to `metrics`, everything else to `console`."""

    def __init__(self, console: TextIO, metrics: TextIO) -> None:
        self.console = console
        self.metrics = metrics
        self._pending = ""
        self._lock = threading.Lock()  # Lambda handlers print from worker threads

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                target = self.metrics if line.lstrip().startswith(EMF_PREFIX) else self.console
                target.write(line + "\n")
            if self._pending and not EMF_PREFIX.startswith(self._pending.lstrip()[: len(EMF_PREFIX)]):
                self.console.write(self._pending)  # a prompt without a newline is not held back
                self._pending = ""
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.console.flush()
            self.metrics.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    @property
    def encoding(self) -> str:
        return self.console.encoding

    def fileno(self) -> int:
        return self.console.fileno()


def split_metrics_from_console(folder: Path) -> Path:
    """Route EMF lines printed to stdout into `folder/metrics.emf.jsonl` for the rest of the process."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.emf.jsonl"
    if not isinstance(sys.stdout, MetricsSplitter):
        sys.stdout = MetricsSplitter(sys.stdout, path.open("a", encoding="utf-8", buffering=1))
    return path
