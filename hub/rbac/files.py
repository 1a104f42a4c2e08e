"""Declarative RBAC: roles and assignments from YAML files in one directory.

Every `*.yaml` / `*.yml` file in the directory may hold `roles:` and `assignments:`;
together they form the policy. Loading reports every problem at once, each naming its
file and entry, so a bad edit can be fixed in one pass.

    roles:
      - name: auditor
        description: reads the audit log
        permissions: [audit.read, fleet.read]
    assignments:
      - {operator: alice, role: operator, scope: group:site-a}   # scope defaults to fleet
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgecommon.errors import ConfigError, EdgeError
from hub.rbac.policy import Assignment, Policy, Role, new_assignment, new_role

_TOP_KEYS = {"roles", "assignments"}
_ROLE_KEYS = {"name", "description", "permissions"}
_ASSIGNMENT_KEYS = {"operator", "role", "scope"}


@dataclass(frozen=True)
class Signature:
    """What changes when a file is edited: names, sizes and modification times."""

    entries: tuple[tuple[str, int, int], ...]


def policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def signature(directory: Path) -> Signature:
    try:
        files = policy_files(directory)
        return Signature(tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    except OSError:
        return Signature((("<unreadable>", 0, 0),))


def load_policy(directory: Path) -> Policy:
    """The policy the directory describes, or ConfigError listing every problem."""
    if not directory.is_dir():
        raise ConfigError([f"RBAC directory {directory} does not exist or is not a directory"])
    problems: list[str] = []
    roles: dict[str, tuple[Path, Role]] = {}
    raw_assignments: list[tuple[str, dict[str, Any]]] = []
    files = policy_files(directory)
    if not files:
        raise ConfigError([f"RBAC directory {directory} holds no *.yaml files"])
    for path in files:
        document = _read(path, problems)
        for i, entry in enumerate(document.get("roles") or []):
            where = f"{path}: roles[{i}]"
            role = _role(entry, where, problems)
            if role is None:
                continue
            if role.name in roles:
                problems.append(
                    f"{where}: role {role.name} is also defined in {roles[role.name][0]}"
                )
            roles[role.name] = (path, role)
        for i, entry in enumerate(document.get("assignments") or []):
            raw_assignments.append((f"{path}: assignments[{i}]", entry))
    policy = Policy.build((r for _, r in roles.values()), ())
    assignments = [a for w, e in raw_assignments if (a := _assignment(e, w, policy, problems))]
    if problems:
        raise ConfigError(problems)
    return Policy.build(policy.roles.values(), assignments)


def _read(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problems.append(f"{path}:{line} is not valid YAML: {getattr(exc, 'problem', exc)}")
        return {}
    if not isinstance(document, dict):
        problems.append(f"{path}: expected a mapping with roles: and assignments:")
        return {}
    if unknown := set(document) - _TOP_KEYS:
        problems.append(f"{path}: unknown keys {sorted(unknown)}; use roles and assignments")
    for key in _TOP_KEYS:
        if document.get(key) is not None and not isinstance(document[key], list):
            problems.append(f"{path}: {key} must be a list")
            document[key] = []
    return document


def _fields(entry: object, keys: set[str], required: set[str], where: str, problems: list[str]):  # type: ignore[no-untyped-def]
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with {', '.join(sorted(required))}")
        return None
    if unknown := set(entry) - keys:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
        return None
    if missing := required - set(entry):
        problems.append(f"{where}: missing {', '.join(sorted(missing))}")
        return None
    return entry


def _role(entry: object, where: str, problems: list[str]) -> Role | None:
    fields = _fields(entry, _ROLE_KEYS, {"name", "permissions"}, where, problems)
    if fields is None:
        return None
    perms = fields["permissions"]
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        problems.append(f"{where}: permissions must be a list of permission names")
        return None
    try:
        return new_role(str(fields["name"]), perms, str(fields.get("description") or ""))
    except EdgeError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _assignment(
    entry: object, where: str, policy: Policy, problems: list[str]
) -> Assignment | None:
    fields = _fields(entry, _ASSIGNMENT_KEYS, {"operator", "role"}, where, problems)
    if fields is None:
        return None
    try:
        return new_assignment(
            policy, str(fields["operator"]), str(fields["role"]), str(fields.get("scope") or "")
        )
    except EdgeError as exc:
        problems.append(f"{where}: {exc}")
        return None
