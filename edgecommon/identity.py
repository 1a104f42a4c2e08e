"""Who a certificate speaks for: a node of a group, an operator, or the hub.

An identity is carried in a certificate as one SPIFFE-style URI SAN and the common
name; `parse_uri` is the only way back from a certificate to an identity.

    spiffe://<trust domain>/node/<group>/<node id>
    spiffe://<trust domain>/operator/<name>
    spiffe://<trust domain>/hub
"""

import re
from dataclasses import dataclass
from enum import StrEnum

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
NAME_RULE = "1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"


class Kind(StrEnum):
    NODE = "node"
    OPERATOR = "operator"
    HUB = "hub"


def name_problem(what: str, value: str) -> str | None:
    """A one-line complaint about `value` as a node, group or operator name, or None."""
    if NAME_RE.fullmatch(value):
        return None
    return f"{what} {value!r} is not a valid name: use {NAME_RULE}"


@dataclass(frozen=True)
class Identity:
    kind: Kind
    name: str
    group: str = ""

    def uri(self, trust_domain: str) -> str:
        if self.kind is Kind.NODE:
            return f"spiffe://{trust_domain}/node/{self.group}/{self.name}"
        if self.kind is Kind.OPERATOR:
            return f"spiffe://{trust_domain}/operator/{self.name}"
        return f"spiffe://{trust_domain}/hub"

    def __str__(self) -> str:
        if self.kind is Kind.NODE:
            return f"node {self.name} (group {self.group})"
        return f"{self.kind.value} {self.name}"


def parse_uri(uri: str, trust_domain: str) -> Identity | None:
    """The identity named by `uri` in `trust_domain`, or None if it names none."""
    prefix = f"spiffe://{trust_domain}/"
    if not uri.startswith(prefix):
        return None
    parts = uri[len(prefix) :].split("/")
    if parts == ["hub"]:
        return Identity(Kind.HUB, "hub")
    if len(parts) == 3 and parts[0] == "node" and all(NAME_RE.fullmatch(p) for p in parts[1:]):
        return Identity(Kind.NODE, parts[2], parts[1])
    if len(parts) == 2 and parts[0] == "operator" and NAME_RE.fullmatch(parts[1]):
        return Identity(Kind.OPERATOR, parts[1])
    return None
