-- Custom roles and role assignments, when RBAC lives in the hub store (no [rbac].dir).
CREATE TABLE rbac_roles (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL,
    permissions   TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_unix  DOUBLE PRECISION NOT NULL
);
CREATE TABLE rbac_assignments (
    operator      TEXT NOT NULL,
    role          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_unix  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (operator, role, scope)
);
-- The HTTP status API's bearer token acts as operator status-api ([http].token_operator):
-- it may read, nothing more. An admin can unassign it.
INSERT INTO rbac_assignments VALUES ('status-api', 'viewer', 'fleet', 'hub', 0);
