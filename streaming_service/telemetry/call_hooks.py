"""What engines may report about the call they serve, without knowing about metrics or tracing.

The call session binds its telemetry here when it starts; every task of the call copies the context,
so a fallback wrapper deep in an engine reports a vendor failure to the right call. Outside a call
(unit tests, benchmarks) the hooks are no-ops.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol


class CallHooks(Protocol):
    def vendor_error(self, vendor: str, exc: BaseException) -> None: ...

    def offline_fallback(self, component: str) -> None: ...

    def span(self, name: str, **attributes: str | int | float | bool) -> AbstractContextManager[Any]: ...


class _NoHooks:
    def vendor_error(self, vendor: str, exc: BaseException) -> None:
        return None

    def offline_fallback(self, component: str) -> None:
        return None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: str | int | float | bool) -> Iterator[None]:
        yield None


NO_HOOKS: CallHooks = _NoHooks()
_current: contextvars.ContextVar[CallHooks] = contextvars.ContextVar("call_hooks", default=NO_HOOKS)


def bind_call_hooks(hooks: CallHooks) -> None:
    _current.set(hooks)


def current_call_hooks() -> CallHooks:
    return _current.get()
