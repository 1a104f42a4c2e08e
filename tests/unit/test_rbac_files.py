"""Declarative RBAC files: a good directory loads; every problem is named with its file;
a bad edit keeps the last good policy in force and is reported."""

import asyncio
from pathlib import Path

import pytest

from edgecommon.clock import SystemClock
from edgecommon.errors import ConfigError, Conflict
from edgecommon.scope import Scope, ScopeKind
from hub.rbac.files import load_policy
from hub.rbac.policy import Assignment, Target, check, new_role
from hub.rbac.source import RbacSource
from hub.store.sqlite import SqliteStore

GOOD = """
roles:
  - name: auditor
    description: reads the audit log
    permissions: [audit.read, fleet.read]
assignments:
  - {operator: alice, role: operator, scope: group:site-a}
  - {operator: carol, role: auditor}
"""


def write(directory: Path, text: str, name: str = "rbac.yaml") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_good_directory_loads(tmp_path: Path) -> None:
    write(tmp_path / "rbac", GOOD)
    write(tmp_path / "rbac", "assignments:\n  - {operator: dave, role: admin}\n", "more.yml")
    policy = load_policy(tmp_path / "rbac")
    assert "auditor" in policy.roles
    assert Assignment("alice", "operator", Scope(ScopeKind.GROUP, "site-a")) in policy.assignments
    assert check(policy, "dave", "rbac.admin", Target(Scope(ScopeKind.FLEET))).allowed


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("roles: [", "is not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("people: []", "unknown keys ['people']"),
        ("roles:\n  - {name: x, permissions: [estop.engag]}", "did you mean estop.engage"),
        ("roles:\n  - {name: x}", "missing permissions"),
        ("roles:\n  - {name: admin, permissions: [fleet.read]}", "built in"),
        ("assignments:\n  - {operator: a, role: nobody}", "unknown role 'nobody'"),
        ("assignments:\n  - {operator: a, role: viewer, scope: node:n1}", "per group"),
        ("assignments:\n  - {operator: a, role: viewer, scope: planet}", "unknown scope"),
        ("assignments:\n  - {operator: 'A B', role: viewer}", "not a valid name"),
        ("assignments: {operator: a}", "assignments must be a list"),
    ],
)
def test_bad_file_is_named_with_the_problem(tmp_path: Path, text: str, complaint: str) -> None:
    path = write(tmp_path / "rbac", text)
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "rbac")
    assert str(path) in str(caught.value)
    assert complaint in str(caught.value)


def test_every_problem_at_once_and_duplicate_roles(tmp_path: Path) -> None:
    write(tmp_path / "rbac", "roles:\n  - {name: r, permissions: [fleet.read]}\n", "a.yaml")
    write(
        tmp_path / "rbac",
        "roles:\n  - {name: r, permissions: [fleet.read]}\n"
        "assignments:\n  - {operator: a, role: ghost}\n",
        "b.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_policy(tmp_path / "rbac")
    assert "also defined in" in str(caught.value)
    assert "unknown role 'ghost'" in str(caught.value)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yaml files"):
        load_policy(tmp_path / "empty")


async def test_bad_edit_keeps_last_good_policy_and_reports(tmp_path: Path) -> None:
    directory = tmp_path / "rbac"
    path = write(directory, GOOD)
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    reloads: list[tuple[bool, str]] = []

    async def hook(ok: bool, detail: str) -> None:
        reloads.append((ok, detail))

    try:
        source = RbacSource(store, directory, SystemClock(), hook)
        await source.load()
        good = source.policy
        path.write_text("roles: [")
        assert await source.reload_if_changed()
        assert source.policy is good
        assert "is not valid YAML" in source.statistics().last_error
        assert reloads[-1][0] is False
        path.write_text(GOOD.replace("carol", "erin"))
        await asyncio.sleep(0)
        assert await source.reload_if_changed()
        assert source.statistics().last_error == ""
        assert any(a.operator == "erin" for a in source.policy.assignments)
        assert reloads[-1][0] is True
        assert not await source.reload_if_changed()
        with pytest.raises(Conflict, match="managed in files"):
            await source.assign(Assignment("x", "viewer"), "admin")
    finally:
        await store.close()


async def test_store_backed_changes_persist(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        source = RbacSource(store, None, SystemClock())
        await source.load()
        # The migration lets the HTTP status token read, nothing more.
        assert Assignment("status-api", "viewer") in source.policy.assignments
        await source.create_role(new_role("auditor", ["audit.read"]), "admin")
        assert await source.assign(Assignment("carol", "auditor"), "admin")
        assert not await source.assign(Assignment("carol", "auditor"), "admin")
        with pytest.raises(Conflict, match="assigned 1 time"):
            await source.delete_role("auditor", force=False)
        with pytest.raises(Conflict, match="built in"):
            await source.delete_role("admin", force=True)
        again = RbacSource(store, None, SystemClock())
        await again.load()
        assert Assignment("carol", "auditor") in again.policy.assignments
        assert await source.delete_role("auditor", force=True) == 1
        await again.load()
        assert "auditor" not in again.policy.roles
        assert Assignment("carol", "auditor") not in again.policy.assignments
    finally:
        await store.close()
