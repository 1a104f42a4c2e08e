"""The tamper-evident audit log: hash-chained events in JSON-line files or PostgreSQL.

event.py (data and validation) <- chain.py (pure sealing and verification) <- export.py
(pure formats) <- backend.py (shared parts) <- file_log.py, pg_log.py (the two backends,
same behaviour) <- emitter.py (PostgreSQL first, the file log as fallback).
See docs/audit.md.
"""

from hub.audit.backend import AuditLog, PruneReport
from hub.audit.chain import Anchor, Head, VerifyReport, chain_hash, verify_chain
from hub.audit.emitter import AuditEmitter, EmitResult
from hub.audit.event import OUTCOMES, AuditEvent, AuditFilter, AuditUnavailable, NewEvent
from hub.audit.export import csv_header, to_csv_row, to_jsonl_line
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog

__all__ = [
    "OUTCOMES",
    "Anchor",
    "AuditEmitter",
    "AuditEvent",
    "AuditFilter",
    "AuditLog",
    "AuditUnavailable",
    "EmitResult",
    "FileAuditLog",
    "Head",
    "NewEvent",
    "PgAuditLog",
    "PruneReport",
    "VerifyReport",
    "chain_hash",
    "csv_header",
    "to_csv_row",
    "to_jsonl_line",
    "verify_chain",
]
