"""The autonomy switch file: strict parsing, fail-closed reading, careful writing."""

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecommon.autonomy_file import (
    NOTE_PREFIX,
    SOURCE_NOT_MOUNTED,
    SOURCE_READ_ERROR,
    SwitchFile,
    SwitchReading,
    parse_switch,
    write_switch,
)
from edgecommon.errors import InvalidArgument

NOW = "2026-11-23T10:00:00Z"


def put(path: Path, data: str | bytes) -> None:
    """Replace the file the way editors and ConfigMap updates do: new inode, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


class CountingParse:
    """The injected parse hook: counts how often the reader really parses."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> bool:
        self.calls += 1
        return parse_switch(text)


# --- parse_switch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("autonomy_enabled: true\n", True),
        ("autonomy_enabled: false\n", False),
        ("autonomy_enabled: True", True),
        ("autonomy_enabled: FALSE", False),
        ("autonomy_enabled: false  # stopped for maintenance\n", False),
        ("# fleet switch\nother: 1\nautonomy_enabled: true\nlabels: [a, b]\n", True),
        ("{autonomy_enabled: false, other: x}", False),
        ("\ufeffautonomy_enabled: true\n", True),
    ],
)
def test_parse_accepts_plain_true_and_false(text: str, expected: bool) -> None:
    assert parse_switch(text) is expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("autonomy_enabled: yes", "yes"),
        ("autonomy_enabled: on", "on"),
        ("autonomy_enabled: 1", "1"),
        ('autonomy_enabled: "true"', '"true" (a quoted string)'),
        ("autonomy_enabled: 'false'", "'false' (a quoted string)"),
        ("autonomy_enabled: null", "empty (null)"),
        ("autonomy_enabled:", "empty (null)"),
        ("autonomy_enabled: [true]", "a list"),
        ("autonomy_enabled: {on: true}", "a mapping"),
        ("autonomy_enabled: tRUE", "tRUE (YAML reads it as a string here)"),
        ("autonomy_enabled: !!str true", "true (YAML reads it as a string here)"),
    ],
)
def test_parse_rejects_anything_but_a_boolean_naming_the_value(text: str, shown: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_switch(text)
    assert str(err.value) == f"line 1: autonomy_enabled must be true or false, not {shown}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("autonomy_enabled: [true\n", "invalid YAML at line 2, column 1"),
        ("a: b: c\n", "invalid YAML at line 1, column 5"),
        ("\tautonomy_enabled: true\n", "invalid YAML at line 1, column 1"),
        ("a: 1\n---\nautonomy_enabled: true\n", "invalid YAML at line 2"),
        ("a: \x00\n", "invalid YAML: unacceptable character"),
        ("x: !!python/object:os.system y\nautonomy_enabled: true\n", "could not determine"),
        ("- autonomy_enabled: true\n", "document is not a mapping: found a list; expected"),
        ("just some words\n", "document is not a mapping: found just some words"),
        ("", "document is empty; expected 'autonomy_enabled: true|false'"),
        ("# only a comment\n", "document is empty"),
        ("other: true\n", "document has no autonomy_enabled key"),
        ("autonomy_enabled: true\nautonomy_enabled: false\n", "set 2 times (lines 1, 2)"),
        ("base: &b {autonomy_enabled: true}\n<<: *b\n", "document has no autonomy_enabled key"),
    ],
)
def test_parse_rejects_invalid_documents_in_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_switch(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# --- SwitchFile.read ------------------------------------------------------------------


def test_missing_file_gives_the_configured_default(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    assert SwitchFile(path, default=True).read() == SwitchReading(True, SOURCE_NOT_MOUNTED)
    assert SwitchFile(path, default=False).read() == SwitchReading(False, SOURCE_NOT_MOUNTED)


def test_valid_file_is_read_with_its_path_as_source(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "autonomy_enabled: false\n")
    reading = SwitchFile(path, default=True).read()
    assert reading == SwitchReading(False, f"configmap:{path}")
    assert reading.error == ""


@pytest.mark.parametrize(
    "content",
    [
        "autonomy_enabled: [true\n",
        "- a\n",
        "autonomy_enabled: yes\n",
        "other: 1\n",
        b"autonomy_enabled: \xff\n",
    ],
)
def test_invalid_file_fails_closed_without_a_last_good_value(
    tmp_path: Path, content: str | bytes
) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, content)
    reading = SwitchFile(path, default=True).read()
    assert (reading.enabled, reading.source) == (False, SOURCE_READ_ERROR)
    assert reading.error.startswith(f"{path}: ")
    assert "\n" not in reading.error


def test_invalid_file_keeps_the_last_good_value_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    switch = SwitchFile(path, default=False)
    put(path, "autonomy_enabled: true\n")
    assert switch.read().enabled is True

    put(path, "autonomy_enabled: [\n")
    broken = switch.read()
    assert (broken.enabled, broken.source) == (True, SOURCE_READ_ERROR)
    assert "invalid YAML" in broken.error
    assert switch.last_good is True

    put(path, "autonomy_enabled: false\n")
    assert switch.read() == SwitchReading(False, f"configmap:{path}")
    put(path, "autonomy_enabled: maybe\n")
    assert switch.read().enabled is False  # the new last good value
    assert "not maybe" in switch.read().error


def test_directory_in_place_of_the_file_is_an_error_not_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    path.mkdir()
    reading = SwitchFile(path, default=True).read()
    assert (reading.enabled, reading.source) == (False, SOURCE_READ_ERROR)
    assert "cannot read" in reading.error


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_retried_after_chmod(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "autonomy_enabled: true\n")
    path.chmod(0)
    switch = SwitchFile(path, default=True)
    assert switch.read().source == SOURCE_READ_ERROR
    path.chmod(0o644)  # changes neither mtime, size nor inode
    assert switch.read() == SwitchReading(True, f"configmap:{path}")


def test_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "autonomy_enabled: true\n")
    parse = CountingParse()
    switch = SwitchFile(path, default=False, parse=parse)
    first = switch.read()
    assert switch.read() is first
    assert switch.read() is first
    assert parse.calls == 1

    put(path, "autonomy_enabled: true\n")  # same content, new inode: read again
    assert switch.read() == first
    assert parse.calls == 2


