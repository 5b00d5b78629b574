"""``generate()``: the Python API of the generator, and ``load_truth()`` for evaluation code."""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from retention.generator.output import MANIFEST_FILE, TRUTH_DIR, TRUTH_FILE, Output
from retention.generator.simulate import simulate_chunk
from retention.generator.timeline import Calendar

if TYPE_CHECKING:
    import psycopg

FORMATS = ("parquet", "csv")
MAX_CHUNK_CUSTOMERS = 1_000_000  # ids are chunk-local sequences below 10**9
MIN_END_DATE = date(2000, 1, 1)
MAX_END_DATE = date(2100, 12, 31)
GENERATOR_VERSION = 1


class GeneratorError(ValueError):
    """Bad arguments or an unusable output folder; nothing was written."""


@dataclass
class GenerateReport:
    out_dir: Path
    customers: int
    seed: int
    end_date: date
    fmt: str
    rows: dict[str, int] = field(default_factory=dict)
    truth_rows: int = 0
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"generated {self.customers} customers (seed {self.seed}, end {self.end_date}, {self.fmt}) "
            f"into {self.out_dir} in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s)"
        ]
        lines += [f"  {name:22} {count:>12,}" for name, count in self.rows.items()]
        lines.append(f"  {'ground truth churners':22} {self.truth_rows:>12,}")
        return "\n".join(lines)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise GeneratorError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise GeneratorError(f"{name} must be {bound}, got {value}")
    return value


def parse_end_date(value: object) -> date:
    if value is None:
        return datetime.now(UTC).date()
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise GeneratorError(f"end date must be YYYY-MM-DD, got {value!r}") from None
    if not isinstance(value, date):
        raise GeneratorError(f"end date must be a date, got {value!r}")
    if not MIN_END_DATE <= value <= MAX_END_DATE:
        raise GeneratorError(f"end date {value} is out of range ({MIN_END_DATE} .. {MAX_END_DATE})")
    return value


def _is_generator_output(folder: Path) -> bool:
    return (folder / TRUTH_DIR / MANIFEST_FILE).is_file()


def _prepare_target(out_dir: Path) -> Path:
    """Validate the destination and create the temporary sibling folder the data goes to."""
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise GeneratorError(f"output folder {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_generator_output(out_dir):
        raise GeneratorError(
            f"output folder {out_dir} is not empty and was not written by the generator; refusing to replace it"
        )
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GeneratorError(f"cannot create the parent of output folder {out_dir}: {exc}") from None
    tmp = parent / f".{out_dir.name}.tmp-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise GeneratorError(f"output folder {out_dir} is not writable: {exc}") from None
    return tmp


def _swap_in(tmp: Path, out_dir: Path) -> None:
    out_dir = Path(out_dir).expanduser().absolute()
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except OSError:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate(
    out_dir: Path,
    customers: int,
    seed: int,
    end_date: date | None = None,
    fmt: str = "parquet",
    chunk_customers: int = 50000,
) -> GenerateReport:
    """Write a seeded company of ``customers`` customers into ``out_dir`` (replaced atomically).

    Same arguments give byte-identical files.  Raises GeneratorError (a ValueError) on bad
    arguments or an unusable folder, before anything is written; on any failure the partial
    output is removed and ``out_dir`` is left as it was.
    """
    started = time.perf_counter()
    customers = _check_int("customers", customers, 1)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    chunk_customers = _check_int("chunk_customers", chunk_customers, 1, MAX_CHUNK_CUSTOMERS)
    end = parse_end_date(end_date)
    if fmt not in FORMATS:
        raise GeneratorError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out_dir = Path(out_dir).expanduser().absolute()
    tmp = _prepare_target(out_dir)
    cal = Calendar(end)
    id_width = max(7, len(str(customers)))
    output: Output | None = None
    try:
        output = Output(tmp, fmt)
        n_chunks = -(-customers // chunk_customers)
        for chunk in range(n_chunks):
            first = chunk * chunk_customers
            n = min(chunk_customers, customers - first)
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, chunk])))
            result = simulate_chunk(rng, cal, chunk, first + 1, n, id_width)
            output.write_chunk(result.tables, result.truth)
            del result
        output.close(
            {
                "generator_version": GENERATOR_VERSION,
                "customers": customers,
                "seed": seed,
                "end_date": end.isoformat(),
                "history_start": cal.start_date.isoformat(),
                "format": fmt,
                "chunk_customers": chunk_customers,
            }
        )
        _swap_in(tmp, out_dir)
    except BaseException:
        if output is not None:
            output.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GenerateReport(
        out_dir=out_dir,
        customers=customers,
        seed=seed,
        end_date=end,
        fmt=fmt,
        rows=dict(output.rows),
        truth_rows=output.truth_rows,
        seconds=time.perf_counter() - started,
    )


def truth_path(directory: Path | str) -> Path:
    return Path(directory) / TRUTH_DIR / TRUTH_FILE


def read_truth(directory: Path | str) -> pa.Table:
    """The planted churn events of a generated folder (customer_id, churned_at, true_reason, mechanism)."""
    path = truth_path(directory)
    if not path.is_file():
        raise GeneratorError(f"{path}: no ground truth here (is {directory} a generator output folder?)")
    return pq.read_table(path)


def load_truth(directory: Path | str, conn: psycopg.Connection) -> int:
    """Replace ``<truth_schema>.churn_truth`` with the folder's ground truth; returns the row count.

    ``conn`` is a psycopg connection (the caller commits, e.g. ``retention.db.connect``).  Only
    evaluation code and tests read this table; no model or mart does.
    """
    from psycopg import sql

    from retention.settings import get_settings

    table = read_truth(directory)
    schema = get_settings().truth_schema
    target = sql.Identifier(schema, "churn_truth")
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            "create table if not exists {} (customer_id text primary key, churned_at timestamptz not null, "
            "true_reason text not null, mechanism text)"
        ).format(target)
    )
    conn.execute(sql.SQL("truncate {}").format(target))
    cur = conn.cursor()
    copy_sql = sql.SQL(
        "copy {} (customer_id, churned_at, true_reason, mechanism) from stdin with (format csv)"
    )
    with cur.copy(copy_sql.format(target)) as copy:
        for batch in table.to_batches(max_chunksize=200_000):
            buf = io.BytesIO()
            pa_csv.write_csv(batch, buf, pa_csv.WriteOptions(include_header=False))
            copy.write(buf.getvalue())
    return table.num_rows
