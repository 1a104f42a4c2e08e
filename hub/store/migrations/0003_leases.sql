-- Leader leases per group. Expiry is wall-clock unix time so that a hub restart
-- neither extends nor cuts short a lease; epochs only grow.
CREATE TABLE leases (
    group_name    TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    expires_unix  DOUBLE PRECISION NOT NULL,
    paused        INTEGER NOT NULL
);
