"""Audience builders: who each campaign considers today, and in which step.

A builder reads warehouse tables with SQL and returns a DataFrame with one row per considered
(customer, step):

    customer_id  text
    step         the campaign step id (from campaigns.yml)
    cycle        e.g. the renewal date, the error code, the lapse date ('' when none)
    score        ranking inside the one-message-a-day slot (NaN: the customer's value is used)
    preset       None, or an outcome the audience already decided ('sequence_stopped', 'let_go')
    detail       why (free text for the decision log)
    ctx_*        template variables (no personal data beyond what the template needs)

A table the builder needs that does not exist (optional data) raises :class:`AudienceUnavailable`;
the planner logs the reason and the campaign yields nobody.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from retention.db import table_exists
from retention.settings import get_settings

if TYPE_CHECKING:
    from retention.outreach.campaigns import Campaign

log = logging.getLogger(__name__)

COLUMNS = ["customer_id", "step", "cycle", "score", "preset", "detail"]


class AudienceUnavailable(LookupError):
    """A table the audience needs does not exist; the campaign yields nobody today."""


# --- SQL helpers -------------------------------------------------------------------------------


def read_frame(
    conn: psycopg.Connection,
    query: str | sql.Composable,
    params: Any = None,
    types: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Run a query and return a DataFrame (read with COPY ... TO STDOUT, fast for millions of rows).

    Every column arrives as text; ``types`` converts columns: float | int | bool | date (the
    latter to datetime64 at midnight, so comparisons and day differences are vectorised)."""
    text = query.as_string(conn) if isinstance(query, sql.Composable) else query
    if params is not None:
        text = psycopg.ClientCursor(conn).mogrify(text, params)
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(f"copy ({text}) to stdout with (format csv, header true)") as cp:
        for chunk in cp:
            buf.write(chunk)
    buf.seek(0)
    # object columns (not pandas' arrow strings): hashing, isin and tolist stay in C
    frame = pd.read_csv(buf, dtype=object, keep_default_na=False, na_values=[""])
    for name, kind in (types or {}).items():
        if name not in frame.columns:
            continue
        col = frame[name]
        if kind == "float":
            frame[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif kind == "int":
            frame[name] = pd.to_numeric(col, errors="coerce").fillna(0).astype("int64")
        elif kind == "bool":
            frame[name] = (
                col.map({"t": True, "f": False, "true": True, "false": False}).fillna(False).astype(bool)
            )
        elif kind == "date":
            frame[name] = pd.to_datetime(col, errors="coerce").astype("datetime64[ns]")
    return frame


def write_frame(
    conn: psycopg.Connection, table: sql.Composable, columns: list[str], frame: pd.DataFrame
) -> None:
    """COPY ``frame[columns]`` into ``table`` (CSV written by pyarrow: about ten times faster than
    pandas' ``to_csv`` at a million rows). Missing values become NULL, empty strings stay empty
    strings (pyarrow quotes every string, PostgreSQL reads an unquoted empty field as NULL)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not len(frame):
        return
    table_ = pa.Table.from_pandas(frame[columns], preserve_index=False)
    buf = io.BytesIO()
    pacsv.write_csv(table_, buf, write_options=pacsv.WriteOptions(include_header=False))
    stmt = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        cp.write(buf.getbuffer())


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def first_table(conn: psycopg.Connection, *candidates: tuple[str, str]) -> sql.Composed | None:
    """The first existing table of (schema, table) candidates, or None."""
    for schema, table in candidates:
        if table_exists(conn, schema, table):
            return qualified(schema, table)
    return None


def need_table(conn: psycopg.Connection, *candidates: tuple[str, str]) -> sql.Composed:
    found = first_table(conn, *candidates)
    if found is None:
        names = " or ".join(f"{s}.{t}" for s, t in candidates)
        raise AudienceUnavailable(f"table {names} does not exist")
    return found


def _analytics(table: str) -> tuple[str, str]:
    return (get_settings().analytics_schema, table)


def _raw(table: str) -> tuple[str, str]:
    return (get_settings().raw_schema, table)


def _ops(table: str) -> tuple[str, str]:
    return (get_settings().ops_schema, table)


def empty_audience() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS}).astype({"score": "float64"})


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    for c in COLUMNS:
        if c not in frame.columns:
            frame[c] = np.nan if c == "score" else None
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["cycle"] = frame["cycle"].fillna("").astype(str)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype("float64")
    ctx = [c for c in frame.columns if c.startswith("ctx_")]
    return frame[[*COLUMNS, *ctx]].reset_index(drop=True)


def load_contacts(conn: psycopg.Connection, customer_ids: Any = None) -> pd.DataFrame:
    """customer_id, email, time_zone, marketing_consent, customer_value (analytics.dim_customers,
    else raw.customers without a value); only of ``customer_ids`` when given (they are uploaded with
    one COPY into a temporary table: reading is the slow direction). Empty when neither table exists."""
    dim = first_table(conn, _analytics("dim_customers"))
    if dim is not None:
        cols = sql.SQL("c.customer_id, c.email, c.time_zone, c.marketing_consent, c.customer_value")
        source = dim
    else:
        source = first_table(conn, _raw("customers"))
        if source is None:
            log.warning("no analytics.dim_customers and no raw.customers: nobody can be contacted")
            return pd.DataFrame(
                columns=["customer_id", "email", "time_zone", "marketing_consent", "customer_value"]
            )
        cols = sql.SQL(
            "c.customer_id, c.email, c.time_zone, c.marketing_consent, null::numeric as customer_value"
        )
    if customer_ids is None:
        q = sql.SQL("select {} from {} c").format(cols, source)
    else:
        conn.execute("create temp table if not exists _considered (customer_id text) on commit drop")
        conn.execute("truncate _considered")
        buf = io.StringIO()
        pd.Series(customer_ids, dtype=object).to_csv(buf, index=False, header=False)
        with (
            conn.cursor() as cur,
            cur.copy("copy _considered (customer_id) from stdin with (format csv)") as cp,
        ):
            cp.write(buf.getvalue())
        conn.execute("analyze _considered")
        q = sql.SQL(
            "select {} from {} c join (select distinct customer_id from _considered) k using (customer_id)"
        ).format(cols, source)
    frame = read_frame(conn, q, types={"marketing_consent": "bool", "customer_value": "float"})
    return frame.drop_duplicates("customer_id")


# --- builders ----------------------------------------------------------------------------------


def renewal_calendar(conn: psycopg.Connection, campaign: Campaign, day: date) -> pd.DataFrame:
    """Subscriptions whose T-7 / T-1 / T0 / T+7 falls on ``day`` (cycle = renewal date).

    The sequence stops the moment the customer renews: a cycle we already wrote to (ops.outbox)
    whose subscription's renewal date has moved past the cycle's date, or a due cycle with a
    succeeded payment for the subscription since T-7, gives ``sequence_stopped``."""
    cal = need_table(conn, _analytics("fct_renewal_calendar"))
    offsets = {s.offset_days: s.id for s in campaign.steps}
    due_dates = [day - timedelta(days=off) for off in offsets]
    due = read_frame(
        conn,
        sql.SQL(
            "select subscription_id, customer_id, plan, price, renewal_date, is_cancelled "
            "from {} where renewal_date = any(%(dates)s)"
        ).format(cal),
        {"dates": due_dates},
        types={"price": "float", "renewal_date": "date", "is_cancelled": "bool"},
    )
    due["cycle_date"] = due["renewal_date"]
    due["stopped"] = False
    due["detail"] = None

    pay = first_table(conn, _analytics("stg_raw__payments"), _raw("payments"))
    if pay is not None and len(due):
        # the latest succeeded payment per subscription; it stops the cycle when made since T-7
        paid = read_frame(
            conn,
            sql.SQL(
                "select subscription_id, max(attempted_at)::date as paid_on from {} "
                "where status = 'succeeded' and subscription_id = any(%(subs)s) "
                "and attempted_at::date >= %(since)s and attempted_at::date <= %(day)s group by 1"
            ).format(pay),
            {
                "subs": due["subscription_id"].tolist(),
                "since": min(due_dates) - timedelta(days=7),
                "day": day,
            },
            types={"paid_on": "date"},
        )
        if len(paid):
            due = due.merge(paid, on="subscription_id", how="left")
            renewed = due["paid_on"].notna() & (due["paid_on"] >= due["renewal_date"] - pd.Timedelta(days=7))
            due.loc[renewed, "stopped"] = True
            due.loc[renewed, "detail"] = "renewed: payment succeeded on " + due.loc[
                renewed, "paid_on"
            ].dt.strftime("%Y-%m-%d")
            due = due.drop(columns=["paid_on"])

    # open sequences (we wrote to the customer for a cycle) whose renewal date moved on
    outbox = qualified(*_ops("outbox"))
    cycles = [d.isoformat() for d in due_dates]
    opened = read_frame(
        conn,
        sql.SQL(
            "with opened as (select distinct customer_id, cycle, context->>'subscription_id' as subscription_id "
            "from {ob} where campaign_id = %(cid)s and cycle = any(%(cycles)s) "
            "and state in ('pending', 'sending', 'sent')) "
            "select o.customer_id, o.cycle, o.subscription_id, c.renewal_date, c.plan, c.price, c.is_cancelled "
            "from opened o join {cal} c on c.subscription_id = o.subscription_id"
        ).format(ob=outbox, cal=cal),
        {"cid": campaign.id, "cycles": cycles},
        types={"renewal_date": "date", "price": "float", "is_cancelled": "bool"},
    )
    if len(opened):
        opened["cycle_date"] = pd.to_datetime(opened["cycle"], errors="coerce")
        moved = opened[opened["renewal_date"] > opened["cycle_date"]].copy()
        moved["stopped"] = True
        moved["detail"] = "renewed: renewal date moved to " + moved["renewal_date"].dt.strftime("%Y-%m-%d")
        due = pd.concat([due, moved.drop(columns=["cycle"])], ignore_index=True)

    if not len(due):
        return empty_audience()
    offset = (pd.Timestamp(day) - due["cycle_date"]).dt.days
    due["step"] = offset.map(offsets)
    # the win-back step is for subscriptions that ended; a live one at T+7 ends the sequence
    last = max(offsets)
    live_after = (
        (offset == last) & (last > 0) & ~due["stopped"] & ~due["is_cancelled"].fillna(False).astype(bool)
    )
    due.loc[live_after, "stopped"] = True
    due.loc[live_after, "detail"] = "still subscribed after the renewal date: no win-back"
    due = due[due["step"].notna()].copy()
    due["cycle"] = due["cycle_date"].dt.strftime("%Y-%m-%d")
    due["preset"] = np.where(due["stopped"], "sequence_stopped", None)
    due["score"] = due["price"]
    due["ctx_subscription_id"] = due["subscription_id"]
    due["ctx_plan"] = due["plan"]
    due["ctx_price"] = due["price"]
    due["ctx_renewal_date"] = due["cycle"]
    # a stopped row wins over a still-due row of the same subscription and cycle
    due = due.sort_values(["stopped"], ascending=False).drop_duplicates(["subscription_id", "cycle"])
    return _finish(due)


def at_risk_scores(
    conn: psycopg.Connection,
    campaign: Campaign,
    day: date,
    risk_tiers: list[str] | None = None,
    min_priority_score: float = 0.0,
) -> pd.DataFrame:
    """At-risk customers from the latest analytics.churn_scores (on or before ``day``), ranked by
    priority_score; the step is chosen by reason_category (campaign steps' ``reasons``)."""
    scores = need_table(conn, _analytics("churn_scores"))
    tiers = risk_tiers or ["high", "medium"]
    frame = read_frame(
        conn,
        sql.SQL(
            "with latest as (select max(as_of_date) as d from {t} where as_of_date <= %(day)s) "
            "select s.customer_id, coalesce(s.reason_category, 'unknown') as reason_category, s.risk_tier, "
            "s.priority_score, s.churn_probability, s.reason_codes::text as reason_codes "
            "from {t} s join latest on s.as_of_date = latest.d "
            "where s.risk_tier = any(%(tiers)s) and s.priority_score >= %(min)s"
        ).format(t=scores),
        {"day": day, "tiers": tiers, "min": float(min_priority_score)},
        types={"priority_score": "float", "churn_probability": "float"},
    )
    if not len(frame):
        return empty_audience()
    by_reason = {r: s.id for s in campaign.steps for r in s.reasons}
    excluded = set(campaign.route_to_dunning_reasons)
    frame = frame[~frame["reason_category"].isin(excluded)].copy()
    let_go = frame["reason_category"].isin(campaign.let_go_reasons)
    frame["step"] = frame["reason_category"].map(by_reason)
    frame.loc[let_go, "step"] = "let-go"
    frame = frame[frame["step"].notna()].copy()
    frame["preset"] = np.where(frame["reason_category"].isin(campaign.let_go_reasons), "let_go", None)
    frame["detail"] = "reason " + frame["reason_category"] + ", risk " + frame["risk_tier"].fillna("?")
    frame["cycle"] = ""
    frame["score"] = frame["priority_score"]
    frame["ctx_reason_category"] = frame["reason_category"]
    frame["ctx_risk_tier"] = frame["risk_tier"]
    return _finish(frame)


def failed_payments(
    conn: psycopg.Connection, campaign: Campaign, day: date, lookback_days: int = 30
) -> pd.DataFrame:
    """Dunning: customers with a failed payment not yet recovered (fct_customer_signals
    payment_failed_unrecovered); the step follows the days since the first failed attempt
    (raw payments, when available; cycle = that date so a new failure starts a new sequence)."""
    signals = need_table(conn, _analytics("fct_customer_signals"))
    frame = read_frame(
        conn,
        sql.SQL("select customer_id from {} where coalesce(payment_failed_unrecovered::int, 0) > 0").format(
            signals
        ),
    )
    if not len(frame):
        return empty_audience()
    pay = first_table(conn, _analytics("stg_raw__payments"), _raw("payments"))
    if pay is not None:
        since = read_frame(
            conn,
            sql.SQL(
                "with p as (select customer_id, status, attempted_at from {p} "
                "where attempted_at::date <= %(day)s and customer_id = any(%(ids)s)), "
                "ok as (select customer_id, max(attempted_at) as ok_at from p where status = 'succeeded' "
                "group by 1) "
                "select p.customer_id, min(p.attempted_at)::date as failed_since from p "
                "left join ok using (customer_id) where p.status = 'failed' "
                "and p.attempted_at::date >= %(start)s and (ok.ok_at is null or p.attempted_at > ok.ok_at) "
                "group by 1"
            ).format(p=pay),
            {"day": day, "ids": frame["customer_id"].tolist(), "start": day - timedelta(days=lookback_days)},
            types={"failed_since": "date"},
        )
        frame = frame.merge(since, on="customer_id", how="left")
    else:
        frame["failed_since"] = pd.NaT
    if "failed_since" not in frame.columns or frame["failed_since"].isna().all():
        frame["failed_since"] = pd.NaT
    frame["failed_since"] = frame["failed_since"].astype("datetime64[ns]")
    days = (pd.Timestamp(day) - frame["failed_since"]).dt.days.fillna(0).astype(int)
    steps = sorted(((s.after_days or 0), s.id) for s in campaign.steps)
    frame["step"] = steps[0][1]
    for after, sid in steps:
        frame.loc[days >= after, "step"] = sid
    frame["cycle"] = frame["failed_since"].dt.strftime("%Y-%m-%d").fillna("")
    frame["detail"] = "payment failed, not recovered (" + days.astype(str) + " days)"
    frame["ctx_failed_since"] = frame["cycle"]
    frame["ctx_update_payment_url"] = get_settings().account_url
    return _finish(frame)


def lapsed_customers(
    conn: psycopg.Connection,
    campaign: Campaign,
    day: date,
    quick_min_days: int = 60,
    quick_max_days: int = 120,
    nurture_max_days: int = 365,
    nurture_every_days: int = 30,
) -> pd.DataFrame:
    """Lapsed/churned customers ranked by second_lifetime_value: the first step (quick offer) for
    the recently lapsed, the second (nurture, once per ``nurture_every_days``) for the rest.
    Customers whose last churn reason is in ``let_go_reasons`` are let go."""
    dim = need_table(conn, _analytics("dim_customers"))
    frame = read_frame(
        conn,
        sql.SQL(
            "select customer_id, second_lifetime_value, "
            "coalesce(churned_at, last_activity_at, last_order_at)::date as lapsed_on from {} "
            "where lifecycle_stage in ('lapsed', 'churned') "
            "and coalesce(churned_at, last_activity_at, last_order_at)::date "
            "between %(oldest)s and %(newest)s"
        ).format(dim),
        {"oldest": day - timedelta(days=nurture_max_days), "newest": day - timedelta(days=quick_min_days)},
        types={"second_lifetime_value": "float", "lapsed_on": "date"},
    )
    if not len(frame):
        return empty_audience()
    quick, nurture = campaign.steps[0].id, campaign.steps[1].id
    days = (pd.Timestamp(day) - frame["lapsed_on"]).dt.days.astype(int)
    lapsed_on = frame["lapsed_on"].dt.strftime("%Y-%m-%d")
    is_quick = days <= quick_max_days
    frame["step"] = np.where(is_quick, quick, nurture)
    period = ((days - quick_max_days - 1) // max(nurture_every_days, 1)).astype(int)
    frame["cycle"] = np.where(is_quick, lapsed_on, lapsed_on + "/" + period.astype(str))
    frame["preset"] = None
    frame["detail"] = "lapsed " + days.astype(str) + " days"
    events = first_table(conn, _analytics("fct_churn_events"))
    if events is not None and campaign.let_go_reasons:
        reasons = read_frame(
            conn,
            sql.SQL(
                "select distinct on (customer_id) customer_id, reason_category from {} "
                "where customer_id = any(%(ids)s) order by customer_id, churned_at desc"
            ).format(events),
            {"ids": frame["customer_id"].tolist()},
        )
        frame = frame.merge(reasons, on="customer_id", how="left")
        go = frame["reason_category"].isin(campaign.let_go_reasons)
        frame.loc[go, "preset"] = "let_go"
        frame.loc[go, "detail"] = "churn reason " + frame.loc[go, "reason_category"]
    frame["score"] = frame["second_lifetime_value"]
    frame["ctx_lapsed_days"] = days
    return _finish(frame)


def silent_victims(
    conn: psycopg.Connection, campaign: Campaign, day: date, period_days: int = 14, min_complaints: int = 1
) -> pd.DataFrame:
    """Customers who hit an error code (usage_events event_type 'error') in the last
    ``period_days`` that at least ``min_complaints`` customers complained about (support ticket with
    that error code) in the same period, and who did not complain themselves. Cycle = error code."""
    tickets = need_table(conn, _analytics("stg_raw__support_tickets"), _raw("support_tickets"))
    events = need_table(conn, _analytics("stg_raw__usage_events"), _raw("usage_events"))
    frame = read_frame(
        conn,
        sql.SQL(
            "with complaints as ("
            " select error_code, count(distinct customer_id) as complaints from {t}"
            " where coalesce(error_code, '') <> '' and opened_at >= %(start)s and opened_at < %(end)s"
            " group by 1 having count(distinct customer_id) >= %(min)s),"
            " complainers as (select distinct customer_id, error_code from {t}"
            " where coalesce(error_code, '') <> '' and opened_at >= %(start)s and opened_at < %(end)s),"
            " hits as (select e.customer_id, e.error_code, count(*) as errors from {e} e"
            " join complaints c using (error_code)"
            " where e.event_type = 'error' and e.occurred_at >= %(start)s and e.occurred_at < %(end)s"
            " group by 1, 2)"
            " select h.customer_id, h.error_code, h.errors, c.complaints from hits h"
            " join complaints c using (error_code)"
            " left join complainers k on k.customer_id = h.customer_id and k.error_code = h.error_code"
            " where k.customer_id is null"
        ).format(t=tickets, e=events),
        {"start": day - timedelta(days=period_days), "end": day, "min": int(min_complaints)},
        types={"errors": "int", "complaints": "int"},
    )
    if not len(frame):
        return empty_audience()
    # one apology at a time: the error code the customer hit most
    frame = frame.sort_values(["errors", "error_code"], ascending=[False, True]).drop_duplicates(
        "customer_id"
    )
    frame["step"] = campaign.steps[0].id
    frame["cycle"] = frame["error_code"]
    frame["preset"] = None
    frame["detail"] = (
        "hit "
        + frame["error_code"]
        + " "
        + frame["errors"].astype(str)
        + "x, "
        + frame["complaints"].astype(str)
        + " customer(s) complained"
    )
    frame["score"] = np.nan
    frame["ctx_error_code"] = frame["error_code"]
    frame["ctx_error_summary"] = "error " + frame["error_code"]
    return _finish(frame)


# --- registry ----------------------------------------------------------------------------------


def _steps_with(key: str) -> Callable[[dict[str, Any]], list[str]]:
    def check(c: dict[str, Any]) -> list[str]:
        return [
            f"field 'steps[{i}].{key}' is required by builder {c['audience']['builder']!r}"
            for i, s in enumerate(c["steps"])
            if s.get(key) is None
        ]

    return check


def _check_reasons(c: dict[str, Any]) -> list[str]:
    out: list[str] = []
    seen: dict[str, str] = {}
    special = set(c.get("let_go_reasons") or []) | set(c.get("route_to_dunning_reasons") or [])
    for i, s in enumerate(c["steps"]):
        if not s.get("reasons"):
            out.append(f"field 'steps[{i}].reasons' is required by builder 'at_risk_scores'")
        for r in s.get("reasons") or []:
            if r in seen:
                out.append(f"field 'steps[{i}].reasons' repeats reason {r!r} (already in step {seen[r]!r})")
            elif r in special:
                out.append(
                    f"field 'steps[{i}].reasons' lists {r!r}, which the campaign lets go or routes away"
                )
            seen[r] = s["id"]
    return out


def _check_count(n: int) -> Callable[[dict[str, Any]], list[str]]:
    def check(c: dict[str, Any]) -> list[str]:
        if len(c["steps"]) != n:
            return [f"field 'steps' must have exactly {n} step(s) for builder {c['audience']['builder']!r}"]
        return []

    return check


@dataclass(frozen=True)
class Builder:
    func: Callable[..., pd.DataFrame]
    params: dict[str, str]  # name -> int | number | list[str] | str
    check_steps: Callable[[dict[str, Any]], list[str]]


BUILDERS: dict[str, Builder] = {
    "renewal_calendar": Builder(renewal_calendar, {}, _steps_with("offset_days")),
    "at_risk_scores": Builder(
        at_risk_scores, {"risk_tiers": "list[str]", "min_priority_score": "number"}, _check_reasons
    ),
    "failed_payments": Builder(failed_payments, {"lookback_days": "int"}, _steps_with("after_days")),
    "lapsed_customers": Builder(
        lapsed_customers,
        {
            "quick_min_days": "int",
            "quick_max_days": "int",
            "nurture_max_days": "int",
            "nurture_every_days": "int",
        },
        _check_count(2),
    ),
    "silent_victims": Builder(
        silent_victims, {"period_days": "int", "min_complaints": "int"}, _check_count(1)
    ),
}


def build_audience(conn: psycopg.Connection, campaign: Campaign, day: date) -> pd.DataFrame:
    """Run the campaign's builder. Raises AudienceUnavailable when optional data is missing."""
    builder = BUILDERS[campaign.builder]
    return builder.func(conn, campaign, day, **campaign.params)
