"""Scopes of an emergency stop: the whole fleet, one group (site), or one node."""

from dataclasses import dataclass
from enum import StrEnum

from edgecommon.errors import InvalidArgument
from edgecommon.identity import name_problem


class ScopeKind(StrEnum):
    FLEET = "fleet"
    GROUP = "group"
    NODE = "node"


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    name: str = ""

    def __str__(self) -> str:
        return "fleet" if self.kind is ScopeKind.FLEET else f"{self.kind.value}:{self.name}"

    def applies_to(self, node_id: str, group: str) -> bool:
        if self.kind is ScopeKind.FLEET:
            return True
        if self.kind is ScopeKind.GROUP:
            return self.name == group
        return self.name == node_id


def parse_scope(text: str) -> Scope:
    """`fleet`, `group:G` or `node:N`; InvalidArgument naming the problem otherwise."""
    text = text.strip()
    if text == "fleet":
        return Scope(ScopeKind.FLEET)
    kind, sep, name = text.partition(":")
    if sep and kind in (ScopeKind.GROUP, ScopeKind.NODE):
        if problem := name_problem(kind, name):
            raise InvalidArgument(f"scope {text!r}: {problem}")
        return Scope(ScopeKind(kind), name)
    raise InvalidArgument(f"unknown scope {text!r}: use fleet, group:G or node:N")
