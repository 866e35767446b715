"""The documentation site builds with ``mkdocs build --strict``: every page in the nav, every
link between pages and every anchor resolves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("welcome-email", "limits", "workflows", "operating", "testing", "deploying",
                 "upgrading", "past-one-machine"):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert pages and all(f": {name}" in nav for name in pages), pages
