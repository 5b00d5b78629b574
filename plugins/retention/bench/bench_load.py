"""Benchmark of the raw loader (``retention load``).

Synthetic, contract-shaped ``usage_events`` (plus the small required customers/orders files) are
written as Parquet parts and as CSV parts, then loaded into a scratch database that is created
and dropped here.  Each load runs in a child process so its peak RSS is the loader's alone.
Measured: rows/s end to end (read + validate + COPY + commit) for a first load (COPY straight
into the empty table) and for a re-delivery of the same rows (staging, delete + insert).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from retention.db import url_with_database
from retention.loader import REBUILD_KEY_ROWS

TARGET_ROWS_PER_S = 500_000
EVENT_TYPES = ["login", "play", "search", "download", "error"]

_CHILD = """
import json, os, resource, sys, threading, time
import psycopg
from retention.loader import load_directory

folder, url, app = sys.argv[1], sys.argv[2], sys.argv[3]
server_cpu = {}  # pid -> last seen utime+stime (s) of the load's backend and its parallel workers
done = threading.Event()

watcher_cpu = [0.0]

def watch():
    tick = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(url, autocommit=True) as conn:
        while not done.is_set():
            pids = [r[0] for r in conn.execute(
                "select pid from pg_stat_activity where application_name = %s or leader_pid in "
                "(select pid from pg_stat_activity where application_name = %s)", (app, app))]
            for pid in pids:
                try:
                    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                    server_cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    pass
            watcher_cpu[0] = time.thread_time()
            time.sleep(0.1)

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
report = load_directory(folder, url=url + "?application_name=" + app)
seconds = time.perf_counter() - started
done.set()
watcher.join()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "rows": report.rows, "seconds": seconds,
    "modes": {t.table: t.mode for t in report.tables},
    "table_seconds": {t.table: t.seconds for t in report.tables},
    "loader_cpu": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime - watcher_cpu[0],
    "server_cpu": sum(server_cpu.values()),
    "peak_rss_mib": usage.ru_maxrss / 1024,
}))
"""


def _usage_events(start: int, n: int, customers: int, rng: np.random.Generator) -> pa.Table:
    cust = rng.integers(0, customers, n)
    types = rng.choice(len(EVENT_TYPES), n, p=[0.3, 0.4, 0.15, 0.1, 0.05])
    base = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    occurred = base + rng.integers(0, 365 * 86_400, n) * 1_000_000
    type_arr = pa.array(np.array(EVENT_TYPES, dtype=object)[types], pa.string())
    is_error = pc.equal(type_arr, "error")
    return pa.table(
        {
            "event_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "customer_id": pc.binary_join_element_wise("C", pc.cast(pa.array(cust), pa.string()), ""),
            "occurred_at": pa.array(occurred, pa.timestamp("us", tz="UTC")),
            "event_type": type_arr,
            "error_code": pc.if_else(is_error, pa.scalar("E-PLAYBACK-502"), pa.scalar(None, pa.string())),
        }
    )


def _write_company(folder: Path, rows: int, fmt: str, part_rows: int) -> None:
    rng = np.random.default_rng(7)
    customers = max(1000, rows // 50)
    ids = pc.binary_join_element_wise("C", pc.cast(pa.array(np.arange(customers)), pa.string()), "")
    pq.write_table(
        pa.table(
            {
                "customer_id": ids,
                "signup_at": pa.array(np.zeros(customers, dtype=np.int64), pa.timestamp("us", tz="UTC")),
                "time_zone": pa.array(["Europe/Berlin"] * customers),
                "marketing_consent": pa.array(np.ones(customers, dtype=bool)),
            }
        ),
        folder / "customers.parquet",
    )
    orders = pa.table(
        {
            "order_id": pc.binary_join_element_wise(
                "O", pc.cast(pa.array(np.arange(customers)), pa.string()), ""
            ),
            "customer_id": ids,
            "ordered_at": pa.array(np.zeros(customers, dtype=np.int64), pa.timestamp("us", tz="UTC")),
            "amount": pa.array(np.full(customers, 19.99)),
            "discount_amount": pa.array(np.zeros(customers)),
        }
    )
    pq.write_table(orders, folder / "orders.parquet")
    parts = folder / "usage_events"
    parts.mkdir()
    for i, start in enumerate(range(0, rows, part_rows)):
        t = _usage_events(start, min(part_rows, rows - start), customers, rng)
        if fmt == "parquet":
            pq.write_table(t, parts / f"part-{i:05d}.parquet")
        else:
            pa_csv.write_csv(t, parts / f"part-{i:05d}.csv")


def _load_in_child(folder: Path, url: str) -> dict:
    app = f"bench_load_{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), url, app], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"load failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> str:
    import psycopg

    from retention.warehouse import ensure_warehouse

    rows = 200_000 if quick else 2_000_000
    part_rows = 100_000 if quick else 500_000
    base = ensure_warehouse()
    admin = url_with_database(base, "postgres")
    results: list[tuple[str, dict]] = []
    for fmt in ("parquet", "csv"):
        name = f"bench_load_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        try:
            url = url_with_database(base, name)
            with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
                folder = Path(tmp)
                _write_company(folder, rows, fmt, part_rows)
                results.append((f"{fmt} parts, first load", _load_in_child(folder, url)))
                results.append((f"{fmt} parts, re-delivery (replace)", _load_in_child(folder, url)))
            with psycopg.connect(url) as conn:
                got = conn.execute("select count(*) from raw.usage_events").fetchone()
            if not got or got[0] != rows:
                raise RuntimeError(f"expected {rows} usage_events after two loads, found {got}")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')
    lines = [
        "### load",
        "",
        f"`retention load` of a synthetic company: {rows:,} `usage_events` rows in parts of {part_rows:,} "
        "(plus small customers/orders files), loaded into a scratch database. End to end = read + "
        "validate + COPY + commit, in a child process; peak RSS is the loader process's. "
        f"Target: >= {TARGET_ROWS_PER_S:,} rows/s.",
        "",
        "| case | rows | wall s | rows/s (wall) | loader CPU s | server CPU s | rows/s on 2 free cores (est.) "
        "| peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, r in results:
        total = sum(r["rows"].values())
        cpu = max(r["loader_cpu"], r["server_cpu"], (r["loader_cpu"] + r["server_cpu"]) / 2)
        lines.append(
            f"| {case} | {total:,} | {r['seconds']:.2f} | {total / r['seconds']:,.0f} | {r['loader_cpu']:.2f} | "
            f"{r['server_cpu']:.2f} | {total / cpu:,.0f} | {r['peak_rss_mib']:.0f} |"
        )
    lines.append("")
    lines.append(
        "First loads COPY (binary format) straight into the empty raw table; from "
        f"{REBUILD_KEY_ROWS:,} rows on the primary key is dropped and rebuilt after the COPY, which also "
        "catches duplicates. Re-deliveries COPY into a temporary staging table, delete the rows with "
        "the same keys and insert the new ones. Loader CPU = the loading process (read, validate, encode); "
        "server CPU = its PostgreSQL backend and parallel workers, sampled from /proc (embedded server). "
        "The machine is shared with other jobs, so wall-clock rates understate the loader; the estimate "
        "is rows / max(loader CPU, server CPU, total CPU / 2), i.e. the rate with both cores free "
        "and the two sides pipelined (they run concurrently)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
