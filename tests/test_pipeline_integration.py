"""End to end: the real DAGs run with dag.test() on a small generated company in Postgres.

``dag.test()`` does not raise when a task fails, so every task instance's state is asserted.
The runs (tests/dag_runs.py: a subprocess each, against a private copy of the generated company)
start in the background when the session starts; each test waits for its run and checks it.
"""

from __future__ import annotations

import psycopg
import pytest
from conftest import COMPANY_AS_OF
from dag_runs import BackgroundDagRuns, UnstartedDagRuns

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.dag_run("daily_and_weekly")
def test_daily_and_weekly_dags_succeed_end_to_end(dag_runs: BackgroundDagRuns | UnstartedDagRuns) -> None:
    run = dag_runs.result("daily_and_weekly")
    rc, states, output = run.returncode, run.states, run.output
    assert rc == 0, output
    daily = states["customer_lifecycle_daily"]
    assert all(state == "success" for state in daily.values()), daily
    assert all(state == "success" for state in states["churn_model_weekly"].values())
    assert any(t.startswith("dbt.") for t in daily), "dbt models should run as Cosmos tasks"
    for task in ("prepare_raw", "quality_gate", "ensure_champion", "score", "plan_outreach", "team_digests"):
        assert task in daily, task
    assert any(t.startswith("send_batch[") for t in daily), "outreach should fan out by batch"
    with psycopg.connect(run.url) as conn:
        customers = conn.execute("select count(*) from analytics.dim_customers").fetchone()[0]
        scored = conn.execute(
            "select count(*) from analytics.churn_scores where as_of_date = %s", (COMPANY_AS_OF,)
        ).fetchone()[0]
        decisions = conn.execute("select count(*) from ops.decision_log").fetchone()[0]
        sent = conn.execute("select count(*) from ops.outbox where state = 'sent'").fetchone()[0]
    assert customers > 0 and scored == customers
    assert decisions > 0 and sent > 0
    assert list((run.state_dir / "outbox").rglob("*.json")), "the file outbox should hold the requests"


@pytest.mark.dag_run("bad_data")
def test_bad_data_stops_the_run_before_scoring_and_outreach(
    dag_runs: BackgroundDagRuns | UnstartedDagRuns,
) -> None:
    # the scenario sets five order amounts negative and drops the scores table before the run
    run = dag_runs.result("bad_data")
    rc, states, output = run.returncode, run.states, run.output
    assert rc != 0
    daily = states["customer_lifecycle_daily"]
    assert daily["quality_gate"] == "failed", daily
    for task in ("ensure_champion", "score", "plan_outreach", "team_digests"):
        assert daily[task] == "upstream_failed", (task, daily[task])
    with psycopg.connect(run.url) as conn:
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
