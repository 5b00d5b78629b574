"""Benchmark of the demo-company generator (``retention generate``), and generate + load.

Each generation runs in a child process, so the peak RSS reported is the generator's alone
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child).  Measured: rows written per second
(all contract tables, Parquet, default chunk of 50,000 customers) and peak RSS, for 10k customers
(quick) or 100k and 1M customers (~50M usage events; full).  When ``retention.loader.load_directory``
exists, the smaller company is also loaded into a scratch database created and dropped here
(rows/s of the load and of generate + load).
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from retention.db import url_with_database
from retention.settings import PROJECT_ROOT

RSS_TARGET_GIB = 2.0
LOAD_TARGET_ROWS_PER_S = 500_000
END_DATE = "2026-06-30"
SEED = 42

_CHILD = """
import json, resource, sys
from retention.generator import generate

out, customers = sys.argv[1], int(sys.argv[2])
report = generate(out, customers=customers, seed=int(sys.argv[3]), end_date=sys.argv[4])
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": report.rows, "seconds": report.seconds, "peak_rss_kib": peak_kib,
                  "truth_rows": report.truth_rows}))
"""

_LOAD_CHILD = """
import json, resource, sys, time
from retention.loader import load_directory

started = time.perf_counter()
report = load_directory(sys.argv[1], url=sys.argv[2])
print(json.dumps({"rows": report.total_rows, "seconds": time.perf_counter() - started,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _env() -> dict[str, str]:
    import os

    paths = [str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ":".join(paths + ([old] if old else []))}


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def generate_in_child(out: Path, customers: int, seed: int = SEED) -> dict:
    return _child(_CHILD, str(out), str(customers), str(seed), END_DATE)


def _load_into_scratch(folder: Path) -> dict:
    import psycopg

    from retention.warehouse import ensure_warehouse

    base = ensure_warehouse()
    admin = url_with_database(base, "postgres")
    name = f"bench_generate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        return _child(_LOAD_CHILD, str(folder), url_with_database(base, name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _has_loader() -> bool:
    try:
        return hasattr(importlib.import_module("retention.loader"), "load_directory")
    except ImportError:
        return False


def run(quick: bool) -> str:
    sizes = [10_000] if quick else [100_000, 1_000_000]
    rows_md: list[str] = []
    load_md = ""
    work = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    try:
        for customers in sizes:
            out = work / f"c{customers}"
            res = generate_in_child(out, customers)
            total = sum(res["rows"].values())
            rss_gib = res["peak_rss_kib"] / 2**20
            events = res["rows"]["usage_events"]
            rows_md.append(
                f"| {customers:,} | {events:,} | {total:,} | {res['seconds']:.1f} | "
                f"{total / res['seconds']:,.0f} | {rss_gib:.2f} | "
                f"{'yes' if rss_gib < RSS_TARGET_GIB else 'NO'} |"
            )
            if customers == sizes[0] and _has_loader():
                load = _load_into_scratch(out)
                both = res["seconds"] + load["seconds"]
                load_md = (
                    f"\nGenerate + load of the {customers:,}-customer company into a scratch database "
                    f"(`retention.loader.load_directory`, created and dropped here):\n\n"
                    "| rows | generate s | load s | load rows/s | generate+load rows/s | load target met "
                    f"(>= {LOAD_TARGET_ROWS_PER_S:,} rows/s) |\n|---|---|---|---|---|---|\n"
                    f"| {load['rows']:,} | {res['seconds']:.1f} | {load['seconds']:.1f} | "
                    f"{load['rows'] / load['seconds']:,.0f} | {load['rows'] / both:,.0f} | "
                    f"{'yes' if load['rows'] / load['seconds'] >= LOAD_TARGET_ROWS_PER_S else 'NO'} |\n"
                )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = (
        "| customers | usage events | rows (all tables) | seconds | rows/s | peak RSS GiB | "
        f"RSS < {RSS_TARGET_GIB:.0f} GiB |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows_md)
    )
    return (
        "### generate\n\n"
        "`retention generate` (seed 42, end date 2026-06-30, Parquet, chunks of 50,000 customers), run "
        "in a child process; peak RSS is the child's `ru_maxrss`. Rows/s counts every contract row "
        "written (customers, subscriptions, orders, order lines, payments, usage events, tickets, "
        "cancel-flow answers).\n\n" + table + "\n" + load_md
    )
