"""Benchmark of outreach planning: ``plan_day`` over synthetic customers (1M; quick: 50k).

The tables are shaped like analytics.dim_customers / churn_scores / fct_customer_signals /
fct_renewal_calendar and raw support_tickets / usage_events, generated with SQL in a scratch
database that is dropped afterwards. Measured: one full plan (audiences, guardrails, decision log
COPY, enqueue), then a rerun of the same day (replaces the day's decisions). Target: < 60 s for
1M customers, read as the whole ``plan_day`` (decisions + decision log + enqueue into ops.outbox): a
plan is only useful once its messages are queued. Both parts are reported.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime

import psycopg

from retention.db import url_with_database

DAY = date(2026, 3, 10)  # a Tuesday: every campaign runs
RUN_AT = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)

SETUP = """
create schema analytics;
create schema raw;
create table analytics.dim_customers as
select 'c' || lpad(i::text, 8, '0') as customer_id,
       case when i %% 97 = 0 then null else 'c' || i || '@example.com' end as email,
       'DE' as country,
       (array['Europe/Berlin', 'Asia/Tokyo', 'America/Los_Angeles', 'America/New_York', 'Europe/London',
              'Australia/Sydney'])[1 + i %% 6] as time_zone,
       (i %% 10 <> 0) as marketing_consent,
       (50 + (i * 7919) %% 3000)::numeric as customer_value,
       (20 + (i * 104729) %% 800)::numeric as second_lifetime_value,
       case when i %% 10 < 7 then 'active' when i %% 10 = 7 then 'at_risk' when i %% 10 = 8 then 'lapsed'
            else 'churned' end as lifecycle_stage,
       case when i %% 10 >= 8 then %(day)s::timestamptz - ((30 + i %% 330) || ' days')::interval end as churned_at,
       null::timestamptz as last_activity_at,
       null::timestamptz as last_order_at
from generate_series(1::bigint, %(n)s::bigint) as i;
create table analytics.churn_scores as
select customer_id, %(day)s::date as as_of_date,
       ((i * 31) %% 100) / 100.0 as churn_probability,
       case when i %% 10 < 2 then 'high' when i %% 10 < 5 then 'medium' else 'low' end as risk_tier,
       '[{"feature": "usage_trend_pct", "text": "usage fell", "contribution": 0.3}]'::jsonb as reason_codes,
       (array['price', 'quality_fit', 'service_failure', 'involuntary', 'moved_no_need', 'unknown'])[1 + (i / 10) %% 6]
           as reason_category,
       'bench' as model_version, customer_value, 0.3 as expected_save_rate, 5::numeric as offer_cost,
       ((i * 13) %% 1000) / 10.0 as priority_score
from (select row_number() over () as i, customer_id, customer_value from analytics.dim_customers) d;
create table analytics.fct_customer_signals as
select customer_id, %(day)s::date as as_of_date, (i %% 50 = 0) as payment_failed_unrecovered
from (select row_number() over () as i, customer_id from analytics.dim_customers) d;
create table analytics.fct_renewal_calendar as
select 's' || customer_id as subscription_id, customer_id, 'premium' as plan, 19.99::numeric as price,
       'month' as billing_period, %(day)s::date - 10 + (i %% 40)::int as renewal_date,
       null::date as t_minus_7, null::date as t_minus_1, null::date as t_0, null::date as t_plus_7,
       false as is_cancelled, null::timestamptz as cancelled_at
from (select row_number() over () as i, customer_id from analytics.dim_customers) d where i %% 3 = 0;
create table raw.support_tickets as
select 't' || i as ticket_id, 'c' || lpad((i * 37)::text, 8, '0') as customer_id,
       %(day)s::timestamptz - ((i %% 10) || ' days')::interval as opened_at, null::timestamptz as resolved_at,
       'technical' as category, 'E-' || (i %% 20) as error_code, null::int as satisfaction
from generate_series(1, 200) as i;
create table raw.usage_events as
select i::bigint as event_id, 'c' || lpad((1 + (i * 7) %% %(n)s)::text, 8, '0') as customer_id,
       %(day)s::timestamptz - ((i %% 12) || ' days')::interval as occurred_at, 'error' as event_type,
       'E-' || (i %% 40) as error_code
