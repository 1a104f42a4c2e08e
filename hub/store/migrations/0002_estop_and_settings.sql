-- Emergency stops, their acknowledgements, and small hub settings (fleet switch revision).
CREATE TABLE estops (
    stop_id          TEXT PRIMARY KEY,
    scope            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    operator         TEXT NOT NULL,
    engaged_unix     DOUBLE PRECISION NOT NULL,
    released_unix    DOUBLE PRECISION,
    release_reason   TEXT NOT NULL,
    release_operator TEXT NOT NULL
);
CREATE INDEX estops_active ON estops (released_unix);

CREATE TABLE estop_acks (
    stop_id      TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    acked_unix   DOUBLE PRECISION NOT NULL,
    latency_s    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (stop_id, node_id)
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
