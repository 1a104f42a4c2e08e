"""The autonomy switch file: one YAML key, `autonomy_enabled: true|false`.

The file is the single source of truth for whether autonomous work may run. The hub's
file is the fleet switch; an agent's own file is the node switch. Nothing else (a flag,
an environment variable, a cached RPC answer) overrides it; everything that needs to
know reads it through `SwitchFile.read()`, and everything that changes it goes through
`write_switch()` or an operator's editor.

Only a top-level `autonomy_enabled` key written directly in the file is read. Other keys
and comments are allowed and preserved by `write_switch`, but ignored; a value that only
arrives through a YAML merge key (`<<:`) does not count.

Every reading says where its value came from, with the source strings of the autonomy
runbook (operators grep for them, so they are kept exactly):

    configmap:<path>                  the value read from the file at <path>
    default (config not mounted)      no file: the configured built-in default
    default (error reading config)    the file exists but cannot be read or is invalid

Fail-closed rule: when the file exists but cannot be read or is invalid, the reader keeps
the last value it read successfully, and if it never read one, answers False. A file
that is present says an operator meant something; when we cannot tell what, we must not
guess "on". Keeping the last good value instead of flipping to False stops a half-saved
edit or a typo from stopping a healthy fleet; the reading's `error` says what is wrong
so status shows it. A missing file is different: it means "not configured", and the
configured default (normally True, as in the runbook) applies.

Values are strict: only the plain YAML tokens true and false (also True/TRUE/False/FALSE)
are accepted. `yes`, `on`, `1`, `"true"` and the like are rejected with a message, not
coerced, because a switch that stops a fleet must read the same way to every tool.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgecommon.errors import Conflict, InvalidArgument
from edgecommon.pki import atomic_write

KEY = "autonomy_enabled"
SOURCE_NOT_MOUNTED = "default (config not mounted)"
SOURCE_READ_ERROR = "default (error reading config)"
MAX_BYTES = 64 * 1024
NOTE_PREFIX = "# last changed "
NEW_FILE_MODE = 0o644
NEW_FILE_HEADER = (
    "# Autonomy switch: the single source of truth for whether autonomous work may run.\n"
    "# Only autonomy_enabled is read; set it to true or false.\n"
)
_EXPECTED = f"expected '{KEY}: true|false'"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_BREAKS = "\r\n\x85\u2028\u2029"  # what YAML counts as a line break


def file_source(path: Path) -> str:
    """The source string of a value read from the file at `path`."""
    return f"configmap:{path}"


@dataclass(frozen=True)
class SwitchReading:
    """One answer to "may autonomous work run?" and where it came from."""

    enabled: bool
    source: str
    error: str = ""  # one line, empty when the file was read fine


# --- parsing (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    key: yaml.Node
    value: yaml.Node
    enabled: bool


@dataclass(frozen=True)
class _Absent:
    empty: bool  # no document at all (empty or only comments)
    appendable: bool  # a block key can be added at the end of the file


def _yaml_error(exc: yaml.YAMLError) -> InvalidArgument:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return InvalidArgument(f"invalid YAML at {where}: {problem}")
    return InvalidArgument(f"invalid YAML: {' '.join(str(exc).split())}")


def _compose(text: str) -> tuple[yaml.Node | None, list[tuple[yaml.Node, yaml.Node]]]:
    """The root node and its own (key, value) pairs; the whole document must load safely."""
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects control characters here
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    try:
        root = loader.get_single_node()
        # Copy the pairs first: construction expands merge keys into root.value in place.
        pairs = list(root.value) if isinstance(root, yaml.MappingNode) else []
        if root is not None:
            loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    finally:
        loader.dispose()
    return root, pairs


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if not isinstance(node, yaml.ScalarNode):
        return "a mapping"
    if node.tag == _NULL_TAG:
        return "empty (null)"
    shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    if node.style in ('"', "'"):
        return f"{node.style}{shown}{node.style} (a quoted string)"
    if node.style in ("|", ">"):
        return "a block scalar"
    if node.value.lower() in ("true", "false"):
        return f"{shown} (YAML reads it as a string here)"
    return shown


def _value_of(node: yaml.Node) -> bool:
    line = node.start_mark.line + 1
    if (
        isinstance(node, yaml.ScalarNode)
        and node.style is None
        and node.tag == _BOOL_TAG
        and node.value.lower() in ("true", "false")
    ):
        return node.value.lower() == "true"
    raise InvalidArgument(f"line {line}: {KEY} must be true or false, not {_kind(node)}")


def _inspect(text: str) -> _Found | _Absent:
    """Locate the switch in `text`; InvalidArgument for anything but a usable or absent key."""
    root, pairs = _compose(text)
    if root is None:
        return _Absent(empty=True, appendable=True)
    if not isinstance(root, yaml.MappingNode):
        raise InvalidArgument(f"document is not a mapping: found {_kind(root)}; {_EXPECTED}")
    hits = [
        (k, v)
        for k, v in pairs
        if isinstance(k, yaml.ScalarNode) and k.tag == _STR_TAG and k.value == KEY
    ]
    if len(hits) > 1:
        lines = ", ".join(str(k.start_mark.line + 1) for k, _ in hits)
        raise InvalidArgument(f"{KEY} is set {len(hits)} times (lines {lines}); keep one")
    if not hits:
        block_at_margin = not root.flow_style and root.start_mark.column == 0
        return _Absent(empty=False, appendable=block_at_margin)
    key, value = hits[0]
    return _Found(key, value, _value_of(value))


def parse_switch(text: str) -> bool:
    """The value of `autonomy_enabled` in `text`, or InvalidArgument saying what is wrong.

    Only the safe YAML loader is used. Extra keys are allowed and ignored.
    """
    found = _inspect(text)
    if isinstance(found, _Absent):
        what = "document is empty" if found.empty else f"document has no {KEY} key"
        raise InvalidArgument(f"{what}; {_EXPECTED}")
    return found.enabled


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"not UTF-8 text (bad byte at offset {exc.start})") from None


# --- reading ------------------------------------------------------------------------


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class SwitchFile:
    """Reads one switch file; cheap enough to call every second.

    A file whose (mtime_ns, size, inode) has not changed since it was last read is not
    read or parsed again: the previous reading (the same object) is returned, valid or
    not. Read failures (permissions, a directory) are retried on every call, because a
    chmod does not change the key. `os.stat` follows symlinks, so the atomic `..data`
    swap of a Kubernetes ConfigMap mount is seen as a new inode.
    """

    def __init__(
        self, path: Path, default: bool, *, parse: Callable[[str], bool] = parse_switch
    ) -> None:
        self._path = path
        self._default = default
        self._parse = parse
        self._last_good: bool | None = None
        self._key: tuple[int, int, int] | None = None
        self._cached: SwitchReading | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def last_good(self) -> bool | None:
        """The last value read successfully from the file, None if there never was one."""
        return self._last_good

    def read(self) -> SwitchReading:
        try:
            st = os.stat(self._path)
            if self._cached is not None and _stat_key(st) == self._key:
                return self._cached
            raw, key = self._read_bytes()
        except FileNotFoundError:
            self._forget()
            return SwitchReading(self._default, SOURCE_NOT_MOUNTED)
        except OSError as exc:
            self._forget()
            return self._failed(f"cannot read: {exc.strerror or exc}")
        reading = self._evaluate(raw)
        self._key, self._cached = key, reading
        return reading

    def _read_bytes(self) -> tuple[bytes, tuple[int, int, int]]:
        # The key comes from the open file after reading, so content and key match even
        # if the file is replaced between the stat above and the open.
        with open(self._path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
            return raw, _stat_key(os.fstat(f.fileno()))

    def _evaluate(self, raw: bytes) -> SwitchReading:
        if len(raw) > MAX_BYTES:
            return self._failed(f"larger than {MAX_BYTES} bytes; is this the switch file?")
        try:
            enabled = self._parse(_decode(raw))
        except InvalidArgument as exc:
            return self._failed(str(exc))
        self._last_good = enabled
        return SwitchReading(enabled, file_source(self._path))

    def _failed(self, error: str) -> SwitchReading:
        enabled = self._last_good if self._last_good is not None else False
        return SwitchReading(enabled, SOURCE_READ_ERROR, f"{self._path}: {error}")

    def _forget(self) -> None:
        self._key, self._cached = None, None


# --- writing ------------------------------------------------------------------------


def _check_line(name: str, value: str) -> None:
    if not value.strip():
        raise InvalidArgument(f"{name} must not be empty")
    if not value.isprintable():
        raise InvalidArgument(f"{name} must be one line of printable text: {value!r}")


def _line_start(text: str, i: int) -> int:
    while i > 0 and text[i - 1] not in _BREAKS:
        i -= 1
    return i


def _break_after(text: str, i: int) -> str:
    """The line break that ends the line containing `i`, or "" on the last line."""
    while i < len(text) and text[i] not in _BREAKS:
        i += 1
    return "\r\n" if text.startswith("\r\n", i) else text[i : i + 1]


def _replace(text: str, found: _Found, token: str, note: str) -> str:
    value = found.value
    text = text[: value.start_mark.index] + token + text[value.end_mark.index :]
    key_at = found.key.start_mark.index
    start = _line_start(text, key_at)
    indent = text[start:key_at] if text[start:key_at].isspace() else ""
    if start > 0:
        prev_end = start - (2 if text.startswith("\r\n", start - 2) else 1)
        prev_start = _line_start(text, prev_end)
        if text[prev_start:prev_end].lstrip().startswith(NOTE_PREFIX):
            return text[:prev_start] + indent + note + text[prev_end:]
    eol = _break_after(text, key_at) or "\n"
    return text[:start] + indent + note + eol + text[start:]


def _append(text: str, token: str, note: str) -> str:
    eol = _break_after(text, 0) or "\n"
    if text and text[-1] not in _BREAKS:
        text += eol
    return f"{text}{note}{eol}{KEY}: {token}{eol}"


def _others(text: str) -> object:
    """Everything the file says except the switch, as loaded data."""
    data = yaml.safe_load(text)
    if data is None:  # an empty file, to which the switch was appended
        data = {}
    if isinstance(data, dict):
        data.pop(KEY, None)
    return data


def set_switch_text(text: str | None, enabled: bool, note: str) -> str:
    """`text` with the switch set to `enabled` and `note` as the comment line above it.

    Every other byte is kept: the value token is replaced in place (a trailing comment
    on its line survives), an existing note line right above the key is replaced, and
    otherwise the note is inserted. An absent key is appended (allowed even though
    parse_switch rejects such a file); None means there is no file yet. Anything else
    parse_switch rejects is refused, never rewritten.

    Invariant, checked before returning: the result parses to `enabled` and loads to
    the same data as `text` apart from the switch.
    """
    token = "true" if enabled else "false"
    new = _edit(text, token, note)
    try:
        same = parse_switch(new) is enabled and (text is None or _others(new) == _others(text))
    except InvalidArgument:
        same = False
    if not same:
        raise InvalidArgument(f"cannot edit this file safely; set '{KEY}: {token}' by hand")
    return new


def _edit(text: str | None, token: str, note: str) -> str:
    if text is None:
        return f"{NEW_FILE_HEADER}{note}\n{KEY}: {token}\n"
    body, bom = (text[1:], "\ufeff") if text.startswith("\ufeff") else (text, "")
    try:
        found = _inspect(body)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{exc}; fix the file by hand first") from None
    if isinstance(found, _Found):
        return bom + _replace(body, found, token, note)
    if not found.appendable:
        raise InvalidArgument(f"cannot add {KEY} to this layout; add '{KEY}: {token}' by hand")
    return bom + _append(body, token, note)


def write_switch(path: Path, enabled: bool, reason: str, actor: str, now_text: str) -> None:
    """Set the switch in the file at `path` atomically, recording who, when and why.

    Refuses (InvalidArgument) a file it cannot understand rather than overwriting it,
    and a reason, actor or time that is empty or not one line. The new text is checked
    before it is written and the file is read back afterwards. The existing file's mode
    is kept (0644 for a new file); a symlink is written through, not replaced.
    """
    for name, value in (("reason", reason), ("actor", actor), ("time", now_text)):
        _check_line(name, value)
    note = f"{NOTE_PREFIX}{now_text} by {actor}: {reason}"
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
        current: str | None = _decode(target.read_bytes())
    except FileNotFoundError:
        mode, current = NEW_FILE_MODE, None
    except OSError as exc:
        raise Conflict(f"cannot read {path}: {exc.strerror or exc}") from None
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}; fix the file by hand first") from None
    try:
        new = set_switch_text(current, enabled, note)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}") from None
    try:
        atomic_write(target, new.encode("utf-8"), mode)
        written = target.read_bytes()
    except OSError as exc:
        raise Conflict(f"cannot write {path}: {exc.strerror or exc}") from None
    if written != new.encode("utf-8") or parse_switch(written.decode("utf-8")) is not enabled:
        raise Conflict(f"{path} changed while it was being written; check it and retry")