from generate_series(1::bigint, %(events)s::bigint) as i;
create index on analytics.churn_scores (as_of_date);
create index on analytics.fct_renewal_calendar (renewal_date);
analyze;
"""


def _setup(url: str, n: int) -> None:
    from retention.outreach.models import ensure_outreach_tables

    with psycopg.connect(url) as conn:
        params = {"n": n, "day": DAY, "events": max(n // 20, 1000)}
        for statement in filter(str.strip, SETUP.split(";\n")):
            conn.execute(statement, params if "%(" in statement else None)
        ensure_outreach_tables(conn)
        conn.execute(
            "insert into ops.suppressions (email, reason, source) "
            "select email, (array['unsubscribed', 'bounced', 'spamreport'])[1 + (length(email) % 3)], 'bench' "
            "from analytics.dim_customers where email is not null and customer_id like '%3'"
        )


def run(quick: bool) -> str:
    from retention.outreach.campaigns import load_campaigns
    from retention.outreach.planner import plan_day
    from retention.warehouse import ensure_warehouse

    n = 50_000 if quick else 1_000_000
    admin = url_with_database(ensure_warehouse(), "postgres")
    name = f"bench_decisions_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = url_with_database(admin, name)
    try:
        t0 = time.perf_counter()
        _setup(url, n)
        setup_s = time.perf_counter() - t0
        config = load_campaigns()
        load_before = os.getloadavg()
        first = plan_day(url, DAY, now=RUN_AT, config=config)
        rerun = plan_day(url, DAY, now=RUN_AT, config=config)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    load0 = " / ".join(f"{x:.1f}" for x in load_before)
    rows = [
        "| run | customers | decisions | messages | batches | total s | decide + log s | decisions/s "
        "| enqueue s | planner CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in (("first plan of the day", first), ("rerun (replaces the day)", rerun)):
        t = r.timings
        decide = t["total_s"] - t["enqueue_s"]
        rows.append(
            f"| {label} | {n:,} | {r.decisions:,} | {r.n_messages:,} | {len(r.batch_keys):,} | {t['total_s']:.1f} "
            f"| {decide:.1f} | {r.decisions / decide:,.0f} | {t['enqueue_s']:.1f} | {t['python_cpu_s']:.1f} |"
        )
    skip = {"total_s", "python_cpu_s"}
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in first.timings.items() if k not in skip)
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(first.outcome_counts.items()))
    decide_s = first.timings["total_s"] - first.timings["enqueue_s"]
    total_s = first.timings["total_s"]
    target = (
        ""
        if quick
        else f" Target: decisions for 1M customers < 60 s, whole plan (decide + log + enqueue): "
        f"{'met' if total_s < 60 else 'NOT met'} ({total_s:.1f} s); decide + log alone: "
        f"{'met' if decide_s < 60 else 'NOT met'} ({decide_s:.1f} s)."
    )
    return (
        "### decisions\n\n"
        "Outreach planning (`retention.outreach.planner.plan_day`): every campaign's audience, the central "
        "guardrails (email, consent, suppressions, holdouts, already sent, frequency cap, one a day, "
        "quiet hours), the decision log (COPY) and the enqueue into ops.outbox (delivery's "
        "`outbox.enqueue_frame`), in one transaction, over synthetic warehouse tables (scratch database; setup "
        f"{setup_s:.0f} s not counted). `decide + log` is everything but the enqueue.{target}\n\n"
        + "\n".join(rows)
        + f"\n\nPhases of the first plan (wall clock): {phases}. Enqueued with: {first.enqueued_with}. "
        f"Load average (1 / 5 / 15 min) before the first plan: {load0}, at the end: {load} (other work on "
        f"the machine's {os.cpu_count()} cores slows every phase). "
        "`planner CPU s` is the planning process's own CPU time (the database server's work is not in "
        "it).\n\n"
        f"Outcomes of the first plan: {outcomes}.\n"
    )


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
