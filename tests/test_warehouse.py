"""The embedded warehouse: idempotent start, stale pid recovery, port conflicts, external URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from retention import warehouse
from retention.settings import PROJECT_ROOT, load_settings
from retention.warehouse import (
    WarehouseError,
    embedded_paths,
    embedded_status,
    ensure_warehouse,
    start_embedded,
    stop_embedded,
    warehouse_url,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scratch_settings(tmp_path_factory: pytest.TempPathFactory):
    """A second embedded server in its own state folder and port (the shared one is untouched)."""
    state = tmp_path_factory.mktemp("state")
    s = load_settings({"RETENTION_STATE_DIR": str(state), "RETENTION_PG_PORT": str(_free_port())})
    yield s
    stop_embedded(s)


@pytest.mark.integration
def test_start_is_idempotent_and_reachable(scratch_settings) -> None:
    s = scratch_settings
    url = start_embedded(s)
    assert url == warehouse_url(s)
    assert start_embedded(s) == url  # second start: no-op
    assert embedded_status(s) == "running"
    with psycopg.connect(url) as conn:
        assert conn.execute("show server_version").fetchone()[0].startswith("16")


@pytest.mark.integration
def test_stale_pid_file_is_recovered(scratch_settings) -> None:
    s = scratch_settings
    start_embedded(s)
    pidfile = embedded_paths(s).pidfile
    # simulate a crash: kill the postmaster hard, leaving postmaster.pid behind
    pid = int(pidfile.read_text().splitlines()[0])
    subprocess.run(["kill", "-9", str(pid)], check=True)
    deadline = time.monotonic() + 5
    while embedded_status(s) == "running" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pidfile.exists()
    assert embedded_status(s) == "stopped"
    url = start_embedded(s)
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.integration
def test_a_dying_postmaster_is_waited_for_before_its_port_is_judged(
    scratch_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux frees a killed process's memory, and so its /proc cmdline, before it closes its
    listening socket.  A start in that window must wait for the old postmaster to finish
    dying, not report its own old port as taken by another program (a CI failure)."""
    s = scratch_settings
    start_embedded(s)
    stop_embedded(s)
    pidfile = embedded_paths(s).pidfile
    pidfile.write_text(f"{os.getpid()}\n")  # a pid that is not postgres: the file is stale
    old_socket = socket.socket()
    old_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may be in TIME_WAIT
    old_socket.bind(("127.0.0.1", s.embedded_port))
    old_socket.listen()
    polls: list[int] = []

    def dying_for_five_polls(pid: int) -> bool:
        assert pid == os.getpid()
        polls.append(pid)
        if len(polls) < 5:
            return True
        old_socket.close()  # the dead postmaster's files are closed once it is a zombie
        return False

    monkeypatch.setattr(warehouse, "_is_exiting", dying_for_five_polls)
    try:
        url = start_embedded(s)
    finally:
        old_socket.close()
    assert len(polls) == 5
    assert not pidfile.read_text().startswith(f"{os.getpid()}\n")
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_is_exiting_is_false_for_live_gone_zombie_and_kernel_processes() -> None:
    assert not warehouse._is_exiting(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    deadline = time.monotonic() + 5
    while "State:\tZ" not in Path(f"/proc/{child.pid}/status").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not warehouse._is_exiting(child.pid)  # a zombie: its files are closed
    child.wait()
    assert not warehouse._is_exiting(child.pid)  # gone
    assert not warehouse._is_exiting(2)  # kthreadd: a kernel thread, empty cmdline, never exits


@pytest.mark.integration
def test_port_in_use_gives_a_clear_error(tmp_path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = load_settings({"RETENTION_STATE_DIR": str(tmp_path), "RETENTION_PG_PORT": str(port)})
        with pytest.raises(WarehouseError, match=f"port {port} on 127.0.0.1 is in use"):
            start_embedded(s)
    assert embedded_status(s) == "stopped"


def test_external_warehouse_url_is_used_and_checked() -> None:
    s = load_settings({"WAREHOUSE_URL": f"postgresql://u:p@127.0.0.1:{_free_port()}/nowhere"})
    assert warehouse_url(s).endswith("/nowhere")
    assert not s.using_embedded_warehouse
    with pytest.raises(WarehouseError, match="WAREHOUSE_URL is set but the server cannot be reached"):
        ensure_warehouse(s)


def test_cli_url_and_bad_action() -> None:
    env = {"PYTHONPATH": f"{PROJECT_ROOT / 'plugins'}:{PROJECT_ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "retention.warehouse", "url"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.startswith("postgresql://")
    bad = subprocess.run(
        [sys.executable, "-m", "retention.warehouse", "explode"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
