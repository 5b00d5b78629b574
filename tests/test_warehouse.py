"""The embedded warehouse: idempotent start, stale pid recovery, port conflicts, external URL."""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg
import pytest

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
    for _ in range(50):
        if embedded_status(s) != "running":
            break
        import time

        time.sleep(0.1)
    assert pidfile.exists()
    assert embedded_status(s) == "stopped"
    url = start_embedded(s)
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


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
