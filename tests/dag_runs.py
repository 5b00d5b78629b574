"""Runs of the real DAGs for test_pipeline_integration, started when the session starts.

A DAG run (``retention.cli run-demo`` with ``dag.test()``, in a subprocess: Airflow reads its
configuration at import time) takes minutes of one core, mostly Airflow's and Cosmos' per-task
work. The rest of the suite is one process too, so the runs start in background threads (one per
run, side by side) before the first test, and the other tests go on meanwhile; each integration
test then waits for its run and checks it. (Run one after the other, the second run was still
going minutes after the rest of the suite had finished.)

Each run gets a private copy of the session's company (template clone) and of the dbt project
(the manifest Cosmos loads and the partial-parse file it copies, which the tests running at the
same time rewrite), its own state folder and Cosmos cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 1500


@dataclass(frozen=True)
class Scenario:
    """DAGs to run on a copy of the company, after the SQL in ``prepare``."""

    dags: tuple[str, ...]
    prepare: tuple[str, ...] = ()


SCENARIOS: dict[str, Scenario] = {
    "daily_and_weekly": Scenario(dags=("customer_lifecycle_daily", "churn_model_weekly")),
    # five negative order amounts (a critical expectation) and no scores table: the gate must stop
    # the run before scoring could create one
    "bad_data": Scenario(
        dags=("customer_lifecycle_daily",),
        prepare=(
            "update raw.orders set amount = -10 where order_id in (select order_id from raw.orders limit 5)",
            "drop table if exists analytics.churn_scores",
        ),
    ),
}


@dataclass
class DagRun:
    url: str
    state_dir: Path
    returncode: int
    states: dict[str, dict[str, str]]
    output: str


def _private_project(work: Path) -> Path:
    """A copy of dbt_project (sources, manifest, partial-parse file) beside a link to dags/: the
    demo runner finds the DAG folder next to the project."""
    project = work / "dbt_project"
    shutil.copytree(
        ROOT / "dbt_project",
        project,
        ignore=shutil.ignore_patterns("logs", "run", "compiled", "run_results.json"),
    )
    (work / "dags").symlink_to(ROOT / "dags", target_is_directory=True)
    return project


@dataclass
class UnstartedDagRuns:
    """Stands in when the runs could not start (no company, no database copy): each DAG test
    fails with the cause, the tests that need no DAG run are not affected."""

    error: Exception

    def result(self, name: str) -> DagRun:
        raise RuntimeError(f"DAG run {name} could not start: {self.error!r}") from self.error


@dataclass
class BackgroundDagRuns:
    """Copies the company once per scenario, then runs the scenarios side by side, a thread each."""

    admin_url: str
    company_url: str
    as_of: str
    work: Path
    _pool: ThreadPoolExecutor | None = None
    _futures: dict[str, Future[DagRun]] = field(default_factory=dict)
    _databases: list[str] = field(default_factory=list)
    _running: set[subprocess.Popen[str]] = field(default_factory=set)
    _closing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, names: list[str]) -> None:
        from conftest import clone_database  # loaded by pytest before any fixture runs

        project = _private_project(self.work / "project")
        source = urlsplit(self.company_url).path.lstrip("/")
        urls = {}
        for name in names:
            copy = f"{source}_dag_{name}"
            urls[name] = clone_database(self.admin_url, source, copy)
            self._databases.append(copy)
        self._pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="dag_run")
        for name, url in urls.items():
            self._futures[name] = self._pool.submit(self._run, name, url, project)

    def result(self, name: str) -> DagRun:
        return self._futures[name].result(timeout=RUN_TIMEOUT_S + 60)

    def _run(self, name: str, url: str, project: Path) -> DagRun:
        scenario = SCENARIOS[name]
        with psycopg.connect(url) as conn:
            for statement in scenario.prepare:
                conn.execute(statement)
        state = self.work / name / "state"
        airflow_home = self.work / name / "airflow_home"
        airflow_home.mkdir(parents=True)
        states_file = state / "states.json"
        env = {
            **os.environ,
            "WAREHOUSE_URL": url,
            "RETENTION_STATE_DIR": str(state),
            "RETENTION_AS_OF": self.as_of,
            "RETENTION_DBT_PROJECT_DIR": str(project),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.work / name / "cosmos"),
            "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}",
            "RETENTION_DAG_RETRIES": "0",  # a failing task should fail the test now, not after retry delays
        }
        command = [
            sys.executable, "-m", "retention.cli", "run-demo", "--skip-data",
            "--states-json", str(states_file), "--dags", *scenario.dags,
        ]  # fmt: skip
        with self._lock:  # close() kills what is registered here, and nothing starts after it
            if self._closing:
                raise RuntimeError(f"DAG run {name} not started: the session is ending")
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
            )
            self._running.add(proc)
        with proc:
            try:
                output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                output += f"\n[dag_runs] killed after {RUN_TIMEOUT_S} s"
            finally:
                with self._lock:
                    self._running.discard(proc)
        states = json.loads(states_file.read_text()) if states_file.exists() else {}
        return DagRun(
            url=url, state_dir=state, returncode=proc.returncode, states=states, output=output[-8000:]
        )

    def close(self) -> None:
        """Stop what is still running (a session cut short) and drop the copies."""
        with self._lock:
            self._closing = True
            for proc in self._running:
                proc.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self._databases:
                conn.execute(f'drop database if exists "{name}" with (force)')
