"""The gate every local RPC passes: caller (from the relay) -> permission (LOCAL_RPCS) ->
decision (agent/local_auth.check) -> the handler, or PERMISSION_DENIED naming the caller,
the permission and the groups that grant it.

It also turns [local] config into an AccessPolicy, resolving group names once at start
(a group created later takes a restart to count). A configured group that does not exist
grants nothing and is said once in the log, not refused: the defaults name the groups
systemd/sysusers.d creates, which a development machine does not have.
"""

import grp
import inspect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from agent.config import LocalSection
from agent.local.auth import (
    LOCAL_RPCS,
    AccessPolicy,
    LocalCaller,
    Permission,
    RoleGroups,
    check,
)
from agent.local.relay import CallerRegistry, user_name
from edgecommon.errors import PermissionDenied

log = logging.getLogger("edge-agent.local")
DENIAL_LOG_INTERVAL_S = 60.0


def _resolve(names: list[str], key: str, problems: list[str]) -> RoleGroups:
    labels, gids = [], set()
    for name in names:
        if name.isdigit():
            labels.append(name)
            gids.add(int(name))
            continue
        try:
            gids.add(grp.getgrnam(name).gr_gid)
            labels.append(name)
        except KeyError:
            labels.append(f"{name} (no such group on this host)")
            problems.append(f"{key}: group {name!r} does not exist on this host; it grants nothing")
    return RoleGroups(tuple(labels), frozenset(gids))


def resolve_policy(
    section: LocalSection, agent_uid: int | None = None
) -> tuple[AccessPolicy, list[str]]:
    """The policy for this host, and what in the config grants nothing here."""
    uid = os.geteuid() if agent_uid is None else agent_uid
    problems: list[str] = []
    policy = AccessPolicy(
        agent_uid=uid,
        agent_user=user_name(uid),
        operators=_resolve(section.operator_groups, "[local].operator_groups", problems),
        workloads=_resolve(section.workload_groups, "[local].workload_groups", problems),
        journal_writers=_resolve(
            section.journal_append_groups, "[local].journal_append_groups", problems
        ),
    )
    return policy, problems


def caller_of(callers: CallerRegistry, context: grpc.aio.ServicerContext) -> LocalCaller:
    caller = callers.of(context.peer())
    if caller is None:
        raise PermissionDenied(
            f"unidentified local caller (peer {context.peer()!r}): connect through the agent's "
            "socket ([agent].socket), not its private one"
        )
    return caller


@dataclass
class GateCounts:
    """Counted as calls pass, since the agent started (statistics() is the snapshot)."""

    allowed: int = 0
    denied: int = 0


@dataclass(frozen=True)
class LocalGateStatistics:
    allowed: int  # local calls let through
    denied: int  # refused: unidentified caller, unmapped RPC, or the caller's role
    quiet_callers: int  # (caller, RPC) pairs whose denials are rate-limited in the log now


class LocalGate(grpc.aio.ServerInterceptor):
    """Puts every local RPC through `check`; an RPC missing from LOCAL_RPCS is refused."""

    def __init__(
        self,
        callers: CallerRegistry,
        policy: AccessPolicy,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.callers = callers
        self.policy = policy
        self.monotonic = monotonic
        self.stats = GateCounts()
        self._logged: dict[tuple[int, str], float] = {}

    def statistics(self) -> LocalGateStatistics:
        return LocalGateStatistics(self.stats.allowed, self.stats.denied, len(self._logged))

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        permission = LOCAL_RPCS.get(method)
        admit = self._admitter(method, permission)
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, _unary),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, _streaming),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, _unary),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, _streaming),
        )
        for behavior, make, wrap in kinds:
            if behavior is not None:
                return make(
                    wrap(admit, behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return None  # a handler of no known kind is never served ungated (UNIMPLEMENTED)

    def _admitter(
        self, method: str, permission: Permission | None
    ) -> Callable[[grpc.aio.ServicerContext], Any]:
        async def admit(context: grpc.aio.ServicerContext) -> None:
            try:
                caller = caller_of(self.callers, context)
            except PermissionDenied as exc:
                self._denied(-1, method, str(exc))
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            if permission is None:
                detail = f"{method} has no local permission mapping; refusing it"
                self._denied(caller.uid, method, detail)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, detail)
            decision = check(caller, permission, self.policy)
            if not decision.allowed:
                self._denied(caller.uid, method, decision.detail)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.detail)
            self.stats.allowed += 1

        return admit

    def _denied(self, uid: int, method: str, detail: str) -> None:
        """Count every denial; log one line per caller and RPC a minute at most (a workload
        retrying in a loop must not flood the journal)."""
        self.stats.denied += 1
        key, now = (uid, method), self.monotonic()
        if now - self._logged.get(key, -DENIAL_LOG_INTERVAL_S) >= DENIAL_LOG_INTERVAL_S:
            self._logged[key] = now
            log.warning("local call refused: %s: %s", method.rsplit("/", 1)[-1], detail)
            if len(self._logged) > 1024:  # forget the oldest callers: the map stays small
                for old in sorted(self._logged, key=self._logged.__getitem__)[:512]:
                    del self._logged[old]


def _unary(admit: Callable[..., Any], behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await admit(context)
        return await behavior(request, context)

    return unary


def _streaming(admit: Callable[..., Any], behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming handler behind the gate. Servicers either yield responses (an async
    generator) or write them (a coroutine, like JournalLocal.AppendStream): both are
    answered here by writing, so the wrapper is a coroutine either way."""

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await admit(context)
        result = behavior(request, context)
        if not inspect.isasyncgen(result):
            return await result
        try:
            async for item in result:
                await context.write(item)
        finally:
            await result.aclose()  # now, not whenever it is collected
        return None

    return streaming
