"""The Audit service: query, export, verify and prune the hub's audit log (the PostgreSQL
log when one is configured, else the file log)."""

import json
from collections.abc import AsyncIterator

import grpc

from edgecommon.audit_record import AUDIT_PRUNE
from edgecommon.clock import Clock
from edgecommon.errors import InvalidArgument
from edgecommon.identity import Kind
from edgecommon.pb import audit_pb2, audit_pb2_grpc
from edgecommon.rpc import handle_errors, handle_stream_errors
from hub.audit.emitter import AuditEmitter
from hub.audit.event import AuditEvent, AuditFilter, NewEvent
from hub.pki.auth import PeerVerifier
from hub.rbac.gate import REQUEST_ID_HEADER, Gate

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
EXPORT_CHUNK = 500


def event_message(e: AuditEvent) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        seq=e.seq,
        time_unix=e.time,
        operator=e.operator,
        action=e.action,
        target=e.target,
        scope=e.scope,
        reason=e.reason,
        outcome=e.outcome,
        request_id=e.request_id,
        detail=e.detail,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def audit_filter(request: audit_pb2.AuditQueryRequest, limit: int) -> AuditFilter:
    if request.since_unix and request.until_unix and request.since_unix > request.until_unix:
        raise InvalidArgument("--since must be before --until")
    return AuditFilter(
        since=request.since_unix or None,
        until=request.until_unix or None,
        operator=request.operator,
        action=request.action,
        outcome=request.outcome,
        target=request.target,
        after_seq=request.after_seq,
        limit=limit,
    )


# Older than the Unix epoch is older than any event; beyond it a cutoff would overflow.
MAX_PRUNE_AGE_S = 100 * 365 * 86400.0


class AuditService(audit_pb2_grpc.AuditServicer):
    def __init__(
        self, emitter: AuditEmitter, gate: Gate, verifier: PeerVerifier, clock: Clock
    ) -> None:
        self.emitter = emitter
        self.gate = gate
        self.verifier = verifier
        self.clock = clock

    @handle_errors
    async def Query(
        self, request: audit_pb2.AuditQueryRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AuditEventList:
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        log = self.emitter.backend_for_reads
        events = await log.query(audit_filter(request, limit + 1))
        return audit_pb2.AuditEventList(
            events=[event_message(e) for e in events[:limit]],
            backend=log.name,
            more=len(events) > limit,
        )

    @handle_stream_errors
    async def Export(
        self, request: audit_pb2.AuditQueryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.AuditEventList]:
        log = self.emitter.backend_for_reads
        chunk: list[audit_pb2.AuditEvent] = []
        async for event in log.export(audit_filter(request, request.limit)):
            chunk.append(event_message(event))
            if len(chunk) >= EXPORT_CHUNK:
                yield audit_pb2.AuditEventList(events=chunk, backend=log.name)
                chunk = []
        yield audit_pb2.AuditEventList(events=chunk, backend=log.name)

    @handle_errors
    async def Verify(
        self, request: audit_pb2.AuditVerifyRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AuditVerifyReport:
        log = self.emitter.backend_for_reads
        report = await log.verify()
        return audit_pb2.AuditVerifyReport(
            ok=report.ok,
            checked=report.checked,
            first_seq=report.first_seq,
            last_seq=report.last_seq,
            problems=list(report.problems),
            backend=log.name,
        )

    @handle_errors
    async def Prune(
        self, request: audit_pb2.AuditPruneRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AuditPruneReport:
        if not 0 < request.older_than_s <= MAX_PRUNE_AGE_S:
            raise InvalidArgument(
                "--older-than must be a positive age of at most 36500d (100 years), like 90d"
            )
        _, me = self.verifier.require(context, Kind.OPERATOR)
        metadata = dict(context.invocation_metadata() or ())
        days = request.older_than_s / 86400
        event = NewEvent(
            operator=me.name,
            action=AUDIT_PRUNE,
            target="audit-log",
            scope="fleet",
            outcome="success",
            request_id=str(metadata.get(REQUEST_ID_HEADER, "")),
            reason=request.reason,
            detail=f"removed events older than {days:g}d",
        )
        log = self.emitter.backend_for_reads
        report = await log.prune(self.clock.wall() - request.older_than_s, event)
        answer = audit_pb2.AuditPruneReport(
            removed=report.removed, event=event_message(report.event), backend=log.name
        )
        if report.anchor is not None:
            answer.anchor_seq = report.anchor.seq
            answer.anchor_hash = report.anchor.hash
        return answer

    @handle_errors
    async def AuditStatus(
        self, request: audit_pb2.AuditStatusRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AuditStatusReport:
        stats = self.emitter.statistics()
        return audit_pb2.AuditStatusReport(
            primary=str(stats.get("primary") or ""),
            fallback=str(stats.get("fallback") or ""),
            fallbacks=int(stats.get("fallback_events") or 0),
            last_error=str(stats.get("last_error") or ""),
            unrecorded=self.gate.stats.unrecorded,
            detail_json=json.dumps(stats, default=str, sort_keys=True),
        )