def test_invalid_file_stays_invalid_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "autonomy_enabled: nope\n")
    parse = CountingParse()
    switch = SwitchFile(path, default=True, parse=parse)
    first = switch.read()
    assert first.source == SOURCE_READ_ERROR
    assert switch.read() is first
    assert parse.calls == 1
    put(path, "autonomy_enabled: true\n")
    assert switch.read().source == f"configmap:{path}"
    assert parse.calls == 2


def test_file_removed_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    switch = SwitchFile(path, default=True)
    put(path, "autonomy_enabled: false\n")
    assert switch.read().enabled is False
    path.unlink()
    assert switch.read() == SwitchReading(True, SOURCE_NOT_MOUNTED)
    put(path, "autonomy_enabled: false\n")
    assert switch.read() == SwitchReading(False, f"configmap:{path}")


def test_symlink_swap_like_a_configmap_update_is_seen(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    put(tmp_path / "v1" / "autonomy.yaml", "autonomy_enabled: true\n")
    put(tmp_path / "v2" / "autonomy.yaml", "autonomy_enabled: false\n")
    data = tmp_path / "..data"
    data.symlink_to("v1")
    path = tmp_path / "autonomy.yaml"
    path.symlink_to("..data/autonomy.yaml")
    switch = SwitchFile(path, default=True)
    assert switch.read().enabled is True
    new = tmp_path / "..data_tmp"
    new.symlink_to("v2")
    os.replace(new, data)
    assert switch.read() == SwitchReading(False, f"configmap:{path}")


# --- write_switch ---------------------------------------------------------------------

ORIGINAL = (
    "# Fleet autonomy switch for site-a.\n"
    "# Ask #edge-ops before changing.\n"
    "\n"
    "owner: team-edge   # who to call\n"
    "autonomy_enabled: true  # normal operation\n"
    "limits:\n"
    "  max_jobs: 4\n"
    "# trailing comment\n"
)


def test_write_changes_only_the_value_and_adds_one_note(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, ORIGINAL)
    write_switch(path, False, "INC-42 runaway jobs", "alice", NOW)
    assert path.read_text() == ORIGINAL.replace(
        "autonomy_enabled: true  # normal operation\n",
        f"# last changed {NOW} by alice: INC-42 runaway jobs\n"
        "autonomy_enabled: false  # normal operation\n",
    )
    assert parse_switch(path.read_text()) is False


def test_repeated_writes_replace_the_note(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, ORIGINAL)
    write_switch(path, False, "stop", "alice", NOW)
    write_switch(path, True, "resume", "bob", "2026-11-23T11:00:00Z")
    write_switch(path, True, "still on", "carol", "2026-11-23T12:00:00Z")
    text = path.read_text()
    assert text.count(NOTE_PREFIX) == 1
    assert text == ORIGINAL.replace(
        "autonomy_enabled: true  # normal operation\n",
        "# last changed 2026-11-23T12:00:00Z by carol: still on\n"
        "autonomy_enabled: true  # normal operation\n",
    )


def test_write_keeps_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "\ufeffa: 1\r\nautonomy_enabled: false\r\n")
    write_switch(path, True, "go", "ops", NOW)
    assert path.read_bytes() == (
        f"\ufeffa: 1\r\n# last changed {NOW} by ops: go\r\nautonomy_enabled: true\r\n".encode()
    )


