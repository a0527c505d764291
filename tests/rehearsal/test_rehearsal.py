"""The short form of `make rehearse`: the dev templates, synthesized and run, take a call that books.

Every hop is the deployed shape's own: the Lambdas from their assets and Handler strings behind the HTTP
API's routes, the task from its definition behind the ALB's rules and health check, secrets from Secrets
Manager's API, Postgres and Redis behind TLS as Aurora and ElastiCache are. `make rehearse ENV=prod` runs
the prod templates the same way (HTTPS listener, wss:// stream, custom domain)."""

from __future__ import annotations

from pathlib import Path

from local.rehearsal.rehearse import rehearse


async def test_dev_templates_take_a_call_that_books(tmp_path: Path) -> None:
    lines: list[str] = []
    report = await rehearse("dev", tmp_path, out=lines.append)
    hops = "\n".join(lines)

    # Twilio's request went to the API's URL, signed for it, and the webhook accepted it.
    assert report.webhook_url.endswith(".execute-api.us-east-1.amazonaws.com/voice")
    assert "POST /voice -> Lambda" in hops and ": 200 in" in hops
    # The migration custom resource ran its own handler against the database.
    migrations = len(list((Path(__file__).parents[2] / "shared/tenancy/migrations").glob("*.sql")))
    assert f"{migrations} migrations applied" in hops
    # The stream went through the ALB's rule to the task, after its health check passed.
    assert "healthy after" in hops and "/twilio-stream -> task" in hops
    # The booking is in Postgres and the transcript is readable through the tenant API (via the ALB).
    assert report.booking is not None and report.booking["status"] == "confirmed"
    assert any(entry.get("role") == "caller" for entry in report.transcript)
    # The task called the tool-proxy Lambda over MCP through the API.
    assert report.mcp_calls >= 1
    # Scale-in protection was held during the call and given back after it.
    assert report.protection_changes == [True, False]
    assert "<Hangup" in report.after_stream_twiml
    # One call, one trace, in X-Ray's propagation format on every hop: the root API Gateway gave /voice is
    # the root of the task's spans and of each /mcp request, and the Lambdas' segments carry it.
    trace = report.call_trace
    assert trace["task_spans"] > 0 and trace["lambda_segments"] > 0
    assert trace["mcp_requests"] >= 1 and trace["mcp_requests_in_trace"] == trace["mcp_requests"]
    assert trace["traces_with_call_spans"] == 1 and len(report.traces) == 1
    assert "task stopped (SIGTERM) with exit code 0" in hops
