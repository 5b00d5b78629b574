"""The Great Expectations quality gate: bad data stops the pipeline before anyone is contacted.

``run_gate(url=None, stage="all")`` validates the suites in ``expectations/`` (one YAML file per
table, see :mod:`retention.quality.suites`) against the warehouse with GX 1.x (an ephemeral
context, a Postgres data source, one table or query asset and one ``ValidationDefinition`` per
suite, one ``Checkpoint`` that also writes Data Docs to :func:`data_docs_index`), then:

1. records the run in ``ops.gate_runs`` and every expectation in ``ops.gate_results`` (one
   transaction; row counts there are the volume history),
2. logs every failure and warning,
3. on a failing *critical* expectation writes an alert (:func:`retention.alerts.send_alert`) and
   raises :class:`GateFailed`, whose message names suite, expectation, column and observed value.

Warnings (``meta.severity: warning``) are recorded and logged and never stop the run. A mart that
does not exist yet is skipped with a recorded warning; a missing *required* table is critical.

The gate never writes ``ops.outbox`` or anything outreach reads. It stops outreach because the DAG
runs it upstream of scoring, planning and sending (``dbt >> quality_gate >> ensure_champion >>
score >> plan_outreach >> send_batch``): a raised ``GateFailed`` fails the task, and Airflow's
default ``all_success`` trigger rule leaves every downstream task ``upstream_failed``.

Great Expectations is imported inside the functions that need it (the import costs seconds), never
at module level: DAG files import :mod:`retention.pipeline`, which imports this module lazily too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from retention.quality.history import (
    MISSING_TABLE_TYPE,
    ROW_COUNT_TYPE,
    Baseline,
    ResultRow,
    ensure_gate_tables,
    last_accepted_counts,
    record_run,
)
from retention.quality.suites import ExpectationSpec, SuiteError, SuiteSpec, load_suites, substitute
from retention.settings import get_settings

log = logging.getLogger(__name__)

Stage = Literal["raw", "marts", "all"]
Outcome = Literal["passed", "failed", "error", "skipped"]
DATA_DOCS_SITE = "retention_gate"
#: where Data Docs land with the default state folder (the README links this path)
DATA_DOCS_DEFAULT_PATH = ".state/gx/data_docs/index.html"
_EVIDENCE_ROWS = 3


def data_docs_dir() -> Path:
    """Folder of the gate's Data Docs site: ``<state_dir>/gx/data_docs``."""
    return Path(get_settings().state_dir) / "gx" / "data_docs"


def data_docs_index() -> Path:
    """The Data Docs entry page: ``<state_dir>/gx/data_docs/index.html``."""
    return data_docs_dir() / "index.html"


class GateError(RuntimeError):
    """The gate could not run at all (warehouse unreachable, broken suite file, GX error)."""


@dataclass(frozen=True)
class Finding:
    """One evaluated (or skipped) expectation."""

    suite: str
    table: str
    expectation: str
    column: str | None
    check: str
    severity: Literal["critical", "warning"]
    outcome: Outcome
    observed: Any
    message: str
    row_count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")

    def line(self) -> str:
        col = f" column {self.column}" if self.column else ""
        return f"suite {self.suite}: {self.expectation}{col} [{self.check}, {self.severity}]: {self.message}"


