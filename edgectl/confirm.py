"""Confirmation for destructive verbs: type the target, or pass --force."""

import sys

from edgecommon.errors import InvalidArgument


def confirm(force: bool, verb: str, target: str) -> None:
    if force:
        return
    if not sys.stdin.isatty():
        raise InvalidArgument(f"{verb} {target} needs confirmation: pass --force")
    answer = input(f"{verb.capitalize()} {target}? Type {target!r} to confirm: ")
    if answer.strip() != target:
        raise InvalidArgument(f"not confirmed; nothing changed ({verb} {target})")
