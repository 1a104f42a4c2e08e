"""The gate every operator request passes: identity -> RBAC decision -> audit event ->
effect -> audit outcome (DESIGN principle 4), in one place for gRPC and HTTP alike.

Identity comes from the TLS session only. `AUTONOMY_OPERATOR`, when the client sends it,
must match that identity. With enforcement off (AUTONOMY_RBAC_ENFORCEMENT=0, break-glass)
every request is still decided, allowed, logged loudly and audited as `bypassed`
(INV-RBAC-01). Actions are audited before their effect; an action whose event cannot be
written anywhere is refused, except engaging an emergency stop, which always proceeds —
when the audit backend fails, never when the request holds what the audit log cannot
record (that is refused as INVALID_ARGUMENT, and the request boundary refuses it first).

Callers without a valid credential (no certificate, an expired, revoked or untrusted one,
a join token the hub does not know) are denied through hub/audit/denials.py: one event per source
and reason per interval, with a count, so they cannot fill the audit log. Authenticated
callers keep one event per denial.
"""

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import grpc

from edgecommon.clock import Clock, stamp
from edgecommon.errors import (
    EdgeError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unreachable,
)
from edgecommon.identity import Kind
from edgecommon.rpc import status_of
from edgecommon.scope import ScopeKind, parse_scope
from edgecommon.tokens import parse_token
from hub.audit.denials import Denial, DenialAggregator, DenialStatistics
from hub.audit.emitter import AuditEmitter
from hub.audit.event import NewEvent
from hub.fleet.registry import Registry
from hub.pki.auth import PeerVerifier
from hub.rbac.policy import Target, check
from hub.rbac.rpc_permissions import (
    NODE_METHODS,
    OPERATOR_RULES,
    PUBLIC_SERVICES,
    SECURITY_EVENTS,
    Rule,
    SecurityEvent,
)
from hub.rbac.source import RbacSource

log = logging.getLogger("edge-hub.gate")
OPERATOR_HEADER = "autonomy-operator"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
NEVER_REFUSED = "estop.engage"


@dataclass(frozen=True)
class GateCall:
    """One request as the gate sees it."""

    operator: str
    permission: str | None
    target: str  # scope text: fleet | group:G | node:N
    action: str
    label: str = ""
    reason: str = ""
    mutates: bool = False
    request_id: str = ""
    claimed: str = ""  # AUTONOMY_OPERATOR as sent by the client, if any


@dataclass
class GateCounts:
    """Counted as requests pass, since the hub started (statistics() is the snapshot)."""

    enforcing: bool
    allowed: int = 0
    denied: int = 0
    bypassed: int = 0
    unrecorded: int = 0
    recent_denials: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateStatistics:
    enforcing: bool  # RBAC enforced (false only with AUTONOMY_RBAC_ENFORCEMENT=0)
    allowed: int
    denied: int  # authenticated callers denied, and callers without a valid credential
    bypassed: int  # let through unchecked with enforcement off
    unrecorded: int  # actions that proceeded without an audit event (emergency stops only)
    unauthenticated: DenialStatistics