@dataclass
class GateResult:
    run_id: str
    stage: str
    as_of: date | None
    started_at: datetime
    finished_at: datetime
    findings: list[Finding]
    data_docs_index: Path | None
    alert_path: Path | None = None

    @property
    def failures(self) -> list[Finding]:
        """Failing critical expectations (these stop the pipeline)."""
        return [f for f in self.findings if f.severity == "critical" and f.failed]

    @property
    def warnings(self) -> list[Finding]:
        """Failing warning expectations and suites skipped because their table does not exist."""
        return [
            f
            for f in self.findings
            if f.severity == "warning" and (f.failed or f.expectation == MISSING_TABLE_TYPE)
        ]

    @property
    def status(self) -> str:
        if self.failures:
            return "failed"
        return "passed_with_warnings" if self.warnings else "passed"

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def row_counts(self) -> dict[str, int]:
        return {f.table: f.row_count for f in self.findings if f.row_count is not None}

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (the Airflow task's return value / XCom)."""
        return {
            "run_id": self.run_id,
            "stage": self.stage,
            "status": self.status,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "evaluated": sum(1 for f in self.findings if f.outcome != "skipped"),
            "critical_failures": [f.line() for f in self.failures],
            "warnings": [f.line() for f in self.warnings],
            "row_counts": self.row_counts,
            "data_docs": str(self.data_docs_index) if self.data_docs_index else None,
            "alert": str(self.alert_path) if self.alert_path else None,
        }


class GateFailed(RuntimeError):
    """A critical expectation failed. The message lists suite, expectation, column and observed value."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        lines = [f"  - {f.line()}" for f in result.failures]
        docs = f"; Data Docs: {result.data_docs_index}" if result.data_docs_index else ""
        super().__init__(
            f"quality gate failed (run {result.run_id}, stage {result.stage}): "
            f"{len(result.failures)} critical expectation(s) failed, outreach must not run{docs}\n"
            + "\n".join(lines)
        )


# --------------------------------------------------------------------------------------------
# planning: which suites, which tables exist, the run's parameters


@dataclass
class _Plan:
    suite: SuiteSpec
    schema: str  # real schema name
    table_name: str  # schema.table as recorded
    query: str | None
    params: dict[str, Any]
    expectations: list[tuple[ExpectationSpec, dict[str, Any]]]
    volume_note: str


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg2://`` (the driver GX's Postgres data source uses)."""
    for prefix in ("postgresql+psycopg2://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    raise GateError(f"warehouse URL must be postgresql://..., got {url.split('@')[-1]!r}")


def libpq_url(url: str) -> str:
    """The same URL without a SQLAlchemy driver suffix (psycopg wants ``postgresql://``)."""
    return "postgresql://" + sqlalchemy_url(url).split("://", 1)[1]


def _quoted_schemas() -> dict[str, str]:
    s = get_settings()
    return {"raw": f'"{s.raw_schema}"', "analytics": f'"{s.analytics_schema}"'}


def _schema_name(logical: str) -> str:
    s = get_settings()
    return s.raw_schema if logical == "raw" else s.analytics_schema


def select_suites(stage: Stage, names: Sequence[str] | None = None) -> list[SuiteSpec]:
    if stage not in ("raw", "marts", "all"):
        raise GateError(f"stage must be raw, marts or all, got {stage!r}")
    suites = [s for s in load_suites() if stage == "all" or s.stage == stage]
    if names is not None:
        unknown = sorted(set(names) - {s.name for s in suites})
        if unknown:
            raise GateError(f"no suite named {', '.join(unknown)} in stage {stage}")
        suites = [s for s in suites if s.name in set(names)]
    return suites


def _reference_times(as_of: date | None, now: datetime) -> dict[str, Any]:
    """Time parameters. Event times are judged against the end of the as-of day (business time
    zone) when an as-of date is given, else against now; ``_loaded_at`` always against now."""
    s = get_settings()
    tolerance = timedelta(minutes=s.gate_future_tolerance_minutes)
    if as_of is not None:
        event_ref = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=ZoneInfo(s.business_tz))
        event_ref = event_ref.astimezone(UTC)
    else:
        event_ref = now
    warn, error = timedelta(days=s.gate_freshness_warn_days), timedelta(days=s.gate_freshness_error_days)
    return {
        "as_of_date": (as_of or now.date()).isoformat(),
        "future_cutoff": (event_ref + tolerance).isoformat(),
        "loaded_warn_after": (now - warn).isoformat(),
        "loaded_error_after": (now - error).isoformat(),
        "event_warn_after": (event_ref - warn).isoformat(),
        "event_error_after": (event_ref - error).isoformat(),
        "event_error_after_date": (event_ref - error).date().isoformat(),
        "late_days": s.gate_late_days,
        "late_warn_share": s.gate_late_warn_share,
        "late_max_share": s.gate_late_max_share,
    }


def _contract_columns(table: str) -> list[str]:
    from retention.contract import LOADER_COLUMNS, load_contract

    contract = load_contract()
    if table not in contract:
        raise SuiteError(f"suite raw.{table} has no table {table!r} in the raw contract")
    return [*contract[table].column_names, *LOADER_COLUMNS]


def _table_state(conn: Any, schema: str, table: str) -> tuple[bool, bool]:
    """(exists, has rows) without counting the whole table."""
    from retention.db import table_exists

    if not table_exists(conn, schema, table):
        return False, False
    row = conn.execute(f'select exists (select 1 from "{schema}"."{table}")').fetchone()
    return True, bool(row and row[0])


def _volume(suite: SuiteSpec, table_name: str, baseline: Baseline | None) -> tuple[int, str]:
    floor = int(suite.meta.get("min_rows", 0))
    ratio = get_settings().gate_volume_min_ratio
    if baseline is None:
        return floor, f"no accepted count recorded yet; floor {floor} row(s)"
    minimum = max(floor, math.ceil(baseline.row_count * ratio))
    return minimum, (
        f"last accepted count {baseline.row_count} (gate run {baseline.run_id}, "
        f"{baseline.recorded_at:%Y-%m-%d %H:%M} UTC); minimum {minimum} = {ratio:.0%} of it"
    )


def _plan(
    conn: Any, suites: list[SuiteSpec], base_params: dict[str, Any]
) -> tuple[list[_Plan], list[Finding]]:
    """Plans for the suites whose tables exist, and findings for missing tables / skipped checks."""
    quoted = _quoted_schemas()
    names = {sp.name: f"{_schema_name(sp.schema)}.{sp.table}" for sp in suites}
    baselines = last_accepted_counts(conn, list(names.values()))
    plans: list[_Plan] = []
    findings: list[Finding] = []
    for suite in suites:
        schema = _schema_name(suite.schema)
        table_name = names[suite.name]
        exists, has_rows = _table_state(conn, schema, suite.table)
        if not exists:
            severity: Literal["critical", "warning"] = "critical" if suite.required else "warning"
            what = (
                "required table is missing" if suite.required else "table does not exist (yet): suite skipped"
            )
            findings.append(
                Finding(
                    suite.name,
                    table_name,
                    MISSING_TABLE_TYPE,
                    None,
                    "schema",
                    severity,
                    "failed" if suite.required else "skipped",
                    None,
                    f"{table_name}: {what}",
                )
            )
            continue
        minimum, note = _volume(suite, table_name, baselines.get(table_name))
        params = {**base_params, **quoted, "min_rows": minimum}
        if suite.schema == "raw":
            params["contract_columns"] = _contract_columns(suite.table)
        query = substitute(suite.query, params, f"{suite.path.name} meta.query") if suite.query else None
        chosen: list[tuple[ExpectationSpec, dict[str, Any]]] = []
        for spec in suite.expectations:
            kwargs = substitute(spec.kwargs, params, f"expectation suite {suite.path.name} ({spec.type})")
            if spec.skip_if_empty and not has_rows:
                findings.append(
                    Finding(
                        suite.name,
                        table_name,
                        spec.type,
                        spec.column,
                        spec.check,
                        spec.severity,
                        "skipped",
                        None,
                        "table is empty: check skipped",
                    )
                )
                continue
            chosen.append((spec, kwargs))
        plans.append(_Plan(suite, schema, table_name, query, params, chosen, note))
    return plans, findings


# --------------------------------------------------------------------------------------------
# running GX


def _gx_run(
    url: str, plans: list[_Plan], run_id: str, docs_dir: Path
) -> list[tuple[_Plan, ExpectationSpec, Any]]:
    """Validate every plan in one Checkpoint (which also writes Data Docs); returns raw results."""
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if "local_site" in context.list_data_docs_sites():  # the ephemeral default writes to a temp dir
        context.delete_data_docs_site("local_site")
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            DATA_DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    datasource = context.data_sources.add_postgres("warehouse", connection_string=sqlalchemy_url(url))
    by_key: dict[str, tuple[_Plan, ExpectationSpec]] = {}
    definitions = []
    try:
        for plan in plans:
            if plan.query:
                asset = datasource.add_query_asset(plan.suite.name, query=plan.query)
            else:
                asset = datasource.add_table_asset(
                    plan.suite.name, table_name=plan.suite.table, schema_name=plan.schema
                )
            batch = asset.add_batch_definition_whole_table("whole_table")
            expectations = []
            for i, (spec, kwargs) in enumerate(plan.expectations):
                key = f"{plan.suite.name}#{i}"
                by_key[key] = (plan, spec)
                try:
                    config = ExpectationConfiguration(
                        type=spec.type, kwargs=kwargs, meta={**spec.meta, "gate_key": key}
                    )
                    expectations.append(config.to_domain_obj())
                except Exception as exc:  # GX raises pydantic / its own errors for bad kwargs
                    raise SuiteError(
                        f"expectation suite {plan.suite.path.name}: {spec.type} {kwargs!r} is not a valid "
                        f"GX expectation: {exc}"
                    ) from None
            # one store write per suite (adding expectations one by one re-serialises the suite each time)
            suite = context.suites.add(
                ExpectationSuite(
                    name=plan.suite.name,
                    expectations=expectations,
                    meta={**plan.suite.meta, "table": plan.table_name},
                )
            )
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=plan.suite.name, data=batch, suite=suite)
                )
            )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="retention_quality_gate",
                validation_definitions=definitions,
                actions=[],
                result_format="BASIC",
            )
        )
        outcome = checkpoint.run(run_id=RunIdentifier(run_name=run_id))
        if docs_dir is not None:
            # Data Docs once for the whole run (UpdateDataDocsAction would rebuild the site per suite)
            context.build_data_docs(site_names=[DATA_DOCS_SITE])
        out: list[tuple[_Plan, ExpectationSpec, Any]] = []
        for validation in outcome.run_results.values():
            for result in validation.results:
                plan, spec = by_key[result.expectation_config.meta["gate_key"]]
                out.append((plan, spec, result))
        return out
    finally:
        try:
            datasource.get_engine().dispose()
        except Exception:  # the engine may never have been created
            log.debug("could not dispose the GX engine", exc_info=True)


