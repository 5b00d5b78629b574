"""End to end: the real DAGs run with dag.test() on a small generated company in Postgres.

``dag.test()`` does not raise when a task fails, so every task instance's state is asserted.
Each run happens in a subprocess (Airflow reads its configuration at import time) against a
private copy of the generated company.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import COMPANY_AS_OF

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow_home")


def _run_dags(url: str, state: Path, airflow_home: Path, dags: list[str]) -> tuple[int, dict, str]:
    states_file = state / "states.json"
    env = {
        **os.environ,
        "WAREHOUSE_URL": url,
        "RETENTION_STATE_DIR": str(state),
        "RETENTION_AS_OF": COMPANY_AS_OF,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
        "RETENTION_DAG_RETRIES": "0",  # a failing task should fail the test now, not after retry delays
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retention.cli",
            "run-demo",
            "--skip-data",
            "--states-json",
            str(states_file),
            "--dags",
            *dags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        cwd=ROOT,
    )
    states = json.loads(states_file.read_text()) if states_file.exists() else {}
    return proc.returncode, states, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_daily_and_weekly_dags_succeed_end_to_end(
    company_copy: str, tmp_path: Path, airflow_home: Path
) -> None:
    rc, states, output = _run_dags(
        company_copy, tmp_path / "state", airflow_home, ["customer_lifecycle_daily", "churn_model_weekly"]
    )
    assert rc == 0, output
    daily = states["customer_lifecycle_daily"]
    assert all(state == "success" for state in daily.values()), daily
    assert all(state == "success" for state in states["churn_model_weekly"].values())
    assert any(t.startswith("dbt.") for t in daily), "dbt models should run as Cosmos tasks"
    for task in ("prepare_raw", "quality_gate", "ensure_champion", "score", "plan_outreach", "team_digests"):
        assert task in daily, task
    assert any(t.startswith("send_batch[") for t in daily), "outreach should fan out by batch"
    with psycopg.connect(company_copy) as conn:
        customers = conn.execute("select count(*) from analytics.dim_customers").fetchone()[0]
        scored = conn.execute(
            "select count(*) from analytics.churn_scores where as_of_date = %s", (COMPANY_AS_OF,)
        ).fetchone()[0]
        decisions = conn.execute("select count(*) from ops.decision_log").fetchone()[0]
        sent = conn.execute("select count(*) from ops.outbox where state = 'sent'").fetchone()[0]
    assert customers > 0 and scored == customers
    assert decisions > 0 and sent > 0
    assert list((tmp_path / "state" / "outbox").rglob("*.json")), "the file outbox should hold the requests"


def test_bad_data_stops_the_run_before_scoring_and_outreach(
    company_copy: str, tmp_path: Path, airflow_home: Path
) -> None:
    with psycopg.connect(company_copy) as conn:
        conn.execute(
            "update raw.orders set amount = -10 where order_id in (select order_id from raw.orders limit 5)"
        )
        conn.execute("drop table if exists analytics.churn_scores")
    rc, states, output = _run_dags(
        company_copy, tmp_path / "state", airflow_home, ["customer_lifecycle_daily"]
    )
    assert rc != 0
    daily = states["customer_lifecycle_daily"]
    assert daily["quality_gate"] == "failed", daily
    for task in ("ensure_champion", "score", "plan_outreach", "team_digests"):
        assert daily[task] == "upstream_failed", (task, daily[task])
    with psycopg.connect(company_copy) as conn:
        failing = conn.execute(
            "select suite, column_name from ops.gate_results"
            " where outcome = 'failed' and severity = 'critical'"
        ).fetchall()
        assert ("raw.orders", "amount") in failing, (failing, output)
        queued = conn.execute(
            "select count(*) from ops.outbox" if _exists(conn, "ops", "outbox") else "select 0"
        ).fetchone()[0]
        assert not _exists(conn, "analytics", "churn_scores")
    assert queued == 0, "nothing may be queued when the gate fails"


def _exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",)).fetchone()[0]