class Gate:
    def __init__(
        self,
        rbac: RbacSource,
        registry: Registry,
        audit: AuditEmitter,
        rng: random.Random,
        clock: Clock,
        *,
        enforce: bool,
        denial_interval_s: float = 60.0,
    ) -> None:
        self.rbac = rbac
        self.registry = registry
        self.audit = audit
        self.rng = rng
        self.clock = clock
        self.stats = GateCounts(enforcing=enforce)
        self.anonymous = DenialAggregator(denial_interval_s)

    @property
    def enforcing(self) -> bool:
        return self.stats.enforcing

    def statistics(self) -> GateStatistics:
        c = self.stats
        return GateStatistics(
            enforcing=c.enforcing,
            allowed=c.allowed,
            denied=c.denied,
            bypassed=c.bypassed,
            unrecorded=c.unrecorded,
            unauthenticated=self.anonymous.statistics(),
        )

    def request_id(self, presented: str) -> str:
        if presented and _REQUEST_ID_RE.fullmatch(presented):
            return presented
        return f"{self.rng.getrandbits(64):016x}"

    def target_of(self, text: str) -> Target:
        scope = parse_scope(text)
        if scope.kind is ScopeKind.NODE:
            view = self.registry.view(scope.name)
            return Target(scope, view.record.group if view is not None else "")
        return Target(scope)

    async def admit(self, call: GateCall) -> None:
        """Raise PermissionDenied (audited) or Unreachable (audit down), else admit."""
        if call.claimed and call.claimed != call.operator:
            await self._deny(
                call,
                f"AUTONOMY_OPERATOR={call.claimed} does not match the authenticated operator "
                f"{call.operator}; unset it or use {call.claimed}'s credential",
            )
        if call.permission is None:
            return
        target = self.target_of(call.target)
        decision = check(self.rbac.policy, call.operator, call.permission, target)
        if not decision.allowed and not self.rbac.managed_in_files:
            # The store may have changed since the last refresh (a bootstrap, another hub).
            await self.rbac.refresh()
            decision = check(self.rbac.policy, call.operator, call.permission, target)
        if not self.enforcing:
            self.stats.bypassed += 1
            verdict = "allowed" if decision.allowed else f"would be denied: {decision.reason}"
            log.warning(
                "RBAC ENFORCEMENT IS OFF (AUTONOMY_RBAC_ENFORCEMENT=0): %s %s on %s let "
                "through unchecked (%s)",
                call.operator,
                call.permission,
                call.target,
                verdict,
            )
            await self.record_before(call, "bypassed", verdict)
            return
        if not decision.allowed:
            await self._deny(call, decision.reason)
        self.stats.allowed += 1
        if call.mutates:
            await self.record_before(call, "attempt", decision.reason)

    async def finish(self, call: GateCall, outcome: str, detail: str = "") -> None:
        """Record the outcome of an admitted action (reads are not recorded)."""
        if call.mutates:
            await self._record(call, outcome, detail)

    async def audit_denied(self, call: GateCall, why: str) -> None:
        """A request refused before any decision (a valid credential of the wrong kind)."""
        self._note_denial(call, why)
        await self._record(call, "denied", why)

    async def unauthenticated(self, source: str, claimed: str, action: str, why: EdgeError) -> None:
        """A request refused for want of a valid credential: aggregated (hub/audit/denials.py),
        per source and kind of error."""
        self.stats.denied += 1
        now, wall = self.clock.monotonic(), self.clock.wall()
        kind = type(why).__name__
        for denial in self.anonymous.note(source, kind, str(why), action, claimed, now, wall):
            await self._record_denial(denial)

    async def run(self, tick_s: float = 1.0) -> None:
        """Record the counts of aggregation windows as they end."""
        while True:
            await asyncio.sleep(tick_s)
            for denial in self.anonymous.due(self.clock.monotonic()):
                await self._record_denial(denial)

    async def flush(self) -> None:
        """Record every count not yet recorded (at shutdown)."""
        for denial in self.anonymous.drain():
            await self._record_denial(denial)

    async def _record_denial(self, denial: Denial) -> None:
        if denial.count == 1:
            detail = denial.reason
        else:
            detail = (
                f"{denial.count} more denials of the same kind as the one recorded at "
                f"{stamp(denial.first_unix)}, until {stamp(denial.last_unix)}: {denial.reason}"
            )
        log.warning("denied without a valid credential from %s: %s", denial.source, detail)
        call = GateCall(
            operator=denial.claimed or "anonymous",
            permission=None,
            target="fleet",
            action=denial.action,
            label=f"source:{denial.source}",
            request_id="",
        )
        self.stats.recent_denials = [
            *self.stats.recent_denials[-19:],
            f"{call.operator} {call.action} from {denial.source}: {detail}",
        ]
        await self._record(call, "denied", detail)

    async def _record(self, call: GateCall, outcome: str, detail: str) -> None:
        """Write one event; if no backend takes it, say so loudly and go on."""
        try:
            await self.audit.emit([self._event(call, outcome, detail)])
        except EdgeError as exc:
            self._unrecorded(call, outcome, detail, exc)

    async def _deny(self, call: GateCall, why: str) -> None:
        await self.audit_denied(call, why)
        raise PermissionDenied(f"{call.operator} may not {call.permission} on {call.target}: {why}")

    async def record_before(self, call: GateCall, outcome: str, detail: str) -> None:
        try:
            await self.audit.emit([self._event(call, outcome, detail)])
        except InvalidArgument as exc:
            # Input the audit log cannot hold is refused, an emergency stop included: an
            # effect with no event would be a stop nobody can account for.
            raise InvalidArgument(f"refusing {call.permission or call.action}: {exc}") from None
        except EdgeError as exc:
            if call.permission == NEVER_REFUSED:
                self._unrecorded(call, outcome, detail, exc)
                return
            raise Unreachable(
                f"refusing {call.permission}: the audit log cannot record it ({exc}). Fix the "
                "audit backend; an emergency stop is never refused"
            ) from None

    def _note_denial(self, call: GateCall, why: str) -> None:
        self.stats.denied += 1
        line = f"{call.operator} {call.permission or call.action} on {call.target}: {why}"
        log.warning("denied: %s", line)
        self.stats.recent_denials = [*self.stats.recent_denials[-19:], line]

    def _unrecorded(self, call: GateCall, outcome: str, detail: str, exc: Exception) -> None:
        self.stats.unrecorded += 1
        log.critical(
            "AUDIT EVENT NOT RECORDED (%s): %s",
            exc,
            json.dumps({**asdict(call), "outcome": outcome, "detail": detail}, sort_keys=True),
        )

    def _event(self, call: GateCall, outcome: str, detail: str) -> NewEvent:
        return NewEvent(
            operator=call.operator,
            action=call.action,
            target=call.label or call.target,
            scope=call.target,
            outcome=outcome,
            request_id=call.request_id,
            reason=call.reason,
            detail=detail,
        )