def test_write_appends_an_absent_key(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "# notes\nowner: edge")
    write_switch(path, False, "not yet", "ops", NOW)
    assert path.read_text() == (
        f"# notes\nowner: edge\n# last changed {NOW} by ops: not yet\nautonomy_enabled: false\n"
    )


def test_write_creates_a_missing_file_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    write_switch(path, True, "first enable", "ops", NOW)
    text = path.read_text()
    assert text.startswith("# ")
    assert f"# last changed {NOW} by ops: first enable\nautonomy_enabled: true\n" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert SwitchFile(path, default=False).read() == SwitchReading(True, f"configmap:{path}")


def test_write_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, "autonomy_enabled: true\n")
    path.chmod(0o600)
    write_switch(path, False, "stop", "ops", NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_goes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    put(real, "autonomy_enabled: true\n")
    link = tmp_path / "autonomy.yaml"
    link.symlink_to(real)
    write_switch(link, False, "stop", "ops", NOW)
    assert link.is_symlink()
    assert parse_switch(real.read_text()) is False


@pytest.mark.parametrize(
    "content",
    [
        "autonomy_enabled: yes\n",
        "autonomy_enabled: [\n",
        "- autonomy_enabled: true\n",
        "autonomy_enabled: true\nautonomy_enabled: true\n",
        "{other: 1}\n",
        # A note look-alike inside a block scalar must not be "replaced".
        "motd: |\n  # last changed yesterday\nautonomy_enabled: true\n",
    ],
)
def test_write_refuses_a_file_it_cannot_understand(tmp_path: Path, content: str) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, content)
    with pytest.raises(InvalidArgument, match="by hand"):
        write_switch(path, False, "stop", "ops", NOW)
    assert path.read_text() == content


def test_write_refuses_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "autonomy.yaml"
    put(path, b"autonomy_enabled: true # caf\xe9\n")
    with pytest.raises(InvalidArgument, match=r"not UTF-8.*by hand"):
        write_switch(path, False, "stop", "ops", NOW)
    assert path.read_bytes() == b"autonomy_enabled: true # caf\xe9\n"


@pytest.mark.parametrize(
    ("reason", "actor", "now_text"),
    [
        ("", "ops", NOW),
        ("   ", "ops", NOW),
        ("two\nlines", "ops", NOW),
        ("carriage\rreturn", "ops", NOW),
        ("line\u2028separator", "ops", NOW),
        ("ok", "", NOW),
        ("ok", "ev\nil", NOW),
        ("ok", "ops", "now\n"),
    ],
)
def test_write_refuses_a_reason_that_is_not_one_line(
    tmp_path: Path, reason: str, actor: str, now_text: str
) -> None:
    path = tmp_path / "autonomy.yaml"
    with pytest.raises(InvalidArgument):
        write_switch(path, False, reason, actor, now_text)
    assert not path.exists()
    put(path, ORIGINAL)
    with pytest.raises(InvalidArgument):
        write_switch(path, False, reason, actor, now_text)
    assert path.read_text() == ORIGINAL


# --- property: write then parse ---------------------------------------------------------

_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -.,", min_size=0, max_size=20)
_comment = _words.map(lambda w: f"# {w}".rstrip()).filter(lambda c: "last changed" not in c)
_other_key = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: k != "autonomy_enabled"
)
_other = st.builds(
    lambda k, v: f"{k}: {v}",
    _other_key,
    st.one_of(st.integers(-1000, 1000).map(str), st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
)
_line = st.one_of(_comment, _other, st.just(""))
_switch_line = st.builds(
    lambda v, c: f"autonomy_enabled: {v}{c}",
    st.sampled_from(["true", "false", "True", "FALSE"]),
    st.sampled_from(["", "  # keep me", " #x"]),
)


def _kept(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if not line.startswith("autonomy_enabled:") and not line.startswith(NOTE_PREFIX)
    ]


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(_line, max_size=6),
    after=st.lists(_line, max_size=6),
    switch_line=_switch_line,
    enabled=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_write_then_parse_keeps_every_other_line_in_order(
    before: list[str],
    after: list[str],
    switch_line: str,
    enabled: bool,
    trailing_newline: bool,
) -> None:
    original = "\n".join([*before, switch_line, *after]) + ("\n" if trailing_newline else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "autonomy.yaml"
        put(path, original)
        write_switch(path, enabled, "property test", "hypothesis", NOW)
        written = path.read_text()
    assert parse_switch(written) is enabled
    assert _kept(written) == _kept(original)
    assert written.count(NOTE_PREFIX) == 1
    comment = switch_line.partition("#")[2]
    if comment:
        assert f"#{comment}" in written
