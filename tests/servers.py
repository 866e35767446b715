"""Real servers a test starts for itself: a PgBouncer, and private PostgreSQL clusters.

Both are found on the machine (``pgbouncer``; PostgreSQL's ``initdb``/``pg_ctl``) or the test
that needs them skips, saying what to install. Both refuse to run as root, so as root they run
as the ``postgres`` OS user; their directories are made for that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
PSQL = shutil.which("psql")


def _pg_bindir() -> Path | None:
    """A directory with PostgreSQL's server binaries: initdb's on PATH, else Debian's versioned
    directory (newest)."""
    candidates = [Path(p).parent for p in [shutil.which("initdb")] if p]
    candidates += [Path(p).parent for p in sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name), reverse=True)]
    needed = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
    return next((d for d in candidates if all((d / n).exists() for n in needed)), None)


PG_BIN = _pg_bindir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> list[str]:
    """``runuser -u postgres --`` when we are root (the servers will not run as root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def private_dir(prefix: str) -> Path:
    """A temporary directory the server's OS user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _wait_for_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    detail = log.read_text() if log and log.exists() else ""
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s\n{detail}")


class PgBouncer:
    """A PgBouncer in transaction pooling mode in front of ``upstream_dsn``'s server, otherwise
    with its default configuration (no ``ignore_startup_parameters``)."""

    def __init__(self, upstream_dsn: str) -> None:
        parts = urlsplit(upstream_dsn)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.port = free_port()
        self.dir = private_dir("pgqueue-pgbouncer-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        ini = self.dir / "pgbouncer.ini"
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = host={self.upstream_host} port={self.upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"admin_users = {self.user}\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(ini, "postgres")
        self._proc = subprocess.Popen([*_as_server_user(), str(PGBOUNCER), str(ini)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, 20, "pgbouncer", self.dir / "pgbouncer.log")
        return self

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on PgBouncer's admin console (simple query protocol only: psql)."""
        out = subprocess.run(
            [str(PSQL), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-X",
             "--csv", "-c", f"SHOW {what}", "pgbouncer"],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout.splitlines()
        header = out[0].split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in out[1:]]

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """A private PostgreSQL cluster in a temporary directory, on a free port."""

    def __init__(self, name: str, datadir: Path | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.dir = datadir or private_dir(f"pgqueue-{name}-")
        self.data = self.dir / "data"

    def _run(self, program: str, *args: str, timeout: float = 60) -> str:
        result = subprocess.run([*_as_server_user(), str(PG_BIN / program), *args],
                                capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def initdb(self, **settings: str) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.configure(**settings)
        return self

    def configure(self, **settings: str) -> None:
        lines = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                 f"unix_socket_directories = '{self.dir}'", "fsync = off",
                 *(f"{k} = '{v}'" for k, v in settings.items())]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n" + "\n".join(lines) + "\n")

    def start(self) -> Cluster:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def standby_of(self, primary: Cluster) -> Cluster:
        """A streaming standby of ``primary`` (``pg_basebackup -R``), not started yet."""
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
                  f"--label={self.name}", timeout=120)
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"\nprimary_conninfo = 'host=127.0.0.1 port={primary.port} user=postgres "
                       f"application_name={self.name}'\n")
        # Promoted, it must not wait for a standby of its own.
        self.configure(synchronous_standby_names="")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text() if path.exists() else ""

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
