"""The raw-data loader: ``retention load DIR [--url URL]``.

A folder holds contract files named after the tables of ``raw`` (see
``dbt_project/models/staging/_raw__sources.yml``): ``<table>.csv``, ``<table>.csv.gz``,
``<table>.parquet``, or a sub-folder ``<table>/`` of parts (``*.csv``, ``*.csv.gz``,
``*.parquet``).  A ``ground_truth/`` sub-folder is the generator's and is ignored.

How a load works:

* Every file is checked against the contract while it streams: header (missing required or
  unknown columns), then per batch, vectorised with pyarrow: parse of timestamps (ISO 8601; naive
  means UTC), dates, numbers and booleans, nulls in non-null columns, ``min``, ``allowed`` and
  ``iana_tz``.  The first offending row is located without per-row Python (a bisection of the
  failing cast) and the error names file (or part file), 1-based data row and column.
* All tables of the folder load in one transaction (``synchronous_commit`` off for it).  A table
  that is empty in the warehouse gets the rows by ``COPY`` straight into it (its primary key
  rejects duplicates within the load; first loads of >= ``REBUILD_KEY_ROWS`` rows lock and
  truncate the empty table, ``COPY .. freeze`` and build the key once afterwards).  Otherwise the
  rows are copied into a temporary staging table, the rows with the same keys are deleted and the
  new ones inserted, so a re-delivery replaces the old rows (the corrected one wins) instead of
  duplicating them.  Every row gets ``_source_file`` (file path relative to the folder) and
  ``_loaded_at`` (the load's transaction time).  Any error rolls the whole load back: raw is
  unchanged.
* Rows travel in PostgreSQL's binary COPY format, encoded column-wise with numpy/pyarrow, so the
  server parses no text.  Validation/encoding (a producer thread) and ``COPY`` (the server) run
  concurrently; memory stays bounded (a few batches in flight).
* Hidden files (``.*``) are skipped; any other file that is not a contract file is an error.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import queue
import re
import sys
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg import sql

from retention.contract import LOADER_COLUMNS, Column, ContractError, Table, load_contract
from retention.settings import SettingsError, get_settings

#: the pipeline needs customers plus at least one table of each group (in the folder or in raw)
REQUIRED_GROUPS: tuple[tuple[str, ...], ...] = (("customers",), ("orders", "subscriptions"))
IGNORED_DIRS = frozenset({"ground_truth"})
BATCH_ROWS = 1 << 19  # parquet rows per batch
CSV_BLOCK_BYTES = 16 << 20
LOADED_AT_INDEX_SUFFIX = "__loaded_at_brin"  # BRIN index on _loaded_at of every raw table
#: b-tree lookup indexes of raw tables (named table + LOOKUP_INDEX_SUFFIX): the incremental dbt
#: models' probes for the older rows of a key they rebuild, instead of a scan of the whole table
LOOKUP_INDEXES: dict[str, tuple[str, ...]] = {
    # int_payment_charges re-aggregates every attempt of a charge retried today (customer, due time)
    "payments": ("customer_id", "due_at"),
}
LOOKUP_INDEX_SUFFIX = "__lookup"
REBUILD_KEY_ROWS = 1_000_000  # first loads at least this big build the primary key after the COPY
TRUE_VALUES = frozenset({"true", "t", "1", "yes"})
FALSE_VALUES = frozenset({"false", "f", "0", "no"})
_LOCK_KEY = 0x7265_7461_696E  # pg advisory lock of the loader ("retain")
_TS = pa.timestamp("us", tz="UTC")
_OFFSET_RE = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"
_NUMERIC_RE = re.compile(r"numeric\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", re.I)
_INT_TYPES = {"smallint": pa.int16(), "integer": pa.int32(), "int": pa.int32(), "bigint": pa.int64()}


__all__ = [
    "LoadError",
    "LoadReport",
    "TableLoad",
    "discover",
    "ensure_raw_tables",
    "find_duplicate",
    "load_directory",
    "main",
]


class LoadError(ValueError):
    """Bad input: the message names the file, row and column. Nothing was loaded."""


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class SourceFile:
    path: Path
    label: str  # path relative to the load folder, used in messages and _source_file
    fmt: str  # csv | parquet


@dataclass
class TableSource:
    table: Table
    files: list[SourceFile]
    columns: list[str] = field(default_factory=list)  # contract columns present in any file
    file_columns: dict[str, list[str]] = field(default_factory=dict)  # label -> its contract columns


def _file_format(name: str) -> str | None:
    low = name.lower()
    if low.endswith((".csv", ".csv.gz")):
        return "csv"
    if low.endswith(".parquet"):
        return "parquet"
    return None


def _table_name(name: str) -> str:
    low = name
    for ext in (".csv.gz", ".csv", ".parquet"):
        if low.lower().endswith(ext):
            return low[: -len(ext)]
    return low


def discover(folder: Path) -> dict[str, TableSource]:
    """Map table name -> its files; unknown files or a table given twice are errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError(f"{folder}: no such folder")
    contract = load_contract()
    found: dict[str, TableSource] = {}
    unknown: list[str] = []

    def add(table: str, files: list[SourceFile], what: str) -> None:
        if table in found:
            others = ", ".join(f.label for f in found[table].files[:1])
            raise LoadError(f"table {table} is given twice in {folder}: {what} and {others}")
        found[table] = TableSource(contract[table], files)

    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name in IGNORED_DIRS:
                continue
            if entry.name not in contract:
                unknown.append(entry.name + "/")
                continue
            parts: list[SourceFile] = []
            for part in sorted(entry.rglob("*")):
                if part.is_dir() or part.name.startswith("."):
                    continue
                fmt = _file_format(part.name)
                label = str(part.relative_to(folder))
                if fmt is None:
                    unknown.append(label)
                else:
                    parts.append(SourceFile(part, label, fmt))
            if not parts and not unknown:
                raise LoadError(f"{entry.name}/: folder of table {entry.name} has no part files")
            add(entry.name, parts, entry.name + "/")
            continue
        fmt = _file_format(entry.name)
        table = _table_name(entry.name)
        if fmt is None or table not in contract:
            unknown.append(entry.name)
            continue
        add(table, [SourceFile(entry, entry.name, fmt)], entry.name)
    if unknown:
        raise LoadError(
            f"unknown file(s) in {folder}: {', '.join(unknown)} "
            f"(expected <table>.csv, .csv.gz, .parquet or a <table>/ folder of parts; "
            f"tables: {', '.join(contract)})"
        )
    return found


