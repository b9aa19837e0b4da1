"""optics/ stays pure physics: no orchestration imports, and only backend.py imports CuPy."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = {"ray", "mlflow", "hydra", "omegaconf", "pipeline"}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_optics_imports_no_orchestration():
    bad = {(p.name, m) for p in (ROOT / "optics").rglob("*.py") for m in _imports(p) if m in FORBIDDEN}
    assert not bad, f"optics/ must stay pure physics, found {sorted(bad)}"


def test_only_backend_imports_cupy():
    users = {p.name for p in (ROOT / "optics").rglob("*.py") if any(m in ("cupy", "cupyx") for m in _imports(p))}
    assert users <= {"backend.py"}, users


def test_import_has_no_cupy_side_effect():
    import subprocess
    import sys

    code = "import optics.diffractive.chip, optics.core.ffm, sys; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
