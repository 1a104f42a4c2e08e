-- The journal's sync set per group: members that hold every committed entry (eligible to
-- take over) and members joining it. Written before the leader is told about a change.
CREATE TABLE replication_sets (
    group_name  TEXT PRIMARY KEY,
    sync_set    TEXT NOT NULL,
    joining     TEXT NOT NULL,
    revision    BIGINT NOT NULL
);
