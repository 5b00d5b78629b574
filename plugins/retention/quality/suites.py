"""The expectation suites under ``expectations/``: one YAML file per table, in GX's suite shape.

A suite file looks like GX 1.x's serialised ``ExpectationSuite`` (``name``, ``meta``,
``expectations`` with ``type``/``kwargs``/``meta``) plus two conventions of ours:

* ``meta`` of the suite names the table: ``stage`` (raw | marts), ``schema`` (the logical schema
  ``raw`` or ``analytics``; the real names come from the settings), ``table``, ``required``
  (a missing required table is critical, a missing optional one a recorded warning) and
  optionally ``query`` (validate a query instead of the whole table, e.g. the latest scores).
* every expectation's ``meta.severity`` is ``critical`` (a failure stops the pipeline) or
  ``warning`` (recorded, does not stop); ``meta.check`` names the class of check (schema, volume,
  uniqueness, nulls, range, allowed, format, future, freshness, late, distribution, integrity) and
  ``meta.skip_if_empty`` skips it on an empty table (e.g. freshness of an optional table).

Values that depend on the run are written as ``"${name}"`` and filled in by the gate: a value that
is exactly ``"${name}"`` takes the parameter's type (a list, a number, a timestamp string); inside a
longer string (SQL of ``unexpected_rows_expectation``) the parameter is pasted as text.  Schemas
in SQL are ``${raw}`` and ``${analytics}`` (already quoted identifiers).

This module does not import Great Expectations; :func:`load_suites` only parses and checks shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from retention.settings import PROJECT_ROOT

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SEVERITIES = ("critical", "warning")
STAGES = ("raw", "marts")
SCHEMAS = ("raw", "analytics")
CHECKS = (
    "schema",
    "volume",
    "uniqueness",
    "nulls",
    "range",
    "allowed",
    "format",
    "future",
    "freshness",
    "late",
    "distribution",
    "integrity",
)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster
_PARAM = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")

Severity = Literal["critical", "warning"]


class SuiteError(ValueError):
    """A suite file is malformed or refers to an unknown parameter; the message names the file."""


@dataclass(frozen=True)
class ExpectationSpec:
    type: str
    kwargs: dict[str, Any]
    severity: Severity
    check: str
    description: str
    skip_if_empty: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ",".join(self.kwargs["column_list"])
        return None


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    stage: Literal["raw", "marts"]
    schema: Literal["raw", "analytics"]
    table: str
    required: bool
    description: str
    expectations: tuple[ExpectationSpec, ...]
    path: Path
    query: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def checks(self) -> set[str]:
        return {e.check for e in self.expectations}


def _fail(path: Path, msg: str) -> SuiteError:
    return SuiteError(f"expectation suite {path.name}: {msg}")


def _parse_expectation(path: Path, i: int, raw: Any) -> ExpectationSpec:
    where = f"expectation #{i + 1}"
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise _fail(
            path, f"{where} needs a 'type' (a GX expectation name such as expect_column_values_to_be_unique)"
        )
    kwargs = raw.get("kwargs", {})
    meta = raw.get("meta", {})
    if not isinstance(kwargs, dict) or not isinstance(meta, dict):
        raise _fail(path, f"{where} ({raw['type']}): 'kwargs' and 'meta' must be mappings")
    severity = meta.get("severity")
    if severity not in SEVERITIES:
        raise _fail(
            path, f"{where} ({raw['type']}): meta.severity must be critical or warning, got {severity!r}"
        )
    check = meta.get("check")
    if check not in CHECKS:
        raise _fail(
            path, f"{where} ({raw['type']}): meta.check must be one of {', '.join(CHECKS)}, got {check!r}"
        )
    return ExpectationSpec(
        type=raw["type"],
        kwargs=dict(kwargs),
        severity=severity,
        check=check,
        description=str(meta.get("description", "")),
        skip_if_empty=bool(meta.get("skip_if_empty", False)),
        meta=dict(meta),
    )


def load_suite(path: Path) -> SuiteSpec:
    try:
        doc = yaml.load(Path(path).read_text(), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"expectation suite {path}: cannot read it: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(path, "the file must be a mapping with name, meta and expectations")
    name, meta, exps = doc.get("name"), doc.get("meta"), doc.get("expectations")
    if not isinstance(name, str) or not isinstance(meta, dict) or not isinstance(exps, list) or not exps:
        raise _fail(path, "needs a 'name', a 'meta' mapping and a non-empty 'expectations' list")
    if meta.get("stage") not in STAGES:
        raise _fail(path, f"meta.stage must be one of {STAGES}, got {meta.get('stage')!r}")
    if meta.get("schema") not in SCHEMAS:
        raise _fail(path, f"meta.schema must be one of {SCHEMAS}, got {meta.get('schema')!r}")
    if not isinstance(meta.get("table"), str) or not meta["table"]:
        raise _fail(path, "meta.table is missing")
    if name != f"{meta['schema']}.{meta['table']}":
        raise _fail(path, f"name {name!r} must be '<schema>.<table>' = {meta['schema']}.{meta['table']}")
    specs = tuple(_parse_expectation(path, i, e) for i, e in enumerate(exps))
    seen: set[str] = set()
    for spec in specs:
        key = f"{spec.type}:{sorted(spec.kwargs.items())!r}"
        if key in seen:
            raise _fail(path, f"{spec.type} with the same kwargs appears twice (GX would merge them)")
        seen.add(key)
    if not any(s.type == "expect_table_row_count_to_be_between" for s in specs):
        raise _fail(path, "needs an expect_table_row_count_to_be_between (the volume history reads it)")
    query = meta.get("query")
    if query is not None and (not isinstance(query, str) or "${" not in query):
        raise _fail(path, "meta.query must be SQL text naming its schema as ${raw} or ${analytics}")
    return SuiteSpec(
        name=name,
        stage=meta["stage"],
        schema=meta["schema"],
        table=meta["table"],
        required=bool(meta.get("required", False)),
        description=str(meta.get("description", "")),
        expectations=specs,
        path=Path(path),
        query=query,
        meta=dict(meta),
    )


def load_suites(directory: Path = EXPECTATIONS_DIR) -> list[SuiteSpec]:
    """Every ``*.yml`` suite of the folder, raw stage first, then marts, each sorted by name."""
    files = sorted(Path(directory).glob("*.yml"))
    if not files:
        raise SuiteError(f"no expectation suites (*.yml) in {directory}")
    suites = [load_suite(p) for p in files]
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SuiteError(f"expectation suites defined twice in {directory}: {', '.join(dupes)}")
    return sorted(suites, key=lambda s: (STAGES.index(s.stage), s.name))


def substitute(value: Any, params: dict[str, Any], where: str) -> Any:
    """Fill ``${name}`` parameters into a kwargs value (recursively); unknown names raise SuiteError."""
    if isinstance(value, dict):
        return {k: substitute(v, params, where) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _PARAM.fullmatch(value)
    if whole:
        name = whole.group(1)
        if name not in params:
            raise SuiteError(f"{where}: unknown parameter ${{{name}}} (known: {', '.join(sorted(params))})")
        return params[name]

    def _one(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise SuiteError(
                f"{where}: unknown parameter ${{{m.group(1)}}} (known: {', '.join(sorted(params))})"
            )
        return str(params[m.group(1)])

    return _PARAM.sub(_one, value)
