"""The tamper-evident audit log: hash-chained events in JSON-line files or PostgreSQL.

event.py (data and validation) <- chain.py (pure sealing and verification) <- export.py
(pure formats) <- backend.py (shared parts) <- file_log.py, pg_log.py (the two backends,
same behaviour) <- emitter.py (PostgreSQL first, the file log as fallback).
See docs/audit.md.
"""
