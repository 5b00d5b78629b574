"""``make run``: from nothing to a finished pipeline run on a demo company.

1. start the embedded PostgreSQL (or check ``WAREHOUSE_URL``);
2. generate a seeded demo company (``RETENTION_DEMO_CUSTOMERS``, default 20k) and load it into
   ``raw`` — on the embedded warehouse the demo schemas are rebuilt each run; on an external
   warehouse that already has customers, its data is used as it is and nothing is generated;
3. migrate Airflow's metadata database (SQLite in the state folder);
4. run the real DAGs in-process with ``dag.test()``: ``customer_lifecycle_daily`` (dbt, quality
   gate, scoring, outreach) then ``churn_model_weekly`` (challenger training);
5. fail loudly unless every task instance succeeded, and print what was built.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from retention.airflow_env import configure
from retention.settings import get_settings

DEMO_SCHEMAS = ("raw", "analytics", "ops", "ground_truth")


class DemoError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


def reset_demo_schemas(url: str) -> None:
    from retention.db import connect

    s = get_settings()
    schemas = [s.raw_schema, s.analytics_schema, s.ops_schema, s.truth_schema]
    with connect(url) as conn:
        for schema in schemas:
            conn.execute(f'drop schema if exists "{schema}" cascade')


def make_demo_company(url: str, as_of: date) -> dict[str, int]:
    from retention.db import connect
    from retention.generator import generate, load_truth
    from retention.loader import load_directory

    s = get_settings()
    out = Path(s.state_dir) / "demo" / f"seed{s.demo_seed}-n{s.demo_customers}-{as_of.isoformat()}"
    if not (out / "customers.parquet").exists():
        _say(f"generating {s.demo_customers} customers (seed {s.demo_seed}) into {out}")
        generate(out, customers=s.demo_customers, seed=s.demo_seed, end_date=as_of)
    report = load_directory(out, url=url)
    with connect(url) as conn:
        load_truth(out, conn)
    return getattr(report, "rows", {}) or {}


def airflow_db_migrate() -> None:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ
    )
    if proc.returncode != 0:
        raise DemoError(f"airflow db migrate failed:\n{proc.stderr[-3000:]}")
    _say(f"airflow metadata database ready ({time.perf_counter() - started:.0f} s)")


EMPTY_FANOUT_OK = frozenset({"send_batch"})


def run_dag(dag_id: str, logical_date: datetime, states_json: str | None = None) -> dict[str, str]:
    """Run one DAG with dag.test() and return {task_id[map_index]: state}; raise unless all succeeded."""
    from airflow.dag_processing.dagbag import DagBag

    s = get_settings()
    bag = DagBag(dag_folder=str(Path(s.dbt_project_dir).parent / "dags"), safe_mode=False)
    if bag.import_errors:
        raise DemoError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise DemoError(f"no DAG named {dag_id}")
    started = time.perf_counter()
    run = dag.test(logical_date=logical_date)
    states = {}
    for ti in run.get_task_instances():
        name = ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
        states[name] = str(ti.state)
    if states_json:
        import json

        path = Path(states_json)
        recorded = json.loads(path.read_text()) if path.exists() else {}
        recorded[dag_id] = states
        path.write_text(json.dumps(recorded, indent=1))
    # an empty fan-out (nothing left to send today, e.g. a rerun of a day already sent) leaves the
    # unexpanded mapped task `skipped`; every other task must succeed
    bad = {
        k: v for k, v in states.items() if v != "success" and not (k in EMPTY_FANOUT_OK and v == "skipped")
    }
    _say(f"{dag_id}: {len(states)} task instances in {time.perf_counter() - started:.0f} s")
    if bad or not states:
        raise DemoError(f"{dag_id} did not succeed; task instances not in success: {bad or 'none ran'}")
    return states


def summary(url: str) -> str:
    from retention.db import connect

    s = get_settings()
    lines = ["", "What was built:"]
    with connect(url) as conn:
        rows = conn.execute(
            """
            select table_schema, table_name
            from information_schema.tables
            where table_schema = any(%s)
            order by 1, 2
            """,
            ([s.raw_schema, s.analytics_schema, s.ops_schema],),
        ).fetchall()
        for schema, table in rows:
            n = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            lines.append(f"  {schema}.{table:40} {n:>10,} rows")
        if any(t == "decision_log" for _, t in rows):
            lines.append("Outreach decisions today:")
            for outcome, n in conn.execute(
                f'select outcome, count(*) from "{s.ops_schema}".decision_log group by 1 order by 2 desc'
            ):
                lines.append(f"  {outcome:28} {n:>8,}")
    state = Path(s.state_dir)
    lines.append(f"File outbox (what would have been sent): {state / 'outbox'}")
    lines.append(f"Team digests: {state / 'digests'}")
    lines.append(f"Data Docs: {state / 'gx' / 'data_docs' / 'index.html'}")
    lines.append(f"Model cards: {state / 'models'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention run-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--skip-data", action="store_true", help="reuse the data already in raw")
    parser.add_argument("--dags", nargs="*", default=["customer_lifecycle_daily", "churn_model_weekly"])
    parser.add_argument("--states-json", help="write every task instance's state to this file")
    args = parser.parse_args(argv)
    s = get_settings()
    today = date.fromisoformat(s.as_of_date) if s.as_of_date else datetime.now(UTC).date()
    os.environ.setdefault("RETENTION_AS_OF", today.isoformat())
    # a demo run should fail at once, not wait out production's retry delays inside dag.test()
    os.environ.setdefault("RETENTION_DAG_RETRIES", "0")
    get_settings.cache_clear()
    configure()
    from retention.warehouse import ensure_warehouse

    started = time.perf_counter()
    try:
        url = ensure_warehouse()
        _say(f"warehouse: {url.split('@')[-1]}")
        if not args.skip_data:
            if s.using_embedded_warehouse:
                reset_demo_schemas(url)
                counts = make_demo_company(url, today)
                _say(f"loaded demo company: {counts}")
            else:
                from retention.db import connect, table_exists

                with connect(url) as conn:
                    has_data = (
                        table_exists(conn, s.raw_schema, "customers")
                        and conn.execute(
                            f'select exists (select 1 from "{s.raw_schema}".customers)'
                        ).fetchone()[0]
                    )
                if has_data:
                    _say("external warehouse already has raw.customers: running on its data")
                else:
                    counts = make_demo_company(url, today)
                    _say(f"loaded demo company into the external warehouse: {counts}")
        airflow_db_migrate()
        logical = datetime(today.year, today.month, today.day, tzinfo=UTC)
        for dag_id in args.dags:
            run_dag(dag_id, logical, states_json=args.states_json)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(url))
    _say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
