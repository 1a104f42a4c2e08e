"""The gRPC boundary: domain errors to status codes on the server, and back on clients.

Servers wrap handlers with `handle_errors`; clients call `raise_from_rpc`. Nothing else
looks at status codes.
"""

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from edgecommon import errors

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

STATUS_OF: dict[type[errors.EdgeError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unreachable: grpc.StatusCode.UNAVAILABLE,
}
ERROR_OF: dict[grpc.StatusCode, type[errors.EdgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.Conflict,
    grpc.StatusCode.ALREADY_EXISTS: errors.Conflict,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.Overloaded,
    grpc.StatusCode.UNAVAILABLE: errors.Unreachable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unreachable,
}


def status_of(exc: errors.EdgeError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return grpc.StatusCode.FAILED_PRECONDITION


def handle_errors(handler: F) -> F:
    """Answer EdgeErrors with their status and message; anything else is INTERNAL and logged."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except errors.EdgeError as exc:
            await context.abort(status_of(exc), str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("internal error in %s", handler.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")

    return wrapper  # type: ignore[return-value]


def handle_stream_errors(handler: F) -> F:
    """`handle_errors` for server-streaming handlers (async generators)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in handler(self, request, context):
                yield item
        except errors.EdgeError as exc:
            await context.abort(status_of(exc), str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("internal error in %s", handler.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")

    return wrapper  # type: ignore[return-value]


def raise_from_rpc(err: grpc.aio.AioRpcError, target: str) -> NoReturn:
    """Re-raise a failed call as the matching EdgeError with a message fit for an operator."""
    code = err.code()
    cls = ERROR_OF.get(code, errors.EdgeError)
    details = err.details() or code.name
    if code is grpc.StatusCode.UNAVAILABLE:
        details = f"{target} is unreachable ({details})"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"{target} did not answer in time"
    raise cls(details) from None
