"""Every DAG file imports fast with the warehouse unreachable, and is well-formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_DAGS = {"customer_lifecycle_daily", "churn_model_weekly"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    manifest = ROOT / "dbt_project" / "target" / "manifest.json"
    assert manifest.exists(), "dbt manifest missing: run `make manifest` (make test does it first)"
    state = tmp_path_factory.mktemp("state")
    env = {
        **os.environ,
        # the warehouse is "stopped": nothing listens on this port, and the probe blocks sockets
        "WAREHOUSE_URL": "postgresql://nobody:nothing@127.0.0.1:9/none",
        "RETENTION_STATE_DIR": str(state),
        "RETENTION_DBT_PROJECT_DIR": str(ROOT / "dbt_project"),
    }
    env.pop("AIRFLOW_HOME", None)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dag_probe.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_dag_file_parses_without_network(probe: dict) -> None:
    assert probe["network_attempts"] == [], "a DAG file opened a connection at parse time"
    for name, info in probe["files"].items():
        assert info["error"] is None, f"{name}: {info['error']}"


def test_every_dag_file_parses_in_under_a_second(probe: dict) -> None:
    """CPU time of parsing the file (Airflow and Cosmos already imported), so that other work on
    the machine cannot make the check flaky; the wall clock is reported alongside."""
    slow = {
        n: f"{i['cpu_seconds']:.2f} s CPU ({i['seconds']:.2f} s wall)"
        for n, i in probe["files"].items()
        if i["cpu_seconds"] >= 1.0
    }
    assert not slow, f"DAG files too slow to parse: {slow}"


def test_expected_dags_exist(probe: dict) -> None:
    found = {dag_id for info in probe["files"].values() for dag_id in info["dags"]}
    assert found >= EXPECTED_DAGS


def test_owner_tags_retries_docs_and_no_cycles(probe: dict) -> None:
    for info in probe["files"].values():
        for dag_id, dag in info["dags"].items():
            assert dag["tags"] and "retention" in dag["tags"], dag_id
            assert dag["owners"] and "airflow" not in dag["owners"], f"{dag_id} has no owner"
            assert min(dag["retries"]) >= 1, f"{dag_id} has a task without retries"
            assert dag["doc_md"], f"{dag_id} has no doc_md"
            assert dag["cycle_free"], f"{dag_id} has a cycle"
            assert dag["catchup"] is False, dag_id


def test_daily_dag_runs_dbt_through_cosmos(probe: dict) -> None:
    daily = probe["files"]["customer_lifecycle_daily.py"]["dags"]["customer_lifecycle_daily"]
    assert daily["n_tasks"] > 8, "the dbt task group should render one task per model"


def test_team_digests_run_after_an_empty_fan_out_but_not_after_a_failure(probe: dict) -> None:
    rules = probe["files"]["customer_lifecycle_daily.py"]["dags"]["customer_lifecycle_daily"]["trigger_rules"]
    # a rerun of a day already sent expands send_batch over nothing (skipped): digests still go out;
    # a failed gate leaves send_batch upstream_failed, and none_failed propagates that
    assert rules["team_digests"] == "none_failed"
    assert rules["send_batch"] == "all_success"
