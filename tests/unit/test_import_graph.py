"""The import graph keeps its layers. edgectl speaks to the hub and the agents only over the
wire (gRPC, HTTP), so it imports edgecommon and third-party code and never hub or agent, not
even through edgecommon; edgecommon imports none of the programs; hub and agent never import
each other.

Two checks, because each misses what the other sees: every import statement in the source,
wherever it sits (a function-level import cannot hide); and, for every module of edgectl
(it imports the module of the command being run on demand), what a fresh interpreter
actually loads when it imports it, which also sees importlib and imports made on its
behalf by edgecommon or third-party code.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgectl.main import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("edgecommon", "edgectl", "hub", "agent")
# What each package must never import, directly or (second check) by loading it.
FORBIDDEN = {
    "edgectl": frozenset({"hub", "agent"}),
    "edgecommon": frozenset({"hub", "agent", "edgectl"}),
    "hub": frozenset({"agent", "edgectl"}),
    "agent": frozenset({"hub", "edgectl"}),
}


def imported_packages(source: str) -> set[tuple[int, str]]:
    """(line, top-level package) of every absolute import in `source`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in sorted(imported_packages(path.read_text())):
            if name in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def test_the_checker_sees_imports_anywhere_in_a_module() -> None:
    source = (
        "import os\nfrom hub.config import X\n\ndef f():\n    import agent.link.hub_link as a\n"
    )
    assert imported_packages(source) == {(1, "os"), (2, "hub"), (5, "agent")}
    assert imported_packages("from . import sibling\n") == set()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_package_its_layer_forbids(package: str) -> None:
    assert violations(package) == []


# Run by a fresh interpreter: import one module (or build edgectl's whole parser, as
# `edgectl --help` does) and print every module then loaded.
PROBE = """
import importlib, json, sys
target = sys.argv[1]
if target == "--help":
    importlib.import_module("edgectl.main").build_parser()
else:
    importlib.import_module(target)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(target: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def edgectl_modules() -> list[str]:
    files = {f"edgectl.{p.stem}" for p in (ROOT / "edgectl").glob("*.py")}
    commands = {f"edgectl.{name}" for name in COMMAND_MODULES.values()}
    assert commands <= files, "every command module is a file of edgectl"
    return sorted(files - {"edgectl.__init__"})


@pytest.mark.parametrize("target", [*edgectl_modules(), "--help"])
def test_no_edgectl_module_loads_hub_or_agent(target: str) -> None:
    loaded = loaded_by(target)
    assert target == "--help" or target in loaded
    programs = [m for m in loaded if m.split(".")[0] in FORBIDDEN["edgectl"]]
    assert programs == [], f"importing {target} loads {programs}"


# The map in docs/architecture.md ("## Packages"): package → job → what it may import.
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def package_of(module: str) -> str | None:
    """`hub.fleet` for hub/fleet/registry.py; `hub` for a module at the top of hub/."""
    parts = module.split(".")
    if parts[0] not in PROGRAMS:
        return None
    if parts[0] in ("hub", "agent") and len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def documented_map() -> dict[str, set[str]]:
    """Each package row of the map, as a dotted name, and the packages it may import."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Packages") :].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or "→" in cells[0]:
            continue
        name = cells[0].split("`")[1].rstrip("/").replace("/", ".")
        allowed = {a.split("`")[1] for a in cells[2].split(",") if "`" in a}
        rows[name] = {a.removesuffix(".*") for a in allowed}
        if any(a.endswith(".*") for a in allowed):
            rows[name] |= {f"{name}.{d.name}" for d in (ROOT / name).iterdir() if d.is_dir()}
    return rows


def actual_map() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for program in PROGRAMS:
        for path in (ROOT / program).rglob("*.py"):
            if "pb" in path.relative_to(ROOT).parts or "migrations" in path.parts:
                continue
            me = package_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
            assert me is not None
            deps = found.setdefault(me, set())
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                deps |= {p for n in names if (p := package_of(n)) is not None and p != me}
    return found


def test_the_architecture_map_names_every_package_and_what_it_imports() -> None:
    documented, actual = documented_map(), actual_map()
    assert sorted(documented) == sorted(actual), "docs/architecture.md: the map's packages"
    for package, deps in sorted(actual.items()):
        beyond = deps - documented[package] - {package}
        assert not beyond, f"{package} imports {sorted(beyond)}, beyond the map"


def test_the_map_check_sees_a_package_import_beyond_its_row() -> None:
    assert package_of("hub.fleet.registry") == "hub.fleet"
    assert package_of("hub.assemble") == "hub"
    assert package_of("grpc") is None
    assert "agent" not in documented_map()["hub.fleet"]