def _exception_message(result: Any) -> str | None:
    info = result.exception_info or {}
    candidates = [info] if "raised_exception" in info else list(info.values())
    for item in candidates:
        if isinstance(item, dict) and item.get("raised_exception"):
            msg = str(item.get("exception_message") or "exception")
            return msg.strip().splitlines()[-1][:300]
    return None


def _short(value: Any, limit: int = 8) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(str(v) for v in value[:limit])
        return (
            f"[{shown}{', ...' if len(value) > limit else ''}] ({len(value)} values)"
            if len(value) > limit
            else f"[{shown}]"
        )
    return str(value)


def _expected(kwargs: dict[str, Any]) -> str:
    parts = []
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        if lo is not None and hi is not None:
            parts.append(f"between {lo} and {hi}")
        elif lo is not None:
            parts.append(f">= {lo}")
        elif hi is not None:
            parts.append(f"<= {hi}")
    if "value_set" in kwargs:
        parts.append(f"one of {_short(kwargs['value_set'])}")
    if "regex" in kwargs:
        parts.append(f"matching {kwargs['regex']}")
    if kwargs.get("mostly") is not None and kwargs["mostly"] < 1:
        parts.append(f"for at least {kwargs['mostly']:.0%} of rows")
    return "; expected " + ", ".join(parts) if parts else ""


