"""The generated protobuf code is exactly what proto/ produces."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is needed to check generated code: pip install -e '.[test]'")
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "scripts" / "genproto.py")
    assert spec
    assert spec.loader
    genproto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(genproto)
    genproto.generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(ROOT): p.read_bytes()
        for p in (ROOT / "edgecommon" / "pb").iterdir()
        if p.is_file() and p.name != "__init__.py"
    }
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), (
        "generated files differ from proto/: run python scripts/genproto.py"
    )
    stale = [str(name) for name, data in fresh.items() if committed[name] != data]
    assert not stale, f"stale generated code {stale}: run python scripts/genproto.py"
