-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
CREATE TABLE join_tokens (
    token_id      TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_unix  DOUBLE PRECISION NOT NULL,
    expires_unix  DOUBLE PRECISION NOT NULL,
    used_unix     DOUBLE PRECISION
);

CREATE TABLE nodes (
    node_id           TEXT PRIMARY KEY,
    group_name        TEXT NOT NULL,
    labels_json       TEXT NOT NULL,
    agent_version     TEXT NOT NULL,
    hostname          TEXT NOT NULL,
    cert_serial       TEXT NOT NULL,
    cert_expires_unix DOUBLE PRECISION NOT NULL,
    first_seen_unix   DOUBLE PRECISION NOT NULL,
    last_seen_unix    DOUBLE PRECISION NOT NULL,
    state             TEXT NOT NULL,
    state_since_unix  DOUBLE PRECISION NOT NULL,
    state_reason      TEXT NOT NULL
);
CREATE INDEX nodes_by_group ON nodes (group_name);

CREATE TABLE certificates (
    serial         TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    subject_id     TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    not_after_unix DOUBLE PRECISION NOT NULL,
    issued_unix    DOUBLE PRECISION NOT NULL,
    fingerprint    TEXT NOT NULL
);
