"""Where the policy comes from: the hub store (changed through the API) or a directory of
YAML files (changed by editing them; the API refuses edits and says so).

The directory is re-read when a file changes. A bad edit keeps the last good policy in
force and is reported until fixed: a typo must not lock every operator out.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from edgecommon.clock import Clock
from edgecommon.errors import Conflict, EdgeError, NotFound
from edgecommon.permissions import BUILTIN_ROLES, assignment_scope
from hub.rbac import files
from hub.rbac.policy import Assignment, Policy, Role, require_role_name
from hub.store.base import AssignmentRecord, HubStore, RoleRecord

log = logging.getLogger("edge-hub.rbac")
RELOAD_CHECK_S = 1.0

# Called after each directory reload: (succeeded, one-line detail).
ReloadHook = Callable[[bool, str], Awaitable[None]]


@dataclass(frozen=True)
class RbacStatistics:
    source: str  # "store" | "directory"
    directory: str
    roles: int
    assignments: int
    loaded_unix: float
    last_error: str


class RbacSource:
    def __init__(
        self,
        store: HubStore,
        directory: Path | None,
        clock: Clock,
        on_reload: ReloadHook | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.on_reload = on_reload
        self.policy = Policy()
        self.loaded_unix = 0.0
        self.last_error = ""
        self._signature: files.Signature | None = None

    @property
    def managed_in_files(self) -> bool:
        return self.directory is not None

    async def load(self) -> None:
        """The first load: a bad directory stops the hub from starting (ConfigError)."""
        if self.directory is None:
            await self._load_store()
            return
        self._signature = files.signature(self.directory)
        self.policy = files.load_policy(self.directory)
        self.loaded_unix = self.clock.wall()
        log.info("RBAC from %s: %s", self.directory, self._summary())

    async def run(self) -> None:
        """Re-read the directory when it changes, or the store (another writer, such as
        `edgectl operator bootstrap` or a second hub, may have changed it)."""
        while True:
            await asyncio.sleep(RELOAD_CHECK_S)
            if self.directory is None:
                await self.refresh()
            else:
                await self.reload_if_changed()

    async def refresh(self) -> None:
        """Store mode: read roles and assignments again (two small tables)."""
        if self.directory is None:
            await self._load_store()

    async def reload_if_changed(self) -> bool:
        if self.directory is None:
            return False
        current = files.signature(self.directory)
        if current == self._signature:
            return False
        self._signature = current
        try:
            self.policy = files.load_policy(self.directory)
        except EdgeError as exc:
            self.last_error = str(exc)
            log.error("RBAC files rejected, keeping the last good policy: %s", exc)
            await self._hook(False, str(exc))
            return True
        self.last_error = ""
        self.loaded_unix = self.clock.wall()
        log.info("RBAC reloaded from %s: %s", self.directory, self._summary())
        await self._hook(True, self._summary())
        return True

    def statistics(self) -> RbacStatistics:
        return RbacStatistics(
            source="directory" if self.directory else "store",
            directory=str(self.directory or ""),
            roles=len(self.policy.roles),
            assignments=len(self.policy.assignments),
            loaded_unix=self.loaded_unix,
            last_error=self.last_error,
        )

    async def create_role(self, role: Role, by: str) -> None:
        self._refuse_in_files()
        if role.name in self.policy.roles:
            raise Conflict(f"role {role.name} already exists; delete it first to redefine it")
        record = RoleRecord(
            role.name, role.description, tuple(sorted(role.permissions)), by, self.clock.wall()
        )
        await self.store.put_role(record)
        await self._load_store()

    async def delete_role(self, name: str, *, force: bool) -> int:
        self._refuse_in_files()
        require_role_name(name)
        if name in BUILTIN_ROLES:
            raise Conflict(f"role {name} is built in and cannot be deleted")
        if name not in self.policy.roles:
            raise NotFound(f"no role {name!r}; 'edgectl rbac role list' shows the roles")
        holders = [a for a in self.policy.assignments if a.role == name]
        if holders and not force:
            raise Conflict(
                f"role {name} is assigned {len(holders)} time(s) ({holders[0]}); unassign it "
                "first or pass --force to remove those assignments too"
            )
        removed = await self.store.delete_role(name, with_assignments=force)
        await self._load_store()
        return removed

    async def assign(self, assignment: Assignment, by: str) -> bool:
        self._refuse_in_files()
        record = AssignmentRecord(
            assignment.operator, assignment.role, str(assignment.scope), by, self.clock.wall()
        )
        added = await self.store.add_assignment(record)
        await self._load_store()
        return added

    async def unassign(self, assignment: Assignment) -> None:
        self._refuse_in_files()
        removed = await self.store.remove_assignment(
            assignment.operator, assignment.role, str(assignment.scope)
        )
        if not removed:
            raise NotFound(f"{assignment} is not assigned; 'edgectl rbac role list' shows them")
        await self._load_store()

    def _refuse_in_files(self) -> None:
        if self.directory is not None:
            raise Conflict(
                f"RBAC is managed in files under {self.directory} (AUTONOMY_RBAC_DIR): edit them "
                "there; the hub reloads them on change"
            )

    async def _load_store(self) -> None:
        roles = [
            Role(r.name, frozenset(r.permissions), r.description)
            for r in await self.store.list_roles()
        ]
        known = {r.name for r in roles} | set(BUILTIN_ROLES)
        assignments = []
        for a in await self.store.list_assignments():
            if a.role in known:
                assignments.append(Assignment(a.operator, a.role, assignment_scope(a.scope)))
        self.policy = Policy.build(roles, assignments)
        self.loaded_unix = self.clock.wall()

    async def _hook(self, ok: bool, detail: str) -> None:
        if self.on_reload is not None:
            await self.on_reload(ok, detail)

    def _summary(self) -> str:
        return f"{len(self.policy.roles)} roles, {len(self.policy.assignments)} assignments"
