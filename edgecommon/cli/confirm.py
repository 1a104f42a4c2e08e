"""Confirmation for destructive verbs: type the expected answer, or pass --force."""

import sys

from edgecommon.errors import InvalidArgument


def confirm(force: bool, action: str, prompt: str, expected: str, nothing: str) -> None:
    """Without --force, ask on a terminal and refuse when there is none.

    `action` names what needs confirming ("releasing group:a"), `nothing` what was not done
    when the answer is not `expected` ("nothing released")."""
    if force:
        return
    if not sys.stdin.isatty():
        raise InvalidArgument(f"{action} needs confirmation: pass --force")
    if input(prompt).strip() != expected:
        raise InvalidArgument(f"not confirmed; {nothing}")
