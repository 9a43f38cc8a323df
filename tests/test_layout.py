"""The house's layers: what installs, who imports whom, and equation tags that mean one thing each."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "manual_bp"


def test_only_manual_bp_installs_at_the_top_level():
    """No generic top-level name (such as ``reference``) lands in site-packages: the oracle is inside ours."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "manual_bp" or p.startswith("manual_bp.") for p in config["packages"])
    assert config["package-dir"] == {"manual_bp.reference": "reference"}


def test_check_runs_from_a_folder_with_its_own_reference_module(tmp_path):
    (tmp_path / "reference.py").write_text("raise SystemExit('the wrong reference was imported')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "manual_bp", "check", "--n", "1", "--models", "logreg"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 passed, 0 failed" in proc.stdout


@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    """``path`` parsed once for the tests below (they only read the tree)."""
    return ast.parse(path.read_text())


def _module_imports(path: Path) -> set:
    """The package modules that ``path`` imports at module level (relative or absolute)."""
    tree = _tree(path)
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("manual_bp"):
                parts = node.module.split(".")
                out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("manual_bp"):
                    parts = alias.name.split(".")
                    out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def test_no_module_imports_the_package_root_and_there_are_no_cycles():
    graph = {p.stem: _module_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for name, deps in graph.items():
        assert "__init__" not in deps, f"manual_bp/{name}.py imports the package root"
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        if state.get(node) == "active":
            raise AssertionError(f"import cycle: {' -> '.join(path + [node])}")
        state[node] = "active"
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_importing_the_package_imports_neither_torch_nor_the_oracle():
    """The package, and the command line's modules (which import the oracle only inside ``check``)."""
    code = "import sys, manual_bp, manual_bp.cli, manual_bp.check; " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('torch', 'reference') or m.startswith('manual_bp.reference')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


TAG = re.compile(r"^\s*\(([A-Z][A-Za-z]*[0-9]+[a-z]?)\)\s")


def test_equation_tags_are_defined_in_one_module_each():
    """A tag that opens a docstring line defines an equation; no two modules may define the same tag."""
    defined = {}
    for path in sorted(PACKAGE.glob("*.py")):
        doc = ast.get_docstring(_tree(path), clean=False) or ""
        for line in doc.splitlines():
            m = TAG.match(line)
            if m:
                defined.setdefault(m.group(1), set()).add(path.name)
    clashes = {tag: sorted(files) for tag, files in defined.items() if len(files) > 1}
    assert not clashes, f"equation tags defined in more than one module: {clashes}"
    assert {"BP1", "S1", "L1", "R1", "G1", "FIT1", "FS1"} <= set(defined)
