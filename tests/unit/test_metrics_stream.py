"""Locally, the Lambdas' EMF metric lines (Powertools' ColdStart among them) go to their own file,
never among the conversation on the console."""

from __future__ import annotations

import contextlib
import io
import json

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from local.metrics_stream import MetricsSplitter


def test_emf_lines_go_to_the_metrics_stream_and_the_rest_to_the_console() -> None:
    console, metrics = io.StringIO(), io.StringIO()
    splitter = MetricsSplitter(console, metrics)
    with contextlib.redirect_stdout(splitter):
        print("[  4.0s]             agent: Thanks for calling.")
        with single_metric(name="ColdStart", unit=MetricUnit.Count, value=1, namespace="VoiceAgent"):
            pass
        print("caller says: ", end="")
        print("hello")
    assert console.getvalue() == "[  4.0s]             agent: Thanks for calling.\ncaller says: hello\n"
    emf = json.loads(metrics.getvalue())
    assert emf["ColdStart"] == [1.0] and "_aws" in emf
