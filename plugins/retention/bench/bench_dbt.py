"""Benchmark of the dbt build (``dbt build``: models, tests, unit tests and the stage snapshot).

A seeded company (``retention.generator``) is loaded (``retention.loader``) into a scratch database
that is created and dropped here.  The rows of the last day before the end date are held back
(moved to a side schema; subscriptions cancelled that day are put back to live), then:

1. full build: ``dbt build --full-refresh`` as of the day before the end date;
2. one new day: the held-back rows are inserted (fresh ``_loaded_at``, cancellations restored)
   and ``dbt build`` runs as of the end date -- the daily incremental run.

Timings per node come from the run's ``run_results.json`` (a private target path, so parallel
dbt commands in the project do not interfere).  Sizes: quick 5k customers; full 100k and 1M.
Targets: full build of 1M customers (~50M usage events) in 10 minutes, one day in 2 minutes, on
2 cores.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from retention.db import url_with_database

END_DATE = date(2026, 6, 30)
SEED = 11
TARGET_FULL_S = 600.0
TARGET_DAY_S = 120.0
HOLD_SCHEMA = "bench_hold"

#: raw table -> (timestamp column of "when it happened", join to hold a child table by its parent)
_DAY_COLUMNS: dict[str, str] = {
    "customers": "signup_at",
    "orders": "ordered_at",
    "payments": "attempted_at",
    "usage_events": "occurred_at",
    "support_tickets": "opened_at",
    "cancellation_feedback": "submitted_at",
    "subscriptions": "started_at",
}


@dataclass
class DbtRun:
    seconds: float
    nodes: list[tuple[str, str, float]] = field(default_factory=list)  # (unique_id, status, seconds)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # load average (1, 5, 15 min) when it ended

    def slowest(self, k: int = 8) -> list[tuple[str, str, float]]:
        return sorted(self.nodes, key=lambda n: -n[2])[:k]


@dataclass
class SizeResult:
    customers: int
    rows: dict[str, int]
    generate_s: float
    load_s: float
    full: DbtRun
    day: DbtRun
    held_rows: int
    materializations: dict[str, str]
    indexes: dict[str, list[str]]
    vacuum_s: float = 0.0  # VACUUM (ANALYZE) between the full build and the new day (not timed)


def _admin_url() -> str:
    from retention.warehouse import ensure_warehouse

    return url_with_database(ensure_warehouse(), "postgres")


def _hold_last_day(conn: psycopg.Connection, raw: str, day: date) -> int:
    """Move the rows of ``day`` (UTC) out of raw into HOLD_SCHEMA; return how many were held."""
    held = 0
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(HOLD_SCHEMA)))
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(HOLD_SCHEMA)))
    cutoff = f"{day.isoformat()} 00:00:00+00"
    for table, column in _DAY_COLUMNS.items():
        src = sql.Identifier(raw, table)
        dst = sql.Identifier(HOLD_SCHEMA, table)
        cond = sql.SQL("{} >= {}").format(sql.Identifier(column), sql.Literal(cutoff))
        conn.execute(sql.SQL("create table {} as select * from {} where {}").format(dst, src, cond))
        cur = conn.execute(sql.SQL("delete from {} where {}").format(src, cond))
        held += cur.rowcount
    # order lines of held orders
    conn.execute(
        sql.SQL(
            "create table {hold}.order_lines as select l.* from {raw}.order_lines as l"
            " where l.order_id in (select order_id from {hold}.orders)"
        ).format(hold=sql.Identifier(HOLD_SCHEMA), raw=sql.Identifier(raw))
    )
    cur = conn.execute(
        sql.SQL(
            "delete from {raw}.order_lines where order_id in (select order_id from {hold}.orders)"
        ).format(hold=sql.Identifier(HOLD_SCHEMA), raw=sql.Identifier(raw))
    )
    held += cur.rowcount
    # cancellations of that day: live again until the new day arrives
    conn.execute(
        sql.SQL(
            "create table {hold}.cancellations as select subscription_id, cancelled_at, cancel_reason"
            " from {raw}.subscriptions where cancelled_at >= {cutoff}"
        ).format(hold=sql.Identifier(HOLD_SCHEMA), raw=sql.Identifier(raw), cutoff=sql.Literal(cutoff))
    )
    cur = conn.execute(
        sql.SQL(
            "update {raw}.subscriptions set cancelled_at = null, cancel_reason = null where cancelled_at >= {cutoff}"
        ).format(raw=sql.Identifier(raw), cutoff=sql.Literal(cutoff))
    )
    held += cur.rowcount
    return held


def _add_held_day(conn: psycopg.Connection, raw: str) -> None:
    """Deliver the held-back day: insert its rows with a fresh _loaded_at, restore cancellations."""
    for table in [*_DAY_COLUMNS, "order_lines"]:
        cols = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s"
                " order by ordinal_position",
                (raw, table),
            )
        ]
        names = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        values = sql.SQL(", ").join(
            sql.SQL("now()") if c == "_loaded_at" else sql.Identifier(c) for c in cols
        )
        conn.execute(
            sql.SQL("insert into {} ({}) select {} from {}").format(
                sql.Identifier(raw, table), names, values, sql.Identifier(HOLD_SCHEMA, table)
            )
        )
    conn.execute(
        sql.SQL(
            "update {raw}.subscriptions as s set cancelled_at = c.cancelled_at, cancel_reason = c.cancel_reason,"
            " _loaded_at = now() from {hold}.cancellations as c where s.subscription_id = c.subscription_id"
        ).format(raw=sql.Identifier(raw), hold=sql.Identifier(HOLD_SCHEMA))
    )
    conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(HOLD_SCHEMA)))


def _dbt(args: list[str], url: str, as_of: date, target: Path) -> DbtRun:
    from retention.dbt_runner import run_dbt

    started = time.perf_counter()
    run_dbt(
        [*args, "--target-path", str(target), "--log-path", str(target / "logs")],
        url=url,
        extra_env={"RETENTION_AS_OF": as_of.isoformat()},
    )
    seconds = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())
    nodes = [(r["unique_id"], r["status"], float(r.get("execution_time") or 0.0)) for r in results["results"]]
    return DbtRun(seconds=seconds, nodes=nodes, load=os.getloadavg())


def _manifest_facts(target: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    manifest = json.loads((target / "manifest.json").read_text())
    materializations: dict[str, str] = {}
    indexes: dict[str, list[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] not in {"model", "snapshot"} or node["package_name"] != "retention":
            continue
        config: dict[str, Any] = node["config"]
        materializations[node["name"]] = config.get("materialized", "?")
        found = [", ".join(ix.get("columns", [])) for ix in config.get("indexes") or []]
        for hook in config.get("post-hook") or []:
            text = hook.get("sql", "") if isinstance(hook, dict) else str(hook)
            if "index" in text and "(" in text:
                found.append(text[text.rindex("(") + 1 : text.rindex(")")].strip())
        if found:
            indexes[node["name"]] = found
    return materializations, indexes


def _row_counts(conn: psycopg.Connection, raw: str) -> dict[str, int]:
    from retention.contract import load_contract

    out: dict[str, int] = {}
    for table in load_contract():
        row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(raw, table))).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


def cached_company(customers: int) -> tuple[Path, float]:
    """The generated company of this size: reused from .state/bench-cache when already generated.

    Keyed by (customers, seed, end date, generator version), so a generator change regenerates.
    Returns the folder and the generation time (0 when reused from the cache).
    """
    from retention.generator import generate
    from retention.generator.api import GENERATOR_VERSION
    from retention.settings import get_settings

    key = f"company_{customers}_seed{SEED}_{END_DATE.isoformat()}_gen{GENERATOR_VERSION}"
    folder = Path(get_settings().state_dir) / "bench-cache" / key
    if (folder / "ground_truth" / "manifest.json").exists():  # generate() swaps the folder in whole
        return folder, 0.0
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate(folder, customers=customers, seed=SEED, end_date=END_DATE)
    return folder, time.perf_counter() - started


def bench_size(customers: int, work: Path) -> SizeResult:
    from retention.loader import load_directory
    from retention.settings import get_settings

    raw = get_settings().raw_schema
    admin = _admin_url()
    name = f"bench_dbt_{customers}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = url_with_database(admin, name)
    target = work / f"target_{customers}"
    try:
        data, generate_s = cached_company(customers)
        started = time.perf_counter()
        load_directory(data, url=url)
        load_s = time.perf_counter() - started
        last_day = END_DATE - timedelta(days=1)
        with psycopg.connect(url) as conn:
            rows = _row_counts(conn, raw)
            held = _hold_last_day(conn, raw, last_day)
            conn.commit()
            conn.autocommit = True
            # compact raw: without the held rows' free space, re-inserting them appends at the end
            # of each table, as a real daily load does (filling holes all over the table would put
            # new _loaded_at values in every BRIN range and turn the incremental reads into scans)
            for table in [*_DAY_COLUMNS, "order_lines"]:
                conn.execute(sql.SQL("vacuum (full) {}").format(sql.Identifier(raw, table)))
            conn.execute("vacuum analyze")
        full = _dbt(["build", "--full-refresh", "--quiet"], url, last_day, target)
        # the day between two daily runs: autovacuum has long processed the tables the full build
        # wrote (visibility map, hint bits, statistics), so the timed daily run does not share the
        # cores with autovacuum's pass over 44M freshly written rows (seen running on
        # int_usage_daily right after a full build). It was not the cause of int_usage_daily's slow
        # daily node at 1M (57.5 s in the 2026-11-24 00:28 bench, 4.9 s run alone): that is ~200k
        # leaf-page reads of its customer-leading unique index, slow next to the other thread's
        # scans (BENCHMARKS.md, dbt section)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum (analyze)")
        vacuum_s = time.perf_counter() - started
        with psycopg.connect(url) as conn:
            _add_held_day(conn, raw)
        day = _dbt(["build", "--quiet"], url, END_DATE, target)
        materializations, indexes = _manifest_facts(target)
        return SizeResult(
            customers, rows, generate_s, load_s, full, day, held, materializations, indexes, vacuum_s
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _short(uid: str) -> str:
    kind, _, rest = uid.partition(".")
    name = rest.split(".", 1)[1] if "." in rest else rest
    if kind == "test":
        name = name.rsplit(".", 1)[0]
    return f"{kind} `{name[:60]}`"


def _status(results: list[SizeResult]) -> list[str]:
    """The targets' verdict, from the 1M size (none in a quick run), as the section's first line."""
    target = next((r for r in results if r.customers == 1_000_000), None)
    if target is None:
        return []

    def verdict(seconds: float, limit: float) -> str:
        return f"{seconds:.0f} s (target {limit:.0f}): " + ("met" if seconds <= limit else "**not met**")

    return [
        f"Targets, 1M customers: full build {verdict(target.full.seconds, TARGET_FULL_S)}; "
        f"one day {verdict(target.day.seconds, TARGET_DAY_S)}.",
        "",
    ]


def _markdown(results: list[SizeResult], quick: bool) -> str:
    from retention.settings import get_settings

    threads = get_settings().dbt_threads  # the builds' (dbt_runner passes the setting to dbt)
    out = [
        "### dbt build",
        "",
        "Full `dbt build --full-refresh` (every model, data test, unit test and the stage snapshot) of a "
        "generated company as of the day before the end date, then the daily run: the held-back last day's "
        "rows are inserted and `dbt build` runs as of the end date (incremental models process only the "
        "new rows; raw is compacted after the day is held back, so they are appended as by a real load). "
        "Between the two builds the database is vacuumed and analyzed, as autovacuum would have done in "
        "the day between two daily runs (`vacuum s`, not timed). Wall-clock time of the dbt command, "
        f"{threads} dbt threads, embedded PostgreSQL 16 on the same machine. Targets: 1M customers full "
        f"build <= {TARGET_FULL_S:.0f} s, one day <= {TARGET_DAY_S:.0f} s."
        + (" Quick run: small size only." if quick else ""),
        "",
        *_status(results),
        "| customers | usage events | orders | generate s | load s | full build s | vacuum s | new-day rows "
        "| one-day build s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r.customers:,} | {r.rows['usage_events']:,} | {r.rows['orders']:,} | {r.generate_s:.0f} | "
            f"{r.load_s:.0f} | {r.full.seconds:.0f} | {r.vacuum_s:.0f} | {r.held_rows:,} | {r.day.seconds:.0f} |"
        )
    out += [
        "",
        "Machine load (shared with other work; load average 1/5/15 min at the end of each build): "
        + "; ".join(
            f"{r.customers:,}: full {'/'.join(f'{x:.1f}' for x in r.full.load)}, "
            f"one day {'/'.join(f'{x:.1f}' for x in r.day.load)}"
            for r in results
        )
        + ". A load above 2 on 2 cores means the build shared the CPUs: times are then pessimistic.",
    ]
    for r in results:
        out += ["", f"Slowest nodes, {r.customers:,} customers (seconds; full build / one day):", ""]
        out += ["| node | full | one day |", "|---|---:|---:|"]
        full_times = {uid: s for uid, _, s in r.full.nodes}
        day_times = {uid: s for uid, _, s in r.day.nodes}
        slowest = [uid for uid, _, _ in r.full.slowest(12)]
        slowest += [uid for uid, _, _ in r.day.slowest(12) if uid not in slowest]
        for uid in slowest:
            out.append(f"| {_short(uid)} | {full_times.get(uid, 0.0):.1f} | {day_times.get(uid, 0.0):.1f} |")
        for label, run in (("full build", r.full), ("one day", r.day)):
            by_kind: dict[str, float] = {}
            for uid, _, seconds in run.nodes:
                kind = uid.split(".", 1)[0]
                by_kind[kind] = by_kind.get(kind, 0.0) + seconds
            out.append(
                f"\nNode seconds by kind, {label}: "
                + ", ".join(
                    f"{kind} {seconds:.0f}"
                    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1])
                )
                + f" (sum over {threads} threads; wall clock {run.seconds:.0f} s)."
            )
    if results:
        last = results[-1]
        inc = sorted(n for n, m in last.materializations.items() if m == "incremental")
        tables = sorted(n for n, m in last.materializations.items() if m == "table")
        views = sorted(n for n, m in last.materializations.items() if m == "view")
        out += [
            "",
            f"Materialisations: incremental {', '.join(inc) or '-'}; views {len(views)} "
            f"({', '.join(v for v in views if not v.startswith('stg_')) or 'staging only'} and the staging views); "
            f"tables {len(tables)}; snapshots "
            + ", ".join(sorted(n for n, m in last.materializations.items() if m == "snapshot")),
            "",
            "Indexes: "
            + "; ".join(f"{name} ({'; '.join(cols)})" for name, cols in sorted(last.indexes.items())),
        ]
    return "\n".join(out) + "\n"


def run(quick: bool) -> str:
    sizes = [5_000] if quick else [100_000, 1_000_000]
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="bench_dbt_") as tmp:
        for customers in sizes:
            results.append(bench_size(customers, Path(tmp)))
    return _markdown(results, quick)


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
