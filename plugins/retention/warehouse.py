"""The warehouse: an existing Postgres (``WAREHOUSE_URL``) or the embedded PostgreSQL 16.

The embedded server comes from the ``pgserver`` package (its bundled binaries), runs as a
daemon with its data directory under the state folder and listens on loopback TCP only, so
Airflow, dbt and Cosmos reach it like any other server.  Every operation is idempotent:
``start`` on a running server is a no-op, a stale ``postmaster.pid`` is recovered, and a port
held by some other program gives a clear error instead of a hang.

CLI: ``python -m retention.warehouse start|stop|status|url``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from retention.settings import Settings, get_settings

EMBEDDED_USER = "retention"
EMBEDDED_PASSWORD = (
    "retention"  # loopback only, trust-equivalent dev credential; production uses WAREHOUSE_URL
)
_OS_USER_WHEN_ROOT = "pgserver"  # postgres refuses to run as root


class WarehouseError(RuntimeError):
    """The warehouse cannot be started, reached or used; the message says why and what to do."""


@dataclass(frozen=True)
class EmbeddedPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"


def embedded_paths(settings: Settings | None = None) -> EmbeddedPaths:
    s = settings or get_settings()
    return EmbeddedPaths(Path(s.state_dir) / "pg")


def warehouse_url(settings: Settings | None = None) -> str:
    """The URL every component uses: ``WAREHOUSE_URL`` or the embedded server's."""
    s = settings or get_settings()
    if s.warehouse_url:
        return s.warehouse_url.replace("postgres://", "postgresql://", 1)
    return f"postgresql://{EMBEDDED_USER}:{EMBEDDED_PASSWORD}@127.0.0.1:{s.embedded_port}/{s.embedded_db}"


def _bin(name: str) -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH  # imported lazily: only the embedded path needs it

    return POSTGRES_BIN_PATH / name


def _run_kwargs() -> dict:
    if os.geteuid() == 0:
        return {"user": _OS_USER_WHEN_ROOT}
    return {}


def _prepare_permissions(paths: EmbeddedPaths) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(_OS_USER_WHEN_ROOT)
    entry = pwd.getpwnam(_OS_USER_WHEN_ROOT)
    paths.root.mkdir(parents=True, exist_ok=True)
    ensure_prefix_permissions(paths.root)
    ensure_prefix_permissions(_bin("postgres"))
    ensure_folder_permissions(_bin("postgres").parent, 0o055)
    ensure_folder_permissions(_bin("postgres").parent.parent / "lib", 0o044)
    os.chown(paths.root, entry.pw_uid, entry.pw_gid)
    if paths.data.exists():
        os.chown(paths.data, entry.pw_uid, entry.pw_gid)


