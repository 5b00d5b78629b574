"""The raw data contract, read from dbt's source YAML (the single source of truth).

``load_contract()`` returns the tables of schema ``raw`` with their columns, types, primary
keys and checks; the loader, the generator, the README and the tests use it, so a column
added to the YAML is added everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from retention.settings import PROJECT_ROOT

SOURCES_FILE = PROJECT_ROOT / "dbt_project" / "models" / "staging" / "_raw__sources.yml"

#: columns the loader adds to every raw table (not part of the files)
LOADER_COLUMNS = {"_loaded_at": "timestamptz not null default now()", "_source_file": "text"}


class ContractError(ValueError):
    """The contract YAML itself is malformed."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    description: str
    nullable: bool = True
    min: float | None = None
    format: str | None = None
    allowed: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        """Coarse type used for parsing: text, timestamp, date, integer, numeric, boolean."""
        t = self.data_type.lower()
        if t.startswith("timestamp"):
            return "timestamp"
        if t == "date":
            return "date"
        if t in {"integer", "bigint", "smallint", "int"}:
            return "integer"
        if t.startswith("numeric") or t in {"double precision", "real"}:
            return "numeric"
        if t == "boolean":
            return "boolean"
        return "text"


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    required: bool
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def ddl(self, schema: str) -> str:
        cols = [f'"{c.name}" {c.data_type}' + ("" if c.nullable else " not null") for c in self.columns]
        cols += [f'"{name}" {spec}' for name, spec in LOADER_COLUMNS.items()]
        pk = ", ".join(f'"{c}"' for c in self.primary_key)
        cols.append(f"primary key ({pk})")
        return f'create table if not exists "{schema}"."{self.name}" (\n  ' + ",\n  ".join(cols) + "\n)"


@lru_cache(maxsize=4)
def load_contract(path: Path = SOURCES_FILE) -> dict[str, Table]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
        source = next(s for s in doc["sources"] if s["name"] == "raw")
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError) as exc:
        raise ContractError(f"cannot read the raw contract from {path}: {exc}") from None
    tables: dict[str, Table] = {}
    for t in source["tables"]:
        meta = t.get("meta", {})
        columns = []
        for c in t["columns"]:
            cm = c.get("meta", {})
            if "data_type" not in c:
                raise ContractError(f"raw.{t['name']}.{c['name']} has no data_type in {path}")
            columns.append(
                Column(
                    name=c["name"],
                    data_type=c["data_type"],
                    description=c.get("description", ""),
                    nullable=cm.get("nullable", True),
                    min=cm.get("min"),
                    format=cm.get("format"),
                    allowed=tuple(cm["allowed"]) if cm.get("allowed") else None,
                )
            )
        pk = tuple(meta.get("primary_key", []))
        if not pk:
            raise ContractError(f"raw.{t['name']} has no primary_key in {path}")
        tables[t["name"]] = Table(
            name=t["name"],
            description=t.get("description", ""),
            required=bool(meta.get("required", False)),
            primary_key=pk,
            columns=tuple(columns),
        )
    return tables


def contract_markdown() -> str:
    """The contract as Markdown tables (rendered into the README)."""
    out: list[str] = []
    for table in load_contract().values():
        req = "required" if table.required else "optional"
        out.append(f"#### `raw.{table.name}` ({req}; key: {', '.join(table.primary_key)})\n")
        out.append(f"{table.description}\n")
        out.append("| column | type | null | rule | description |")
        out.append("|---|---|---|---|---|")
        for c in table.columns:
            rules = []
            if c.min is not None:
                rules.append(f">= {c.min}")
            if c.format:
                rules.append(c.format)
            if c.allowed:
                rules.append("one of " + ", ".join(c.allowed))
            out.append(
                f"| `{c.name}` | {c.data_type} | {'yes' if c.nullable else 'no'} | "
                f"{'; '.join(rules)} | {c.description} |"
            )
        out.append("")
    return "\n".join(out)
