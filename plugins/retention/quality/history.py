"""The gate's history in the warehouse: ``ops.gate_runs`` (one row per gate run) and
``ops.gate_results`` (one row per expectation evaluated, skipped or missing table).

The volume check compares a table's row count with the *last accepted* count: the newest
``gate_results`` row of that table whose row-count expectation passed. A run that failed on a volume
drop therefore never becomes the new baseline; ``retention gate --accept-volume`` records the
current counts as accepted after a deliberate shrink (e.g. a purge).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

from retention.settings import get_settings

DDL = """
create schema if not exists {ops};

create table if not exists {ops}.gate_runs (
    run_id            text primary key,
    stage             text not null,
    status            text not null
                      check (status in ('passed', 'passed_with_warnings', 'failed', 'error', 'baseline')),
    as_of_date        date,
    started_at        timestamptz not null,
    finished_at       timestamptz not null,
    critical_failures integer not null default 0,
    warnings          integer not null default 0,
    skipped           integer not null default 0,
    data_docs_path    text,
    message           text
);
create index if not exists gate_runs_started_idx on {ops}.gate_runs (started_at);

create table if not exists {ops}.gate_results (
    run_id            text not null references {ops}.gate_runs (run_id) on delete cascade,
    seq               integer not null,
    suite             text not null,
    table_name        text not null,
    expectation_type  text not null,
    column_name       text,
    check_class       text not null,
    severity          text not null check (severity in ('critical', 'warning')),
    outcome           text not null check (outcome in ('passed', 'failed', 'error', 'skipped')),
    observed          text,
    row_count         bigint,
    message           text not null,
    details           jsonb not null default '{{}}'::jsonb,
    recorded_at       timestamptz not null default now(),
    primary key (run_id, seq)
);
create index if not exists gate_results_volume_idx
    on {ops}.gate_results (table_name, expectation_type, outcome, recorded_at);
"""

ROW_COUNT_TYPE = "expect_table_row_count_to_be_between"
#: pseudo expectation type recorded when a suite's table does not exist
MISSING_TABLE_TYPE = "table_exists"


@dataclass(frozen=True)
class ResultRow:
    suite: str
    table_name: str
    expectation_type: str
    column_name: str | None
    check_class: str
    severity: str
    outcome: str
    observed: str | None
    row_count: int | None
    message: str
    details: dict[str, Any]


def _ops() -> str:
    return f'"{get_settings().ops_schema}"'


def ensure_gate_tables(conn: psycopg.Connection) -> None:
    """Create ``ops.gate_runs`` and ``ops.gate_results`` if missing (idempotent)."""
    conn.execute(DDL.format(ops=_ops()))


@dataclass(frozen=True)
class Baseline:
    row_count: int
    run_id: str
    recorded_at: datetime


def last_accepted_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, Baseline]:
    """Newest accepted row count of each table (``schema.table`` names as recorded)."""
    if not tables:
        return {}
    rows = conn.execute(
        f"""
        select distinct on (table_name) table_name, row_count, run_id, recorded_at
        from {_ops()}.gate_results
        where expectation_type = %s and outcome = 'passed' and row_count is not null
          and table_name = any(%s)
        order by table_name, recorded_at desc, run_id desc
        """,
        (ROW_COUNT_TYPE, tables),
    ).fetchall()
    return {r[0]: Baseline(int(r[1]), r[2], r[3]) for r in rows}


def record_run(
    conn: psycopg.Connection,
    *,
    run_id: str,
    stage: str,
    status: str,
    as_of: date | None,
    started_at: datetime,
    finished_at: datetime,
    results: list[ResultRow],
    data_docs_path: str | None,
    message: str | None,
) -> None:
    """Write one run and all its results (the caller's transaction makes it all-or-nothing)."""
    critical = sum(1 for r in results if r.severity == "critical" and r.outcome in ("failed", "error"))
    warnings = sum(1 for r in results if r.severity == "warning" and r.outcome in ("failed", "error"))
    skipped = sum(1 for r in results if r.outcome == "skipped")
    # a missing optional table is recorded as a skipped suite *and* counts as a warning
    warnings += sum(1 for r in results if r.outcome == "skipped" and r.expectation_type == MISSING_TABLE_TYPE)
    conn.execute(
        f"""insert into {_ops()}.gate_runs (run_id, stage, status, as_of_date, started_at, finished_at,
                critical_failures, warnings, skipped, data_docs_path, message)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            run_id,
            stage,
            status,
            as_of,
            started_at,
            finished_at,
            critical,
            warnings,
            skipped,
            data_docs_path,
            message,
        ),
    )
    with conn.cursor() as cur:
        cur.executemany(
            f"""insert into {_ops()}.gate_results (run_id, seq, suite, table_name, expectation_type,
                    column_name, check_class, severity, outcome, observed, row_count, message, details)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)""",
            [
                (
                    run_id,
                    i,
                    r.suite,
                    r.table_name,
                    r.expectation_type,
                    r.column_name,
                    r.check_class,
                    r.severity,
                    r.outcome,
                    r.observed,
                    r.row_count,
                    r.message,
                    json.dumps(r.details, default=str),
                )
                for i, r in enumerate(results, start=1)
            ],
        )
