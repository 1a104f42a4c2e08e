"""`edgectl audit ... --pg-url` runs `edge-hub audit ...` with the same flags: every flag of
edgectl's audit commands is in the shared table (edgecommon/cli/audit_view.py), and what
edgectl parsed reaches edge-hub's parser unchanged, odd values included."""

import argparse
from pathlib import Path

import pytest

from edgecommon.cli.audit_view import COMMANDS, Flag, forward_argv
from edgectl.main import GLOBAL_DEFAULTS, build_parser
from hub.main import build_parser as edge_hub_parser
from hub.main import parse_args as edge_hub_args

# Flags each side adds beside the shared table: the database, edge-hub's own output option
# (edgectl's is global) and who a direct prune is recorded under (edgectl passes its own).
EDGECTL_OWN = {"help", "pg_url", *GLOBAL_DEFAULTS}
EDGE_HUB_OWN = {"help", "pg_url", "output", "by"}


def leaf(parser: argparse.ArgumentParser, *words: str) -> argparse.ArgumentParser:
    for word in words:
        [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


def dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.option_strings}


def odd_value(flag: Flag) -> list[str]:
    """A value unlike the default, one that argparse would take for an option if it were
    passed as a separate word where possible."""
    if flag.switch:
        return [flag.name]
    if flag.choices:
        return [flag.name, flag.choices[-1]]
    if flag.kind is int:
        return [flag.name, "7"]
    if flag.kind is Path:
        return [flag.name, "out dir/audit.csv"]
    return [f"{flag.name}=-{flag.dest} with spaces, 'quotes' and = signs"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_both_audit_parsers_have_exactly_the_shared_flags(command: str) -> None:
    table = {f.dest for f in COMMANDS[command].flags}
    assert dests(leaf(build_parser(only="audit"), "audit", command)) - EDGECTL_OWN == table
    assert dests(leaf(edge_hub_parser(), "audit", command)) - EDGE_HUB_OWN == table


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_what_edgectl_parsed_reaches_edge_hub_unchanged(command: str) -> None:
    flags = COMMANDS[command].flags
    words = [w for f in flags for w in odd_value(f)]
    parsed = build_parser(only="audit").parse_args(["audit", command, *words])
    forwarded = edge_hub_args([*forward_argv(command, parsed), "--pg-url=postgresql://h/db"])
    for flag in flags:
        assert getattr(forwarded, flag.dest) == getattr(parsed, flag.dest), flag.name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_defaults_are_not_forwarded(command: str) -> None:
    required = [w for f in COMMANDS[command].flags if f.required for w in odd_value(f)]
    parsed = build_parser(only="audit").parse_args(["audit", command, *required])
    assert forward_argv(command, parsed) == ["audit", command, *required]
