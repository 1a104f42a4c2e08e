"""The tamper-evident audit log: hash-chained events in JSON-line files or PostgreSQL.

edgecommon/audit_record.py (the record, outcomes, actions and export formats every reader
shares) <- event.py (what writers hand in, validation) <- chain.py (pure sealing and
verification) <- backend.py (shared parts) <- file_log.py, pg_log.py (the two backends,
same behaviour) <- emitter.py (PostgreSQL first, the file log as fallback).
See docs/audit.md.
"""