def _evidence(url: str, plan: _Plan, query: str) -> list[dict[str, Any]] | str:
    """Re-run a failing unexpected-rows query (aggregate queries: a row or two) for the message."""
    import psycopg

    source = f"({plan.query}) as batch_query" if plan.query else f'"{plan.schema}"."{plan.suite.table}"'
    sql = query.replace("{batch}", source).replace("{{", "{").replace("}}", "}")
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            conn.execute("set statement_timeout = '60s'")
            cur = conn.execute(f"select * from ({sql}) as evidence limit {_EVIDENCE_ROWS}")
            cols = [d.name for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    except Exception as exc:
        return f"evidence unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def _fmt_rows(rows: list[dict[str, Any]] | str) -> str:
    if isinstance(rows, str):
        return rows
    return "; ".join(", ".join(f"{k}={_fmt_value(v)}" for k, v in row.items()) for row in rows)


def _fmt_value(v: Any) -> str:
    if isinstance(v, datetime):
        return v.isoformat(timespec="seconds")
    return str(v)


def _finding(url: str, plan: _Plan, spec: ExpectationSpec, kwargs: dict[str, Any], result: Any) -> Finding:
    res: dict[str, Any] = dict(result.result or {})
    error = _exception_message(result)
    observed: Any = res.get("observed_value")
    row_count: int | None = None
    details: dict[str, Any] = {}
    if error:
        outcome: Outcome = "error"
        message = f"could not be evaluated: {error}"
    else:
        outcome = "passed" if result.success else "failed"
        if spec.type == ROW_COUNT_TYPE:
            row_count = int(observed) if observed is not None else None
            message = f"row count {observed}; {plan.volume_note}"
        elif spec.type == "expect_table_columns_to_match_set":
            mismatch = (res.get("details") or {}).get("mismatched") or {}
            missing, extra = mismatch.get("missing") or [], mismatch.get("unexpected") or []
            details = {"missing": missing, "unexpected": extra}
            if result.success:
                message = f"columns {_short(observed, 30)}"
            else:
                hint = " (renamed column?)" if missing and extra else ""
                message = f"columns differ from the contract: missing {missing}, unexpected {extra}{hint}"
            observed = {"missing": missing, "unexpected": extra} if not result.success else observed
        elif spec.type == "unexpected_rows_expectation":
            message = f"{observed} offending row(s)"
            if not result.success:
                rows = _evidence(url, plan, kwargs["unexpected_rows_query"])
                details = {"evidence": rows}
                message += f": {_fmt_rows(rows)}"
                if spec.description:
                    message += f" ({spec.description})"
        elif "unexpected_count" in res:
            count, total = res.get("unexpected_count"), res.get("element_count")
            pct = res.get("unexpected_percent")
            sample = res.get("partial_unexpected_list") or []
            observed = count
            pct_text = f" ({pct:.2f}%)" if isinstance(pct, int | float) else ""
            message = f"{count} of {total} row(s) unexpected{pct_text}"
            if sample:
                message += f", e.g. {[_fmt_value(v) for v in sample[:5]]}"
            message += _expected(kwargs)
            details = {
                "unexpected_count": count,
                "element_count": total,
                "unexpected_percent": pct,
                "sample": [_fmt_value(v) for v in sample[:20]],
            }
        else:
            message = f"observed {_fmt_value(observed)}{_expected(kwargs)}"
    return Finding(
        suite=plan.suite.name,
        table=plan.table_name,
        expectation=spec.type,
        column=spec.column,
        check=spec.check,
        severity=spec.severity,
        outcome=outcome,
        observed=observed,
        message=message,
        row_count=row_count,
        details=details,
    )


# --------------------------------------------------------------------------------------------
# public API


def _resolve_as_of(as_of: date | None) -> date | None:
    if as_of is not None:
        return as_of
    frozen = get_settings().as_of_date
    return date.fromisoformat(frozen) if frozen else None


def run_gate(
    url: str | None = None,
    stage: Stage = "all",
    *,
    as_of: date | None = None,
    suites: Sequence[str] | None = None,
    alert: bool = True,
    data_docs: bool = True,
) -> GateResult:
    """Validate the warehouse; record, document and alert; raise :class:`GateFailed` on a critical failure.

    ``url``: the warehouse (default :func:`retention.db.default_url`). ``stage``: ``raw`` (the
    contract tables), ``marts`` (dbt marts and churn scores) or ``all``. ``as_of``: the business
    day event times are judged against (default ``RETENTION_AS_OF``, else now). ``suites``: only
    these suite names (e.g. ``["analytics.churn_scores"]`` for a check right after scoring).
    ``alert`` / ``data_docs``: write the alert / rebuild Data Docs (both on by default).
    """
    from retention.db import connect, default_url

    url = libpq_url(url or default_url())
    as_of = _resolve_as_of(as_of)
    run_id = f"gate-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    try:
        selected = select_suites(stage, suites)
    except SuiteError as exc:
        raise GateError(f"quality gate cannot load its suites: {exc}") from None
    log.info("quality gate %s: stage %s, %d suite(s), as-of %s", run_id, stage, len(selected), as_of or "now")

    docs_dir = data_docs_dir() if data_docs else None
    try:
        with connect(url) as conn:
            ensure_gate_tables(conn)
            plans, findings = _plan(conn, selected, _reference_times(as_of, started))
        raw_results = _gx_run(url, plans, run_id, docs_dir) if plans else []
    except (SuiteError, GateError) as exc:
        _record_error(url, run_id, stage, as_of, started, str(exc))
        raise GateError(f"quality gate {run_id} could not run: {exc}") from None
    except Exception as exc:
        _record_error(url, run_id, stage, as_of, started, f"{type(exc).__name__}: {exc}")
        raise GateError(f"quality gate {run_id} could not run: {type(exc).__name__}: {exc}") from exc

    for plan, spec, result in raw_results:
        kwargs = dict(result.expectation_config.kwargs)
        findings.append(_finding(url, plan, spec, kwargs, result))
    order = {s.name: i for i, s in enumerate(selected)}
    outcome_rank = {"failed": 0, "error": 1, "skipped": 2, "passed": 3}
    findings.sort(
        key=lambda f: (
            order.get(f.suite, 0),
            f.severity != "critical",
            outcome_rank[f.outcome],
            f.check != "schema",  # a renamed column first: the "column does not exist" errors follow from it
        )
    )

    index = data_docs_index() if plans and data_docs and data_docs_index().exists() else None
    result = GateResult(run_id, stage, as_of, started, datetime.now(UTC), findings, index)
    with connect(url) as conn:
        ensure_gate_tables(conn)
        record_run(
            conn,
            run_id=run_id,
            stage=stage,
            status=result.status,
            as_of=as_of,
            started_at=started,
            finished_at=result.finished_at,
            results=[_row(f) for f in findings],
            data_docs_path=str(index) if index else None,
            message="; ".join(f.line() for f in result.failures)[:4000] or None,
        )

    for f in result.warnings:
        log.warning("quality gate warning: %s", f.line())
    for f in result.failures:
        log.error("quality gate CRITICAL: %s", f.line())
    log.info(
        "quality gate %s: %s (%d evaluated, %d critical failure(s), %d warning(s)); Data Docs: %s",
        run_id,
        result.status,
        sum(1 for f in findings if f.outcome != "skipped"),
        len(result.failures),
        len(result.warnings),
        index,
    )
    if result.failures:
        if alert:
            from retention.alerts import send_alert

            record = send_alert(
                f"Quality gate failed: {len(result.failures)} critical check(s), pipeline stopped before outreach",
                [f.line() for f in result.failures],
                severity="critical",
                source="quality_gate",
                details=result.summary(),
                link=str(index) if index else None,
            )
            result.alert_path = record.json_path
        raise GateFailed(result)
    return result


def _row(f: Finding) -> ResultRow:
    observed = None if f.observed is None else json.dumps(f.observed, default=str)[:2000]
    return ResultRow(
        suite=f.suite,
        table_name=f.table,
        expectation_type=f.expectation,
        column_name=f.column,
        check_class=f.check,
        severity=f.severity,
        outcome=f.outcome,
        observed=observed,
        row_count=f.row_count,
        message=f.message[:4000],
        details=f.details,
    )


def _record_error(url: str, run_id: str, stage: str, as_of: date | None, started: datetime, msg: str) -> None:
    """Best effort: leave a trace of a gate that could not run (the raised error is what matters)."""
    from retention.db import connect

    try:
        with connect(url) as conn:
            ensure_gate_tables(conn)
            record_run(
                conn,
                run_id=run_id,
                stage=stage,
                status="error",
                as_of=as_of,
                started_at=started,
                finished_at=datetime.now(UTC),
                results=[],
                data_docs_path=None,
                message=msg[:4000],
            )
    except Exception:
        log.warning("could not record the failed gate run %s", run_id, exc_info=True)


def accept_volume(url: str | None = None, stage: Stage = "all") -> dict[str, int]:
    """Record today's row counts as the accepted volume baseline (after a deliberate shrink)."""
    from retention.db import connect, default_url, table_exists

    url = libpq_url(url or default_url())
    run_id = f"baseline-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    rows: list[ResultRow] = []
    with connect(url) as conn:
        ensure_gate_tables(conn)
        for suite in select_suites(stage):
            schema = _schema_name(suite.schema)
            if not table_exists(conn, schema, suite.table):
                continue
            name = f"{schema}.{suite.table}"
            if suite.query:
                source = f"({substitute(suite.query, _quoted_schemas(), suite.name)}) as q"
            else:
                source = f'"{schema}"."{suite.table}"'
            counts[name] = int(conn.execute(f"select count(*) from {source}").fetchone()[0])
            rows.append(
                ResultRow(
                    suite.name,
                    name,
                    ROW_COUNT_TYPE,
                    None,
                    "volume",
                    "critical",
                    "passed",
                    str(counts[name]),
                    counts[name],
                    "row count accepted as the new baseline by an operator",
                    {},
                )
            )
        record_run(
            conn,
            run_id=run_id,
            stage=stage,
            status="baseline",
            as_of=None,
            started_at=now,
            finished_at=datetime.now(UTC),
            results=rows,
            data_docs_path=None,
            message="operator accepted the current volumes",
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    """``retention gate [--stage raw|marts|all] [--url URL] [--as-of DATE] [--suite NAME ...] [--json]``"""
    parser = argparse.ArgumentParser(
        prog="retention gate", description="Run the Great Expectations quality gate."
    )
    parser.add_argument("--stage", choices=["raw", "marts", "all"], default="all")
    parser.add_argument("--url", default=None, help="warehouse URL (default: the configured warehouse)")
    parser.add_argument(
        "--as-of", default=None, help="business day (YYYY-MM-DD) event times are judged against"
    )
    parser.add_argument("--suite", action="append", default=None, help="only this suite (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-alert", action="store_true", help="do not write/post an alert on failure")
    parser.add_argument(
        "--accept-volume",
        action="store_true",
        help="record the current row counts as the accepted volume baseline and exit",
    )
    parser.add_argument("--docs-path", action="store_true", help="print the Data Docs index path and exit")
    args = parser.parse_args(argv or [])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.docs_path:
        print(data_docs_index())
        return 0
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        print(f"error: --as-of must be YYYY-MM-DD, got {args.as_of!r}", file=sys.stderr)
        return 2
    try:
        if args.accept_volume:
            counts = accept_volume(args.url, args.stage)
            print(
                json.dumps(counts, indent=2)
                if args.json
                else "\n".join(f"{k}: {v}" for k, v in counts.items())
            )
            return 0
        result = run_gate(args.url, args.stage, as_of=as_of, suites=args.suite, alert=not args.no_alert)
    except GateFailed as exc:
        print(json.dumps(exc.result.summary(), indent=2) if args.json else str(exc), file=sys.stderr)
        return 1
    except GateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(f"quality gate {result.run_id}: {result.status}")
        for f in result.warnings:
            print(f"  warning: {f.line()}")
        print(f"Data Docs: {result.data_docs_index}")
    return 0