# --------------------------------------------------------------------------- headers


def _csv_header(src: SourceFile) -> list[str]:
    opener = gzip.open if src.path.name.lower().endswith(".gz") else open
    try:
        with opener(src.path, "rt", encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise LoadError(f"{src.label}: cannot read the header: {exc}") from None
    if not header:
        raise LoadError(f"{src.label}: file is empty (no header row)")
    return [h.strip() for h in header]


def _file_columns(src: SourceFile) -> list[str]:
    if src.fmt == "csv":
        return _csv_header(src)
    try:
        return list(pq.ParquetFile(src.path).schema_arrow.names)
    except (OSError, pa.ArrowException) as exc:
        raise LoadError(f"{src.label}: not a readable Parquet file: {exc}") from None


def check_headers(ts: TableSource) -> None:
    """Columns of every file: no unknown or repeated ones, every required one.

    Parts may differ in which nullable columns they carry; a missing one loads as null.
    """
    table = ts.table
    known = set(table.column_names)
    required = [c.name for c in table.columns if not c.nullable]
    for src in ts.files:
        cols = _file_columns(src)
        seen: set[str] = set()
        for name in cols:
            if name in seen:
                raise LoadError(f"{src.label}, header: column {name} appears twice")
            seen.add(name)
            if name not in known:
                raise LoadError(
                    f"{src.label}, header: unknown column {name!r} (table {table.name} has "
                    f"{', '.join(table.column_names)})"
                )
        for name in required:
            if name not in seen:
                raise LoadError(f"{src.label}, header: missing required column {name} (table {table.name})")
        ts.file_columns[src.label] = [c for c in table.column_names if c in seen]
    union = {c for cols in ts.file_columns.values() for c in cols}
    ts.columns = [c for c in table.column_names if c in union]


# --------------------------------------------------------------------------- conversion


class _BadValue(Exception):
    def __init__(self, index: int, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.problem = problem


def _is_stringy(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _target_type(col: Column) -> pa.DataType:
    kind = col.kind
    if kind == "timestamp":
        return _TS
    if kind == "date":
        return pa.date32()
    if kind == "integer":
        return _INT_TYPES.get(col.data_type.lower(), pa.int64())
    if kind == "numeric":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    return pa.string()


_KIND_WORDS = {
    "timestamp": "a timestamp (ISO 8601, e.g. 2024-05-01T13:45:00Z)",
    "date": "a date (YYYY-MM-DD)",
    "integer": "an integer",
    "numeric": "a number",
    "boolean": "a boolean (true/false/1/0/t/f/yes/no)",
    "text": "text (UTF-8)",
}


def _cast(arr: pa.Array, col: Column) -> pa.Array:
    """Convert one column to its contract type; raises Arrow errors on unparseable values."""
    kind = col.kind
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    target = _target_type(col)
    if kind == "text":
        return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
    if _is_stringy(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
        if kind == "boolean":
            return _parse_bool(arr)
        if kind == "timestamp":
            has_offset = pc.match_substring_regex(arr, _OFFSET_RE)
            arr = pc.if_else(has_offset, arr, pc.binary_join_element_wise(arr, "Z", ""))
            try:
                return pc.cast(arr, target)
            except pa.ArrowInvalid:  # more than 6 fractional digits: parse as ns, keep microseconds
                return pc.cast(pc.cast(arr, pa.timestamp("ns", tz="UTC")), target, safe=False)
        return pc.cast(arr, target)
    if kind == "timestamp" and pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:  # naive means UTC
            return pc.cast(pc.cast(arr, pa.timestamp("us"), safe=False), _TS)
        return pc.cast(arr, _TS, safe=False)
    if kind == "timestamp" and pa.types.is_date(arr.type):
        return pc.cast(pc.cast(arr, pa.timestamp("us")), _TS)
    if kind == "date" and pa.types.is_timestamp(arr.type):
        arr = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz), safe=False)
    if kind == "numeric" and pa.types.is_decimal(arr.type):
        return pc.cast(arr, target, safe=False)
    return pc.cast(arr, target)


def _parse_bool(arr: pa.Array) -> pa.Array:
    low = pc.utf8_lower(arr)
    is_true = pc.is_in(low, value_set=pa.array(sorted(TRUE_VALUES)))
    is_false = pc.is_in(low, value_set=pa.array(sorted(FALSE_VALUES)))
    bad = pc.and_(pc.is_valid(arr), pc.invert(pc.or_(is_true, is_false)))
    idx = _first_true(bad)
    if idx is not None:
        raise _BadValue(idx, f"cannot parse {arr[idx].as_py()!r} as {_KIND_WORDS['boolean']}")
    return pc.if_else(pc.is_valid(arr), is_true, pa.scalar(None, pa.bool_()))


def _first_true(mask: pa.Array) -> int | None:
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    i = pc.index(mask, True).as_py()
    return None if i is None or i < 0 else i


def _first_failure(arr: pa.Array, fn: Callable[[pa.Array], object]) -> int:
    """Index of the first element on which the element-wise ``fn`` raises (bisection, vectorised)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            fn(arr.slice(lo, mid - lo))
        except (pa.ArrowException, _BadValue):
            hi = mid
        else:
            lo = mid
    return lo


def convert_column(arr: pa.Array, col: Column) -> pa.Array:
    """Cast to the contract type, locating the first unparseable value on failure."""
    try:
        return _cast(arr, col)
    except _BadValue:
        raise
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise _BadValue(0, f"values of type {arr.type} cannot be read as {col.data_type}: {exc}") from None
    except pa.ArrowException:
        idx = _first_failure(arr, lambda a: _cast(a, col))
        raise _BadValue(idx, f"cannot parse {arr[idx].as_py()!r} as {_KIND_WORDS[col.kind]}") from None


@lru_cache(maxsize=4096)
def _is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _numeric_spec(col: Column) -> tuple[int, int] | None:
    """(precision, scale) of a numeric column; plain ``numeric`` is loaded as numeric(16, 4)."""
    t = col.data_type.strip().lower()
    if t == "numeric":
        return 16, 4
    m = _NUMERIC_RE.fullmatch(t)
    if not m:
        return None
    precision, scale = int(m.group(1)), int(m.group(2) or 0)
    if precision > 18 or scale > 8:  # a float64 carries at most ~15-17 significant digits
        precision, scale = min(precision, 18), min(scale, 8)
    return precision, scale


def _numeric_limit(col: Column) -> float | None:
    spec = _numeric_spec(col)
    return None if spec is None else 10.0 ** (spec[0] - spec[1])


def check_column(arr: pa.Array, col: Column) -> tuple[int, str] | None:
    """First contract violation (row index, problem) of an already converted column, or None."""
    problems: list[tuple[int, str]] = []

    def first(mask: pa.Array, problem: Callable[[int], str]) -> None:
        idx = _first_true(mask)
        if idx is not None:
            problems.append((idx, problem(idx)))

    if not col.nullable and arr.null_count:
        first(pc.is_null(arr), lambda i: "empty value in a column that must not be null")
    if not col.nullable and col.kind == "text":
        first(pc.equal(arr, ""), lambda i: "empty value in a column that must not be null")
    if col.kind == "numeric":
        first(pc.invert(pc.is_finite(arr)), lambda i: f"{arr[i].as_py()!r} is not a finite number")
        limit = _numeric_limit(col)
        if limit is not None:
            first(
                pc.greater_equal(pc.abs(arr), limit),
                lambda i: f"{arr[i].as_py()!r} is too large for {col.data_type}",
            )
    if col.min is not None and col.kind in {"integer", "numeric"}:
        first(pc.less(arr, col.min), lambda i: f"{arr[i].as_py()!r} is below the minimum {col.min:g}")
    if col.allowed:
        allowed = pa.array(list(col.allowed), pa.string())
        first(
            pc.and_(pc.is_valid(arr), pc.invert(pc.is_in(arr, value_set=allowed))),
            lambda i: f"{arr[i].as_py()!r} is not one of {', '.join(col.allowed or ())}",
        )
    if col.format == "iana_tz":
        uniques = pc.unique(arr).to_pylist()
        bad = [v for v in uniques if v is not None and not _is_time_zone(v)]
        if bad:
            first(
                pc.is_in(arr, value_set=pa.array(bad, pa.string())),
                lambda i: f"{arr[i].as_py()!r} is not a known IANA time zone",
            )
    return min(problems) if problems else None


# --------------------------------------------------------------------------- reading


def _csv_batches(src: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    bad_rows: list[tuple[int | None, int, int]] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        bad_rows.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    def reader(use_threads: bool) -> pa_csv.CSVStreamingReader:
        return pa_csv.open_csv(
            pa.input_stream(str(src.path), compression="detect"),
            read_options=pa_csv.ReadOptions(
                column_names=columns, skip_rows=1, block_size=CSV_BLOCK_BYTES, use_threads=use_threads
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    def fail_on_bad_rows() -> None:
        if not bad_rows:
            return
        number, expected, actual = bad_rows[0]
        if number is None:  # the threaded reader does not know line numbers: re-read to find it
            bad_rows.clear()
            for _ in reader(False):
                if bad_rows:
                    break
            number, expected, actual = bad_rows[0]
        row = f"row {number - 1}" if number is not None else "a row"
        raise LoadError(f"{src.label}, {row}: expected {expected} fields, found {actual}")

    try:
        for batch in reader(True):
            fail_on_bad_rows()
            yield batch
        fail_on_bad_rows()
    except pa.ArrowException as exc:
        raise LoadError(f"{src.label}: cannot read the CSV file: {exc}") from None


def _parquet_batches(src: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    try:
        pf = pq.ParquetFile(src.path)
        yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise LoadError(f"{src.label}: cannot read the Parquet file: {exc}") from None


def iter_batches(src: SourceFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    return _csv_batches(src, columns) if src.fmt == "csv" else _parquet_batches(src, columns)


def validated_batches(ts: TableSource, src: SourceFile) -> Iterator[pa.RecordBatch]:
    """Batches of ``src`` converted to the contract types, columns in ``ts.columns`` order."""
    cols = [ts.table.column(c) for c in ts.columns]
    present = ts.file_columns.get(src.label, ts.columns)
    offset = 0
    for batch in iter_batches(src, present):
        arrays: list[pa.Array] = []
        errors: list[tuple[int, int, str]] = []
        for pos, col in enumerate(cols):
            if col.name not in present:  # nullable column this file does not carry
                arrays.append(pa.nulls(batch.num_rows, _target_type(col)))
                continue
            try:
                arr = convert_column(batch.column(col.name), col)
            except _BadValue as bad:
                errors.append((bad.index, pos, bad.problem))
                arrays.append(pa.nulls(0))
                continue
            problem = check_column(arr, col)
            if problem is not None:
                errors.append((problem[0], pos, problem[1]))
            arrays.append(arr)
        if errors:
            index, pos, problem = min(errors)
            raise LoadError(f"{src.label}, row {offset + index + 1}, column {cols[pos].name}: {problem}")
        yield pa.RecordBatch.from_arrays(arrays, names=ts.columns)
        offset += batch.num_rows


# --------------------------------------------------------------------------- database


def ensure_raw_tables(conn: psycopg.Connection, schema: str | None = None) -> None:
    """Schema raw and every contract table (optional ones too, empty), idempotently.

    Columns added to the contract later are added to existing tables (nullable).  Every table gets
    a BRIN index on ``_loaded_at`` (a few pages even for 50M rows; rows arrive in load order): the
    incremental dbt models read "rows loaded since the last run" through it instead of scanning
    the whole table (autosummarize keeps the newly filled page ranges summarized).  The tables of
    LOOKUP_INDEXES also get their b-tree lookup index.
    """
    schema = schema or get_settings().raw_schema
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    existing: dict[str, set[str]] = {}
    for table_name, column_name in conn.execute(
        "select table_name, column_name from information_schema.columns where table_schema = %s", (schema,)
    ):
        existing.setdefault(table_name, set()).add(column_name)
    contract = load_contract()
    for table in contract.values():
        if table.name not in existing:
            conn.execute(table.ddl(schema))  # type: ignore[arg-type]  # DDL built from the contract only
            continue
        specs = [(c.name, c.data_type) for c in table.columns]
        specs += [(name, spec.replace(" not null", "")) for name, spec in LOADER_COLUMNS.items()]
        for name, spec in specs:
            if name not in existing[table.name]:
                conn.execute(
                    sql.SQL("alter table {}.{} add column {} " + spec).format(  # type: ignore[arg-type]
                        sql.Identifier(schema), sql.Identifier(table.name), sql.Identifier(name)
                    )
                )
    indexes = {
        r[0] for r in conn.execute("select indexname from pg_indexes where schemaname = %s", (schema,))
    }
    for table in contract.values():
        # existence checked first: create index takes a lock even when the index exists
        if table.name + LOADED_AT_INDEX_SUFFIX not in indexes:
            conn.execute(
                sql.SQL("create index {} on {}.{} using brin (_loaded_at) with (autosummarize = on)").format(
                    sql.Identifier(table.name + LOADED_AT_INDEX_SUFFIX),
                    sql.Identifier(schema),
                    sql.Identifier(table.name),
                )
            )
        lookup = LOOKUP_INDEXES.get(table.name)
        if lookup and table.name + LOOKUP_INDEX_SUFFIX not in indexes:
            conn.execute(
                sql.SQL("create index {} on {}.{} ({})").format(
                    sql.Identifier(table.name + LOOKUP_INDEX_SUFFIX),
                    sql.Identifier(schema),
                    sql.Identifier(table.name),
                    sql.SQL(", ").join(sql.Identifier(c) for c in lookup),
                )
            )


def _has_rows(conn: psycopg.Connection, schema: str, table: str) -> bool:
    q = sql.SQL("select exists (select 1 from {}.{})").format(sql.Identifier(schema), sql.Identifier(table))
    row = conn.execute(q).fetchone()
    return bool(row and row[0])


@dataclass
class TableLoad:
    table: str
    rows: int
    files: int
    seconds: float
    mode: str  # insert (table was empty) | upsert

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadReport:
    folder: str
    tables: list[TableLoad]
    seconds: float

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows(self) -> dict[str, int]:
        """Rows loaded per table."""
        return {t.table: t.rows for t in self.tables}

    def summary(self) -> str:
        lines = [f"loaded {self.folder}:"]
        for t in self.tables:
            lines.append(
                f"  {t.table:24} {t.rows:>12,} rows  {t.files:>3} file(s)  {t.seconds:7.2f} s  "
                f"{t.rows_per_second:>12,.0f} rows/s  ({t.mode})"
            )
        lines.append(
            f"  {'total':24} {self.total_rows:>12,} rows  {self.seconds:17.2f} s  "
            f"{self.rows_per_second:>12,.0f} rows/s"
        )
        return "\n".join(lines)


class _Segments:
    """Maps a line of the COPY stream back to (file, 1-based data row)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.where: list[tuple[str, int]] = []
        self.total = 0

    def add(self, label: str, file_offset: int, rows: int) -> None:
        self.starts.append(self.total)
        self.where.append((label, file_offset))
        self.total += rows

    def locate(self, line: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, line - 1) - 1
        if i < 0:
            return None
        label, offset = self.where[i]
        return label, offset + (line - 1 - self.starts[i]) + 1


# --------------------------------------------------------------------------- binary COPY encoding
#
# Rows go to the server in PostgreSQL's binary COPY format, built column-wise with numpy/pyarrow:
# the server then parses nothing (text timestamps cost it more than the inserts).  Each field is
# an int32 length (-1 for null) and the value in network byte order; each row starts with the
# int16 field count.  Fields are made as large_binary arrays and joined element-wise, so the data
# buffer of the joined array is the COPY stream of the batch.

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_PG_EPOCH_DAYS = 10_957
_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())
_EMPTY = pa.scalar(b"", pa.large_binary())
_NUMERIC_NEG = 0x4000


def _fixed_width(values: np.ndarray) -> pa.Array:
    """A large_binary array over the bytes of a 1-d numpy array, one element per value (zero copy)."""
    n, width = len(values), values.dtype.itemsize
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(values))]
    )


