"""Typed, layered configuration: defaults, then a TOML file, then AUTONOMY_* variables.

A config is a frozen dataclass whose fields are frozen section dataclasses. Every
field carries its documentation in `metadata["doc"]`; docs/configuration.md is made
from it. `load` reports every problem at once, each naming file, key and what was
expected, and nothing starts until the whole config is valid.

Environment overrides are named AUTONOMY_<SECTION>_<KEY>, e.g. AUTONOMY_LINK_HEARTBEAT_INTERVAL_S.
"""

import dataclasses
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from edgecommon.errors import ConfigError

T = TypeVar("T")
ENV_PREFIX = "AUTONOMY_"
Check = Callable[[Any], str | None]


def setting(default: Any, doc: str, check: Check | None = None, *, env: bool = True) -> Any:
    """A config field with its documentation and an optional check returning a complaint."""
    meta = {"doc": doc, "check": check, "env": env}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(value: float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def at_least(low: float) -> Check:
    return lambda value: None if value >= low else f"a number >= {low}"


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else "one of " + ", ".join(map(repr, choices))


def host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 0 <= int(port) <= 65535:
        return None
    return "HOST:PORT (e.g. 127.0.0.1:7443 or [::1]:7443)"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like '90s', '1h', '1h30m', '250ms'; ValueError otherwise."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration; use e.g. 30s, 15m, 1h or 1h30m")
    return total


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "a boolean"
    if tp in (int, float):
        return "a number"
    if tp in (str, Path):
        return "a string"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a table of strings"
    return str(tp)


def _coerce(value: Any, tp: Any) -> Any:
    """`value` as `tp`, or raise TypeError."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str) and value:
            return Path(value)
    elif typing.get_origin(tp) is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif typing.get_origin(tp) is dict and (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    ):
        return dict(value)
    raise TypeError


def _from_env(text: str, tp: Any) -> Any:
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise TypeError
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if typing.get_origin(tp) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if typing.get_origin(tp) is dict:
        pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise TypeError
        return {k.strip(): v.strip() for k, v in pairs}
    return _coerce(text, tp)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(cls: type[T], path: Path | None, environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from defaults, the TOML file at `path` (if any) and the environment."""
    environ = environ if environ is not None else {}
    where = str(path) if path else "defaults"
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                [f"{path}: file not found; pass --config with an existing file"]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    sections = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in raw:
        if name not in sections:
            problems.append(f"{where}: unknown section [{name}] (known: {', '.join(sections)})")
    built: dict[str, Any] = {}
    section_types = _hints(cls)
    for name in sections:
        section_cls = section_types[name]
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"{where}: [{name}] must be a table")
            table = {}
        built[name] = _load_section(section_cls, name, table, where, environ, problems)
    if problems:
        raise ConfigError(problems)
    config = cls(**built)
    cross = getattr(config, "problems", None)
    if cross is not None and (found := cross()):
        raise ConfigError([f"{where}: {p}" for p in found])
    return config


def _load_section(
    section_cls: type,
    section: str,
    table: dict[str, Any],
    where: str,
    environ: Mapping[str, str],
    problems: list[str],
) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    hints = _hints(section_cls)
    values: dict[str, Any] = {}
    for key in table:
        if key not in fields:
            problems.append(f"{where}: unknown key [{section}].{key} (known: {', '.join(fields)})")
    for key, field in fields.items():
        tp = hints[key]
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if field.metadata.get("env", True) and env_name in environ:
            source = f"environment variable {env_name}"
            try:
                value = _from_env(environ[env_name], tp)
            except (TypeError, ValueError):
                problems.append(f"{source}: expected {_type_name(tp)}, got {environ[env_name]!r}")
                continue
        elif key in table:
            source = f"{where}: [{section}].{key}"
            try:
                value = _coerce(table[key], tp)
            except TypeError:
                problems.append(f"{source}: expected {_type_name(tp)}, got {table[key]!r}")
                continue
        else:
            continue
        check = field.metadata.get("check")
        if check is not None and (complaint := check(value)):
            problems.append(f"{source}: expected {complaint}, got {value!r}")
            continue
        values[key] = value
    return section_cls(**values)


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every field of a config class, for the docs."""
    rows = []
    for section in dataclasses.fields(cls):
        section_cls = _hints(cls)[section.name]
        hints = _hints(section_cls)
        for f in dataclasses.fields(section_cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            rows.append(
                (
                    f"[{section.name}].{f.name}",
                    _type_name(hints[f.name]),
                    repr(str(default) if isinstance(default, Path) else default),
                    f.metadata.get("doc", ""),
                )
            )
    return rows
