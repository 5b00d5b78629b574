"""What the DAG tasks do: thin, importable, unit-testable callables.

DAG files only wire these together. Heavy libraries (GX, scikit-learn, SendGrid) are imported
inside the functions, so importing this module (at DAG parse time) is cheap and touches no
database.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from retention.settings import get_settings

log = logging.getLogger(__name__)


def dag_kwargs(retry_minutes: int) -> dict[str, Any]:
    """What every DAG of the project shares: start, no catch-up, one run at a time, owner and
    retries from the settings (exponential back-off from ``retry_minutes``)."""
    s = get_settings()
    return {
        "start_date": datetime(2026, 1, 1, tzinfo=UTC),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {
            "owner": s.dag_owner,
            "retries": s.dag_retries,
            "retry_delay": timedelta(minutes=retry_minutes),
            "retry_exponential_backoff": True,
        },
    }


def resolve_as_of(ds: str | None) -> date:
    """The business day of a run: ``RETENTION_AS_OF`` when set (demo, tests), else the run's ds."""
    frozen = get_settings().as_of_date
    if frozen:
        return date.fromisoformat(frozen)
    if not ds:
        raise ValueError("the run has no logical date (ds) and RETENTION_AS_OF is not set")
    return date.fromisoformat(ds)


def dbt_vars_template() -> dict[str, str]:
    """dbt vars for Cosmos, rendered by Airflow at run time (no database access here)."""
    frozen = get_settings().as_of_date
    return {"as_of_date": frozen or "{{ ds }}"}


def prepare_raw() -> dict[str, int]:
    """Make sure every contract table exists (optional ones empty), so dbt sources resolve."""
    from retention.db import connect
    from retention.loader import ensure_raw_tables
    from retention.outreach.models import ensure_outreach_tables

    with connect() as conn:
        ensure_raw_tables(conn)
        ensure_outreach_tables(conn)
        s = get_settings()
        counts = {
            t: conn.execute(f'select count(*) from "{s.raw_schema}"."{t}"').fetchone()[0]
            for t in ("customers", "subscriptions", "orders")
        }
    if counts["customers"] == 0:
        raise fail_fast(DataProblem("raw.customers is empty: load data first (retention load DIR)"))
    if counts["subscriptions"] == 0 and counts["orders"] == 0:
        raise fail_fast(
            DataProblem("raw has customers but neither subscriptions nor orders: nothing to analyse")
        )
    log.info("raw row counts: %s", counts)
    return counts


class DataProblem(RuntimeError):
    """Bad data: retrying cannot help, so the task fails at once (no retries)."""


def fail_fast(exc: Exception) -> Exception:
    """The exception a task should raise for bad data: Airflow's no-retry failure when available."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # outside Airflow (CLI, tests)
        return DataProblem(str(exc))
    return AirflowFailException(str(exc))


#: suites that validate the model's output: checked right after scoring, not before it
SCORE_SUITES = ("analytics.churn_scores",)


def quality_gate(scores: bool = False) -> dict[str, Any]:
    """Great Expectations gate; a critical failure fails the task at once (no retries), so
    nothing downstream (scoring, outreach) runs on bad data.

    ``scores=False``: every suite but the churn scores' (run after dbt); ``scores=True``: only
    the churn scores' (run after scoring, before any outreach is planned).
    """
    from retention.quality.gate import GateFailed, run_gate
    from retention.quality.suites import load_suites

    names = [suite.name for suite in load_suites() if (suite.name in SCORE_SUITES) == scores]
    try:
        result = run_gate(suites=names, data_docs=not scores)
    except GateFailed as exc:
        raise fail_fast(exc) from exc
    return result.summary()


def ensure_champion() -> dict[str, Any]:
    """Train a first model when no champion exists (the weekly DAG retrains)."""
    from ml.registry import has_champion
    from ml.train import train_and_maybe_promote

    if has_champion():
        return {"trained": False, "reason": "champion exists"}
    summary = train_and_maybe_promote()
    if not has_champion():
        raise RuntimeError(f"no champion model after training: {summary}")
    return {"trained": True, **summary}


def train_weekly() -> dict[str, Any]:
    from ml.train import train_and_maybe_promote

    return train_and_maybe_promote()


def score(ds: str | None) -> dict[str, Any]:
    from ml.score import score as score_customers

    return score_customers(as_of=resolve_as_of(ds))


def monitor() -> dict[str, Any]:
    from ml.monitor import monitor as monitor_model

    return monitor_model()


def plan_outreach(ds: str | None) -> list[str]:
    """Plan the day's campaigns (decision log + outbox); return the batch keys to fan out."""
    from retention.outreach.planner import plan_day

    day = resolve_as_of(ds)
    result = plan_day(day=day)
    log.info("outreach plan for %s: %s", day, getattr(result, "outcome_counts", result))
    return sorted(result.batch_keys) if hasattr(result, "batch_keys") else []


def send_batch(batch_key: str, ds: str | None) -> str:
    """Send one campaign x segment batch exactly once; fail (Airflow retries) if anything is open."""
    from retention.outreach.outbox import send_batch as send

    result = send(None, batch_key, planned_on=resolve_as_of(ds))
    return result.raise_for_incomplete().summary()


def team_digests(ds: str | None) -> dict[str, Any]:
    from retention.outreach.team_alerts import send_digests

    return send_digests(day=resolve_as_of(ds))