def _fixed_field(values: np.ndarray, be_dtype: str, valid: pa.Array | None) -> pa.Array:
    out = np.empty(len(values), dtype=[("len", ">i4"), ("value", be_dtype)])
    out["len"] = np.dtype(be_dtype).itemsize
    out["value"] = values
    arr = _fixed_width(out)
    return arr if valid is None else pc.if_else(valid, arr, _NULL_FIELD)


def _numeric_field(values: np.ndarray, precision: int, scale: int, valid: pa.Array | None) -> pa.Array:
    """PostgreSQL numeric binary: ndigits, weight, sign, dscale, then base-10000 digits."""
    int_groups = max(1, -(-(precision - scale) // 4))
    frac_groups = -(-scale // 4)
    ndigits = int_groups + frac_groups
    units = np.floor(np.abs(values) * 10.0**scale + 0.5).astype(np.int64)  # round half away from zero
    number = units * 10 ** (4 * frac_groups - scale)
    out = np.zeros(
        len(values),
        dtype=[
            ("len", ">i4"),
            ("ndigits", ">i2"),
            ("weight", ">i2"),
            ("sign", ">u2"),
            ("dscale", ">i2"),
            ("digits", ">i2", (ndigits,)),
        ],
    )
    out["len"] = 8 + 2 * ndigits
    out["ndigits"] = ndigits
    out["weight"] = int_groups - 1
    out["sign"] = np.where((values < 0) & (units > 0), _NUMERIC_NEG, 0)
    out["dscale"] = scale
    for i in range(ndigits - 1, -1, -1):
        out["digits"][:, i] = number % 10_000
        number //= 10_000
    arr = _fixed_width(out)
    return arr if valid is None else pc.if_else(valid, arr, _NULL_FIELD)


def _text_field(arr: pa.Array) -> pa.Array:
    lengths = pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False).astype(">i4")
    out = pc.binary_join_element_wise(_fixed_width(lengths), arr.cast(pa.large_binary()), _EMPTY)
    return pc.fill_null(out, _NULL_FIELD) if arr.null_count else out


def _field(arr: pa.Array, col: Column) -> pa.Array:
    if col.kind == "text":
        return _text_field(arr)
    valid = pc.is_valid(arr) if arr.null_count else None
    filled = arr.fill_null(0) if col.kind != "boolean" else arr.fill_null(False)
    if col.kind == "timestamp":
        return _fixed_field(filled.view(pa.int64()).to_numpy() - _PG_EPOCH_US, ">i8", valid)
    if col.kind == "date":
        return _fixed_field(filled.view(pa.int32()).to_numpy() - _PG_EPOCH_DAYS, ">i4", valid)
    if col.kind == "boolean":
        return _fixed_field(filled.to_numpy(zero_copy_only=False).astype(np.uint8), "u1", valid)
    values = filled.to_numpy()
    if col.kind == "integer":
        return _fixed_field(values, ">" + values.dtype.str[1:], valid)
    spec = _numeric_spec(col)
    if spec is not None:
        return _numeric_field(values, spec[0], spec[1], valid)
    if col.data_type.strip().lower() == "real":
        return _fixed_field(values.astype(np.float32), ">f4", valid)
    return _fixed_field(values, ">f8", valid)


def encode_binary(batch: pa.RecordBatch, columns: list[Column], source_file: str) -> pa.Buffer:
    """Rows of a validated batch (+ ``_source_file``) as binary COPY data (no signature/trailer)."""
    fields: list[pa.Array | pa.Scalar] = [_field(batch.column(i), c) for i, c in enumerate(columns)]
    label = source_file.encode()
    fields.append(pa.scalar(len(label).to_bytes(4, "big") + label, pa.large_binary()))
    count = pa.scalar(len(fields).to_bytes(2, "big"), pa.large_binary())
    rows = pc.binary_join_element_wise(count, *fields, _EMPTY)
    if not isinstance(rows, pa.Array):  # a batch of 0 rows joins to nothing useful
        return pa.py_buffer(b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=len(rows) + 1, offset=rows.offset * 8)
    return rows.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


_STOP = object()


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _produce(ts: TableSource, out: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: validated batches encoded for COPY (or the exception that stopped it)."""
    try:
        columns = [ts.table.column(c) for c in ts.columns]
        for src in ts.files:
            offset = 0
            for batch in validated_batches(ts, src):
                n = batch.num_rows
                if n == 0:
                    continue
                if not _put(out, (encode_binary(batch, columns, src.label), src.label, offset, n), stop):
                    return
                offset += n
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(out, exc, stop)
        return
    _put(out, _STOP, stop)


def _copy_table(
    conn: psycopg.Connection,
    ts: TableSource,
    target: sql.Composable,
    segments: _Segments,
    freeze: bool = False,
) -> int:
    """COPY every file of ``ts`` into ``target``; returns rows; ``segments`` maps stream lines to files."""
    cols = [*ts.columns, "_source_file"]
    stmt = sql.SQL("copy {} ({}) from stdin (format binary{})").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in cols), sql.SQL(", freeze" if freeze else "")
    )
    q: queue.Queue = queue.Queue(maxsize=3)
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(ts, q, stop), name=f"load-{ts.table.name}", daemon=True)
    worker.start()
    try:
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.write(COPY_SIGNATURE)
            while True:
                item = q.get()
                if item is _STOP:
                    break
                if isinstance(item, BaseException):
                    raise item
                buf, label, offset, n = item
                segments.add(label, offset, n)
                copy.write(memoryview(buf))
            copy.write(COPY_TRAILER)
    finally:
        stop.set()
        worker.join()
    return segments.total


def _where(segments: _Segments, exc: psycopg.Error) -> str:
    context = getattr(exc.diag, "context", None) or ""
    m = re.search(r"line (\d+)(?:, column (\w+))?", context)
    if not m:
        return ""
    located = segments.locate(int(m.group(1)))
    if located is None:
        return ""
    where = f"{located[0]}, row {located[1]}"
    return where + (f", column {m.group(2)}" if m.group(2) else "")


def _key_strings(batch: pa.RecordBatch, pk: tuple[str, ...]) -> pa.Array:
    parts = [pc.cast(batch.column(c), pa.string()) for c in pk]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ", ")


def find_duplicate(ts: TableSource) -> str | None:
    """Message naming the first row whose primary key already occurred in this load (error path)."""
    pk = ts.table.primary_key
    keys: list[pa.Array] = []
    where: list[tuple[str, int]] = []
    for src in ts.files:
        offset = 0
        for batch in validated_batches(ts, src):
            keys.append(_key_strings(batch, pk))
            where.append((src.label, offset))
            offset += batch.num_rows
    if not keys:
        return None
    lengths = [len(k) for k in keys]
    allkeys = pa.concat_arrays(keys)
    order = pc.sort_indices(allkeys)  # stable: equal keys keep their file order
    sorted_keys = allkeys.take(order)
    same = pc.equal(sorted_keys.slice(1), sorted_keys.slice(0, len(sorted_keys) - 1))
    later = pc.filter(order.slice(1), same)
    if len(later) == 0:
        return None
    dup = pc.min(later).as_py()
    key = allkeys[dup].as_py()
    first = pc.index(allkeys, key).as_py()

    def locate(i: int) -> tuple[str, int]:
        for n, (label, offset) in zip(lengths, where, strict=True):
            if i < n:
                return label, offset + i + 1
            i -= n
        raise AssertionError("index out of range")

    d_label, d_row = locate(dup)
    f_label, f_row = locate(first)
    first_where = f"row {f_row}" if f_label == d_label else f"{f_label}, row {f_row}"
    return (
        f"{d_label}, row {d_row}, column {', '.join(pk)}: duplicate primary key {key!r} "
        f"(first at {first_where})"
    )


def _estimated_rows(ts: TableSource) -> int:
    total = 0
    for src in ts.files:
        if src.fmt == "parquet":
            total += pq.ParquetFile(src.path).metadata.num_rows
        else:
            total += src.path.stat().st_size // (12 if src.path.name.lower().endswith(".gz") else 60)
    return total


@contextmanager
def _without_load_indexes(
    conn: psycopg.Connection, target: sql.Composable, table: Table, regclass: str, schema: str
) -> Iterator[None]:
    """Drop the primary key (and the table's lookup index) for the block, then build them once
    (sorted, parallel): far cheaper than maintaining them row by row for big loads.  A duplicate
    key fails the build (UniqueViolation)."""
    lookup = conn.execute(
        "select indexname, indexdef from pg_indexes where schemaname = %s and tablename = %s and indexname = %s",
        (schema, table.name, table.name + LOOKUP_INDEX_SUFFIX),
    ).fetchone()
    if lookup is not None:
        conn.execute(sql.SQL("drop index {}.{}").format(sql.Identifier(schema), sql.Identifier(lookup[0])))
    row = conn.execute(
        "select conname from pg_constraint where conrelid = %s::regclass and contype = 'p'", (regclass,)
    ).fetchone()
    if row is not None:
        conn.execute(sql.SQL("alter table {} drop constraint {}").format(target, sql.Identifier(row[0])))
    yield
    if row is not None:
        conn.execute(
            sql.SQL("alter table {} add constraint {} primary key ({})").format(
                target,
                sql.Identifier(row[0]),
                sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key),
            )
        )
    if lookup is not None:
        conn.execute(sql.SQL(lookup[1]))  # pg_get_indexdef of the index dropped above


def _load_table(conn: psycopg.Connection, ts: TableSource, schema: str) -> TableLoad:
    started = time.perf_counter()
    table = ts.table
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))
    regclass = f'"{schema}"."{table.name}"'
    direct = not _has_rows(conn, schema, table.name)
    staging = sql.Identifier(f"_load_{table.name}")
    conn.execute("savepoint load_table")
    segments = _Segments()
    big = direct and _estimated_rows(ts) >= REBUILD_KEY_ROWS
    if big:  # no other writer (the webhook writes email_events) may slip in from here to the commit
        conn.execute(sql.SQL("lock table {} in access exclusive mode").format(target))
        big = direct = not _has_rows(conn, schema, table.name)
    try:
        if big:
            # big first load: the (empty) table is truncated so COPY can write the rows frozen
            # (no hint-bit rewrite on the first read); the key's index is built after the COPY
            conn.execute(sql.SQL("truncate {}").format(target))
            with _without_load_indexes(conn, target, table, regclass, schema):
                rows = _copy_table(conn, ts, target, segments, freeze=True)
        elif direct:
            rows = _copy_table(conn, ts, target, segments)
        else:
            conn.execute(
                sql.SQL("create temp table {} (like {} including defaults) on commit drop").format(
                    staging, target
                )
            )
            rows = _copy_table(conn, ts, staging, segments)
            conn.execute(sql.SQL("analyze {}").format(staging))  # temp tables have no statistics
            # a re-delivery replaces the rows with the same key: delete them, then insert the new
            # ones (measured ~40% less server CPU than insert .. on conflict do update); a key
            # repeated within the load fails the insert (or the key's rebuild)
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*table.column_names, "_source_file"])
            match = sql.SQL(" and ").join(
                sql.SQL("t.{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in table.primary_key
            )
            existing = conn.execute(
                "select greatest(reltuples, 0) from pg_class where oid = %s::regclass", (regclass,)
            )
            in_table = float((existing.fetchone() or (0,))[0])
            # a big re-delivery (a sizeable share of the table): rebuild the key once instead of
            # inserting next to a dead index entry per replaced row (measured ~3x the CPU)
            rebuild = rows >= REBUILD_KEY_ROWS and rows * 4 >= in_table
            if rebuild:
                conn.execute(sql.SQL("lock table {} in access exclusive mode").format(target))
            with _without_load_indexes(conn, target, table, regclass, schema) if rebuild else nullcontext():
                conn.execute(
                    sql.SQL("delete from {} as t using {} as s where {}").format(target, staging, match)
                )
                conn.execute(
                    sql.SQL("insert into {} ({}) select {} from {}").format(target, cols, cols, staging)
                )
            conn.execute(sql.SQL("drop table {}").format(staging))
    except (psycopg.errors.UniqueViolation, psycopg.errors.CardinalityViolation) as exc:
        conn.execute("rollback to savepoint load_table")
        message = find_duplicate(ts)
        raise LoadError(
            message
            or f"table {table.name}: a primary key of this load was written concurrently by another "
            f"process ({exc.diag.message_detail or exc}); nothing was loaded, run the load again"
        ) from None
    except psycopg.errors.DataError as exc:
        where = _where(segments, exc)
        primary = exc.diag.message_primary or str(exc)
        raise LoadError(f"{where or 'table ' + table.name}: {primary}") from None
    conn.execute("release savepoint load_table")
    conn.execute(sql.SQL("analyze {}").format(target))
    return TableLoad(
        table.name, rows, len(ts.files), time.perf_counter() - started, "insert" if direct else "upsert"
    )


def _check_required(
    conn: psycopg.Connection, found: dict[str, TableSource], schema: str, folder: Path
) -> None:
    for group in REQUIRED_GROUPS:
        if any(t in found for t in group):
            continue
        if any(_has_rows(conn, schema, t) for t in group):
            continue
        names = " or ".join(group)
        raise LoadError(
            f"required data missing: {names} (no {' / '.join(f'{t}.csv|.csv.gz|.parquet|{t}/' for t in group)} "
            f"in {folder}, and {' and '.join(f'{schema}.{t}' for t in group)} "
            f"{'is' if len(group) == 1 else 'are'} empty)"
        )


def load_directory(path: str | Path, url: str | None = None) -> LoadReport:
    """Validate and load every contract file of ``path`` into raw, all or nothing."""
    from retention.db import connect

    started = time.perf_counter()
    folder = Path(path)
    found = discover(folder)
    for ts in found.values():
        check_headers(ts)
    schema = get_settings().raw_schema
    contract_order = list(load_contract())
    loads: list[TableLoad] = []
    with connect(url) as conn:
        # the lock first: the transaction's now(), every row's _loaded_at, is then the moment it
        # queued for the lock, so loads commit in _loaded_at order and the incremental models'
        # "loaded after the newest _loaded_at already processed" misses no committed load
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("set local synchronous_commit = off")
        conn.execute("set local timezone = 'UTC'")
        conn.execute("set local temp_buffers = '256MB'")  # staging tables of re-deliveries stay in memory
        ensure_raw_tables(conn, schema)  # its own take of the lock is a no-op here (already held)
        _check_required(conn, found, schema, folder)
        for name in sorted(found, key=contract_order.index):
            loads.append(_load_table(conn, found[name], schema))
    return LoadReport(str(folder), loads, time.perf_counter() - started)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retention load", description="Load contract files into schema raw."
    )
    parser.add_argument(
        "folder", help="folder of <table>.csv / .csv.gz / .parquet files or <table>/ part folders"
    )
    parser.add_argument("--url", default=None, help="warehouse URL (default: the configured warehouse)")
    args = parser.parse_args(argv)
    try:
        url = args.url
        if url is None:
            from retention.warehouse import ensure_warehouse

            url = ensure_warehouse()
        report = load_directory(args.folder, url=url)
    except (LoadError, ContractError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (psycopg.Error, RuntimeError) as exc:
        print(f"error: the warehouse failed during the load (nothing was loaded): {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
