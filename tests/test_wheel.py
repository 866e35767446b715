"""The wheel carries the migrations, which live outside the package in the repository (alembic/).

The wheel is built from a copy of just what packaging reads, so nothing left in the working tree
(``build/``, an editable install) can leak into it, and installed into a fresh virtualenv outside
the repository. Its dependencies come from this test environment through a ``.pth`` file, which keeps
the test offline and quick; pgqueue itself is imported from the wheel, and the test checks that.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import asyncpg
import pytest

from .helpers import ROOT, copy_sources

pytestmark = pytest.mark.slow


def _run(*command: str | Path, cwd: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = copy_sources(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, cwd=out)
    [built] = out.glob("pgqueue-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtualenv with the wheel installed (and nothing else of pgqueue's)."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "-q", wheel, cwd=home)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=home).strip())
    ours = sysconfig.get_paths()
    (site / "_test_dependencies.pth").write_text(f"{ours['purelib']}\n{ours['platlib']}\n")
    return python


def test_the_wheel_ships_every_module_and_the_migration_scripts(wheel: Path) -> None:
    """pyproject.toml lists the packages by hand (discovery cannot see the mapped alembic/), so a
    new package under pgqueue/ must be listed there too; this catches one that is not."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(ROOT).as_posix() for path in (ROOT / "pgqueue").rglob("*.py")
    } | {
        "pgqueue/_alembic/" + path.relative_to(ROOT / "alembic").as_posix()
        for path in (ROOT / "alembic").rglob("*") if path.suffix in (".py", ".mako")
    }
    assert "pgqueue/_alembic/versions/0001_initial.py" in expected
    assert expected - names == set()


def test_migrate_from_the_installed_wheel(
    installed: Path, empty_database_url: str, tmp_path: Path
) -> None:
    where = _run(
        installed, "-c", "import pgqueue.migrate as m; print(m.__file__, m.script_location())",
        cwd=tmp_path,
    )
    home = installed.parent.parent
    assert all(Path(path).is_relative_to(home) for path in where.split()), where

    out = _run(installed, "-m", "pgqueue", "migrate", "--dsn", empty_database_url, cwd=tmp_path)
    assert "up to date" in out

    async def tables() -> set[str]:
        conn = await asyncpg.connect(empty_database_url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'pgqueue'")
            return {row["tablename"] for row in rows}
        finally:
            await conn.close()

    assert {"jobs", "job_logs", "workers", "queues", "alembic_version"} <= asyncio.run(tables())
