"""Writing a generated company: contract files, chunk by chunk, into a temporary sibling folder.

Small tables are one file each (``<table>.parquet`` / ``.csv``; one row group per chunk), the
four big tables are a sub-folder of parts (``<table>/part-00000.parquet`` ...), one part per
chunk.  Column names and types come from the raw contract.  The ground truth goes to
``ground_truth/churn_truth.parquet`` (always Parquet) with ``ground_truth/manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from retention.contract import Column, Table, load_contract

BIG_TABLES: tuple[str, ...] = ("usage_events", "order_lines", "orders", "payments")
NOT_GENERATED: tuple[str, ...] = ("email_events",)  # the SendGrid webhook fills it
TRUTH_DIR = "ground_truth"
TRUTH_FILE = "churn_truth.parquet"
MANIFEST_FILE = "manifest.json"
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("churned_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("true_reason", pa.string(), nullable=False),
        pa.field("mechanism", pa.string()),
    ]
)
_INT = {"smallint": pa.int16(), "integer": pa.int32(), "int": pa.int32(), "bigint": pa.int64()}


def arrow_type(col: Column) -> pa.DataType:
    kind = col.kind
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if kind == "date":
        return pa.date32()
    if kind == "integer":
        return _INT.get(col.data_type.lower(), pa.int64())
    if kind == "numeric":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    return pa.string()


def arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in table.columns])


def generated_tables() -> dict[str, Table]:
    return {name: t for name, t in load_contract().items() if name not in NOT_GENERATED}


class Output:
    """Streams chunks of every generated table into ``folder`` (which must exist and be empty)."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder = folder
        self.fmt = fmt
        self.tables = generated_tables()
        self.schemas = {name: arrow_schema(t) for name, t in self.tables.items()}
        self.rows = dict.fromkeys(self.tables, 0)
        self.truth_rows = 0
        self._writers: dict[str, Any] = {}
        self._parts = dict.fromkeys(BIG_TABLES, 0)
        for name in self.tables:
            if name in BIG_TABLES:
                (folder / name).mkdir()
            else:
                self._writers[name] = self._open(folder / f"{name}.{fmt}", self.schemas[name])
        (folder / TRUTH_DIR).mkdir()
        self._truth = pq.ParquetWriter(folder / TRUTH_DIR / TRUTH_FILE, TRUTH_SCHEMA, compression="snappy")

    def _open(self, path: Path, schema: pa.Schema) -> Any:
        if self.fmt == "csv":
            return pa_csv.CSVWriter(str(path), schema)
        return pq.ParquetWriter(path, schema, compression="snappy")

    def _conform(self, name: str, table: pa.Table) -> pa.Table:
        schema = self.schemas[name]
        if table.column_names != schema.names:
            table = table.select(schema.names)
        return table.cast(schema)

    def write_chunk(self, tables: dict[str, pa.Table], truth: pa.Table) -> None:
        for name in self.tables:
            table = tables.get(name)
            if table is None:
                table = self.schemas[name].empty_table()
            table = self._conform(name, table)
            self.rows[name] += table.num_rows
            if name in BIG_TABLES:
                if table.num_rows == 0:
                    continue
                path = self.folder / name / f"part-{self._parts[name]:05d}.{self.fmt}"
                self._parts[name] += 1
                if self.fmt == "csv":
                    pa_csv.write_csv(table, str(path))
                else:
                    pq.write_table(table, path, compression="snappy")
            elif table.num_rows:
                self._writers[name].write_table(table)
        truth = truth.cast(TRUTH_SCHEMA)
        self.truth_rows += truth.num_rows
        if truth.num_rows:
            self._truth.write_table(truth)

    def close(self, manifest: dict[str, Any]) -> None:
        for name in BIG_TABLES:  # a table with no rows at all still gets one (empty) part
            if name in self.tables and self._parts[name] == 0:
                path = self.folder / name / f"part-00000.{self.fmt}"
                empty = self.schemas[name].empty_table()
                if self.fmt == "csv":
                    pa_csv.write_csv(empty, str(path))
                else:
                    pq.write_table(empty, path)
        self.abort()
        manifest = {**manifest, "rows": self.rows, "truth_rows": self.truth_rows}
        (self.folder / TRUTH_DIR / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._truth is not None:
            self._truth.close()
            self._truth = None
