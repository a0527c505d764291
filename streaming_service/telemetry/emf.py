"""CloudWatch Embedded Metric Format: one JSON document per line.

Documents are built by Powertools' metric serializer (it enforces the spec's limits: metric and
dimension counts, names, units) and written to a sink. In ECS the sink is stdout: the awslogs driver
ships each line to CloudWatch Logs, which extracts the metrics. No agent, no API calls, no batching.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

log = logging.getLogger("voice_agent.metrics")

EmfSink = Callable[[str], None]
MetricValue = tuple[str, float, MetricUnit]  # name, value, unit


def stdout_sink(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class EmfWriter:
    def __init__(self, namespace: str, dimensions: Mapping[str, str], sink: EmfSink | None) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        self.sink = sink

    @property
    def enabled(self) -> bool:
        return self.sink is not None

    def emit(self, metrics: Sequence[MetricValue], *, dimensions: Mapping[str, str] | None = None,
             properties: Mapping[str, Any] | None = None) -> None:
        """One document: `metrics` under one dimension set (the writer's plus `dimensions`);
        `properties` are searchable in Logs Insights but are not dimensions (call SIDs go there)."""
        if self.sink is None or not metrics:
            return
        document = EphemeralMetrics(namespace=self.namespace)
        for name, value in {**self.dimensions, **(dimensions or {})}.items():
            document.add_dimension(name=name, value=value)
        for name, number, unit in metrics:
            document.add_metric(name=name, unit=unit, value=number)
        for key, prop in (properties or {}).items():
            document.add_metadata(key=key, value=prop)
        try:
            line = json.dumps(document.serialize_metric_set(), separators=(",", ":"), default=str)
            self.sink(line)
        except Exception as exc:  # a metric is never a reason to disturb a call
            log.warning("metric not emitted", extra={"error": f"{type(exc).__name__}: {exc}"})
