"""The house rules that keep pgqueue easy to change: imports run one way, modules stay small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT

MAX_LINES = 400


def test_imports_keep_to_the_layers_in_pyproject() -> None:
    """The import-linter contract: web and CLI on top, ``PgQueue``, the worker, tasks, then the
    pieces they share, ``job``/``settings``/``messages`` at the bottom; no loops."""
    beside_python = Path(sys.executable).parent / "lint-imports"
    lint_imports = str(beside_python) if beside_python.exists() else shutil.which("lint-imports")
    assert lint_imports, "import-linter is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "pgqueue").rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}