def _pid_from_file(paths: EmbeddedPaths) -> int | None:
    try:
        first = paths.pidfile.read_text().splitlines()[0].strip()
        return int(first)
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _process_is_postgres(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return cmdline.endswith(b"postgres")


def _is_exiting(pid: int) -> bool:
    """The process is dying but has not closed its files yet.

    Linux releases a process's memory, and with it ``/proc/<pid>/cmdline``, before it closes
    its file descriptors; only then does it become a zombie.  A postmaster killed with
    ``kill -9`` therefore stops looking like postgres while its listening socket is still open.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    state = fields.get("State", "").split()[:1]
    kernel_thread = pid == 2 or fields.get("PPid", "").strip() == "2"  # empty cmdline, never exits
    return cmdline == b"" and state not in (["Z"], ["X"]) and not kernel_thread


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    """Wait until a dying process has closed its files (bounded; a live process is not waited for)."""
    deadline = time.monotonic() + timeout_s
    while _is_exiting(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def embedded_status(settings: Settings | None = None) -> str:
    """``running``, ``stopped`` or ``not-initialised``."""
    paths = embedded_paths(settings)
    if not (paths.data / "PG_VERSION").exists():
        return "not-initialised"
    pid = _pid_from_file(paths)
    if pid is not None and _process_is_postgres(pid):
        return "running"
    return "stopped"


def _initdb(paths: EmbeddedPaths) -> None:
    paths.data.mkdir(parents=True, exist_ok=True)
    _prepare_permissions(paths)
    pwfile = paths.root / ".pwfile"
    pwfile.write_text(EMBEDDED_PASSWORD + "\n")
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(_OS_USER_WHEN_ROOT)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            [
                str(_bin("initdb")),
                "-D",
                str(paths.data),
                "-U",
                EMBEDDED_USER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            text=True,
            **_run_kwargs(),
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(paths.data, ignore_errors=True)  # never leave a half-initialised cluster behind
        raise WarehouseError(f"initdb failed for {paths.data}: {exc.stderr.strip()}") from None
    finally:
        pwfile.unlink(missing_ok=True)


def start_embedded(settings: Settings | None = None, timeout_s: float = 60) -> str:
    """Start the embedded server if it is not running; return its URL."""
    s = settings or get_settings()
    paths = embedded_paths(s)
    if not (paths.data / "PG_VERSION").exists():
        _initdb(paths)
    else:
        _prepare_permissions(paths)
    status = embedded_status(s)
    if status == "running":
        _ensure_database(s)
        return warehouse_url(s)
    if paths.pidfile.exists():  # stale: the process is gone or dying (crash, reboot, kill -9)
        stale_pid = _pid_from_file(paths)
        if stale_pid is not None:
            _wait_for_exit(stale_pid, timeout_s=10)  # else its port still looks taken
        paths.pidfile.unlink()
    if _port_open(s.embedded_port):
        raise WarehouseError(
            f"port {s.embedded_port} on 127.0.0.1 is in use by another program; stop it or set "
            f"RETENTION_PG_PORT to a free port (or WAREHOUSE_URL to use an existing server)"
        )
    # A local, single-node, rebuildable warehouse: no fsync, and the minimal WAL level (no
    # replication or archiving to feed), with which PostgreSQL writes no WAL for a table created
    # in the same transaction (every dbt table build: CREATE TABLE AS and its indexes). A
    # WAREHOUSE_URL server keeps its own durability settings.
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={s.embedded_port} -c unix_socket_directories='' "
        "-c max_connections=100 -c shared_buffers=256MB -c work_mem=64MB -c maintenance_work_mem=512MB "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB "
        "-c wal_level=minimal -c max_wal_senders=0 -c checkpoint_timeout=30min -c jit=off"
    )
    proc = subprocess.run(
        [
            str(_bin("pg_ctl")),
            "-D",
            str(paths.data),
            "-l",
            str(paths.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
        ],
        capture_output=True,
        text=True,
        **_run_kwargs(),
    )
    if proc.returncode != 0:
        tail = ""
        if paths.log.exists():
            tail = "\n".join(paths.log.read_text(errors="replace").splitlines()[-15:])
        raise WarehouseError(f"embedded PostgreSQL did not start: {proc.stderr.strip()}\n{tail}")
    _ensure_database(s)
    return warehouse_url(s)


def stop_embedded(settings: Settings | None = None) -> bool:
    """Stop the embedded server; ``True`` if it was running."""
    s = settings or get_settings()
    paths = embedded_paths(s)
    if embedded_status(s) != "running":
        if paths.pidfile.exists():
            paths.pidfile.unlink()
        return False
    subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(paths.data), "-m", "fast", "-w", "stop"],
        check=True,
        capture_output=True,
        text=True,
        **_run_kwargs(),
    )
    return True


def _ensure_database(s: Settings) -> None:
    import psycopg

    admin = f"postgresql://{EMBEDDED_USER}:{EMBEDDED_PASSWORD}@127.0.0.1:{s.embedded_port}/postgres"
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute(
                    "select 1 from pg_database where datname = %s", (s.embedded_db,)
                ).fetchone()
                if not exists:
                    conn.execute(f'create database "{s.embedded_db}"')
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise WarehouseError(f"embedded PostgreSQL is not accepting connections: {exc}") from None
            time.sleep(0.5)


def ensure_warehouse(settings: Settings | None = None) -> str:
    """Make the warehouse reachable: start the embedded one when no WAREHOUSE_URL is set."""
    s = settings or get_settings()
    if s.warehouse_url:
        import psycopg

        try:
            with psycopg.connect(s.warehouse_url, connect_timeout=10) as conn:
                conn.execute("select 1")
        except psycopg.OperationalError as exc:
            raise WarehouseError(f"WAREHOUSE_URL is set but the server cannot be reached: {exc}") from None
        return warehouse_url(s)
    return start_embedded(s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention warehouse", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)
    s = get_settings()
    try:
        if args.action == "url":
            print(warehouse_url(s))
        elif s.warehouse_url:
            if args.action == "start":
                ensure_warehouse(s)
            print(f"external warehouse (WAREHOUSE_URL): nothing to {args.action}; reachable")
        elif args.action == "start":
            print(f"embedded PostgreSQL running at {start_embedded(s).split('@')[-1]}")
        elif args.action == "stop":
            print("stopped" if stop_embedded(s) else "was not running")
        else:
            status = embedded_status(s)
            print(status)
            return 0 if status == "running" else 3
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