def _reason_of(request: Any) -> str:
    fields = request.DESCRIPTOR.fields_by_name
    return str(request.reason) if "reason" in fields else ""


class GateInterceptor(grpc.aio.ServerInterceptor):
    """Puts every operator RPC through the gate; node and public RPCs pass untouched."""

    def __init__(
        self,
        gate: Gate,
        verifier: PeerVerifier,
        check_token: Callable[[str], Awaitable[object]],
    ) -> None:
        self.gate = gate
        self.verifier = verifier
        self.check_token = check_token  # raises for a token this hub would not redeem

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is not None and method in SECURITY_EVENTS:
            return grpc.unary_unary_rpc_method_handler(
                self._security_event(SECURITY_EVENTS[method], handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler is None or method in NODE_METHODS or method.split("/")[1] in PUBLIC_SERVICES:
            return handler
        metadata = {k: v for k, v in handler_call_details.invocation_metadata or ()}
        rule = OPERATOR_RULES.get(method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, rule, handler.unary_unary, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, rule, handler.unary_stream, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return self._refuse_kind(method, handler)

    def _peer_subject(self, context: grpc.aio.ServicerContext) -> str:
        try:
            _, identity = self.verifier.peer_certificate(context)
        except EdgeError:
            return "unknown"
        return f"{identity.kind.value}:{identity.name}"

    def _refuse_kind(self, method: str, handler: Any) -> Any:
        async def refuse(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{method} has no permission mapping"
            )

        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                refuse, handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )

    async def _credential_problem(
        self, event: SecurityEvent, request: Any, context: grpc.aio.ServicerContext
    ) -> EdgeError | None:
        """Why the caller has no valid credential for `event` (its token or certificate)."""
        try:
            if event.subject_from == "token":
                await self.check_token(request.token)
            else:
                self.verifier.peer_certificate(context)
        except EdgeError as exc:
            return exc
        return None

    def _security_event(self, event: SecurityEvent, behavior: Any) -> Any:
        async def audited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if event.subject_from == "token":
                subject = _token_subject(request.token)
            else:
                subject = self._peer_subject(context)
            problem = await self._credential_problem(event, request, context)
            if problem is not None:
                claimed = subject if subject != "unknown" else "anonymous"
                await self.gate.unauthenticated(_source(context), claimed, event.action, problem)
                await context.abort(status_of(problem), str(problem))
            call = GateCall(
                operator=subject,
                permission=None,
                target=subject,
                action=event.action,
                mutates=True,
                request_id=self.gate.request_id(""),
            )
            try:
                await self.gate.record_before(call, "attempt", "")
            except EdgeError as exc:
                await context.abort(status_of(exc), str(exc))
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                await self.gate.finish(call, "failure", _failure(exc, context))
                raise
            await self.gate.finish(call, "success")
            return response

        return audited

    def _unary(self, method: str, rule: Rule | None, behavior: Any, metadata: dict) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = await self._admit(method, rule, request, context, metadata)
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                await self.gate.finish(call, "failure", _failure(exc, context))
                raise
            await self.gate.finish(call, "success")
            return response

        return unary

    def _streaming(self, method: str, rule: Rule | None, behavior: Any, metadata: dict) -> Any:
        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = await self._admit(method, rule, request, context, metadata)
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                await self.gate.finish(call, "failure", _failure(exc, context))
                raise
            await self.gate.finish(call, "success")

        return streaming

    async def _admit(
        self,
        method: str,
        rule: Rule | None,
        request: Any,
        context: grpc.aio.ServicerContext,
        metadata: dict,
    ) -> GateCall:
        action = method.rsplit("/", 1)[-1]
        call = GateCall(
            operator="unknown",
            permission=None,
            target="fleet",
            action=action,
            request_id=self.gate.request_id(str(metadata.get(REQUEST_ID_HEADER, ""))),
        )
        try:
            try:
                _, identity = self.verifier.require(context, Kind.OPERATOR)
            except Unauthenticated as exc:
                who = _claimed(context)
                await self.gate.unauthenticated(_source(context), who, action, exc)
                raise
            except PermissionDenied as exc:
                who = _claimed(context)
                await self.gate.audit_denied(replace(call, operator=who), str(exc))
                raise
            if rule is None:
                call = replace(call, operator=identity.name)
                await self.gate.audit_denied(call, "no permission is mapped to this RPC")
                raise PermissionDenied(f"{method} has no permission mapping; refusing it")
            permission = rule.permission_for(request)
            call = GateCall(
                operator=identity.name,
                permission=permission,
                target=_target(rule, request),
                action=permission or action,
                label=rule.label(request) if rule.label else "",
                reason=_reason_of(request),
                mutates=rule.mutates,
                request_id=call.request_id,
                claimed=str(metadata.get(OPERATOR_HEADER, "")),
            )
            await self.gate.admit(call)
            return call
        except EdgeError as exc:
            await context.abort(status_of(exc), str(exc))
            raise  # unreachable: abort raises


def _source(context: grpc.aio.ServicerContext) -> str:
    """The caller's address without its port (each connection has a new port)."""
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return host.strip("[]") or rest
    return peer


def _claimed(context: grpc.aio.ServicerContext) -> str:
    """Who the caller's certificate names (it may be expired, revoked or untrusted)."""
    peer = context.auth_context().get("x509_subject_alternative_name")
    return peer[0].decode(errors="replace") if peer else "anonymous"


def _token_subject(token: str) -> str:
    """Who a join token says it enrolls (node:N or operator:N), for the audit event only."""
    try:
        subject = parse_token(token).subject
    except EdgeError:
        return "unknown"
    return f"{subject.kind.value}:{subject.name}"


def _target(rule: Rule, request: Any) -> str:
    text = rule.target(request)
    scope = parse_scope(text)  # InvalidArgument names a bad scope before any decision
    return str(scope)


def _failure(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        return f"{name}: {context.details() or ''}"
    if isinstance(exc, EdgeError):
        return str(exc)
    return type(exc).__name__
