"""One Lambda execution environment: run as a script with `LAMBDA_TASK_ROOT` (the asset folder) and
`_HANDLER` (the template's Handler string), as Lambda's Python runtime does.

Init loads the handler from the asset folder alone (the process is isolated from the repository, see
site/sitecustomize.py), then prints one JSON line: `{"ready": port}` or Lambda's init error
(`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`). Invocations arrive one at a time, like one
warm environment, on the runtime interface emulator's path.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def load_handler(task_root: str, handler: str) -> tuple[Any, dict[str, str] | None]:
    """The callable the Handler string names in the asset, or Lambda's init error for it."""
    sys.path.insert(0, task_root)
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        return None, {"errorType": "Runtime.MalformedHandlerName", "errorMessage": f"Bad handler '{handler}'"}
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # what Lambda reports for any import failure
        return None, {"errorType": "Runtime.ImportModuleError",
                      "errorMessage": f"Unable to import module '{module_name}': {exc}"}
    function = getattr(module, function_name, None)
    if not callable(function):
        return None, {"errorType": "Runtime.HandlerNotFound",
                      "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'"}
    return function, None


class _Context:
    """The context attributes Powertools reads (the runtime's LambdaContext)."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
        self.aws_request_id = request_id
        self.invoked_function_arn = os.environ.get("REHEARSAL_FUNCTION_ARN", name)
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "rehearsal"
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, self._deadline_ms - int(time.time() * 1000))


def serve(function: Any) -> None:
    import time
    import uuid

    timeout_s = int(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "30"))

    class Invocations(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != INVOKE_PATH:
                self.send_error(404)
                return
            event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            # Lambda sets the trace header per invocation; Powertools and the webhook read it here.
            os.environ["_X_AMZN_TRACE_ID"] = self.headers.get("X-Amzn-Trace-Id", "")
            context = _Context(str(uuid.uuid4()), int(time.time() * 1000) + timeout_s * 1000)
            try:
                body = json.dumps(function(event, context)).encode()
                status = 200
            except Exception as exc:
                traceback.print_exc()
                body = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
                status = 502
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Invocations)
    print(json.dumps({"ready": server.server_address[1]}), flush=True)
    server.serve_forever()


def main() -> None:
    function, error = load_handler(os.environ["LAMBDA_TASK_ROOT"], os.environ["_HANDLER"])
    if error is not None:
        print(json.dumps(error), flush=True)
        sys.exit(2)
    serve(function)


if __name__ == "__main__":
    main()
