-- Certificate lifecycle: which CA issued each certificate, revocations, renewal errors.
ALTER TABLE certificates ADD COLUMN ca_fingerprint TEXT NOT NULL DEFAULT '';

CREATE TABLE revocations (
    serial        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    reason        TEXT NOT NULL,
    revoked_by    TEXT NOT NULL,
    revoked_unix  DOUBLE PRECISION NOT NULL
);

CREATE TABLE renewal_errors (
    subject_id    TEXT PRIMARY KEY,
    error         TEXT NOT NULL,
    at_unix       DOUBLE PRECISION NOT NULL
);
