"""The customer models: staging, intermediate, dim_customers, signals and point-in-time features.

A small deterministic company (about 130 customers over two years, seeded, plus hand-made
customers, one per lifecycle rule) is written straight into raw and built with dbt once per
module (`company`). Tests that change data work on a template clone of that database.

What is proven here:
* ``dbt build`` of staging + intermediate + customer marts passes, unit tests included;
* every hand-made customer lands in the lifecycle stage its rule says;
* no leakage: events dated on or after an as-of date change nothing in that date's features;
* the incremental run equals a full refresh after a new (and a late-arriving) day of events;
* signals are exactly the features at the current as-of date (shared SQL);
* labels follow the churn definition and are null while the horizon is not over;
* the value method, predicted a year before the as-of date, against realised revenue;
* a malformed as-of date is refused with a clear error.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import clone_database

from ml.config import FEATURES as MODEL_FEATURES
from retention.db import url_with_database

AS_OF = date(2026, 6, 1)  # a Monday: on the weekly grid of fct_customer_features_asof
START = date(2024, 6, 1)
SELECT = ["--select", "path:models/staging", "path:models/intermediate", "path:models/marts/customers"]
# the model features (ml.config is the one list) plus the churned flag the signals mart adds
FEATURES = [*MODEL_FEATURES, "is_churned"]
TIMINGS: dict[str, float] = {}
# dbt artefacts of this module go to a private folder, not the shared dbt_project/target
TARGET_PATH: list[str] = []


def ts(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def days_before(n: int) -> date:
    return AS_OF - timedelta(days=n)


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise ValueError(d)


# --------------------------------------------------------------------------- the company


@dataclass
class Company:
    """Rows per raw table, in contract column order (without the loader's columns)."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    event_id: int = 0
    seq: int = 0

    def add(self, table: str, *row: Any) -> None:
        self.rows.setdefault(table, []).append(row)

    def next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq:06d}"

    def customer(self, cid: str, signup: date) -> None:
        self.add(
            "customers", cid, ts(signup, 9), f" {cid.upper()}@Example.com ", "de", "Europe/Berlin", True, None
        )

    def order(
        self, cid: str, day: date, amount: float, discount: float = 0.0, categories: tuple[str, ...] = ()
    ) -> None:
        oid = self.next_id("o")
        self.add("orders", oid, cid, ts(day, 14), Decimal(f"{amount:.2f}"), Decimal(f"{discount:.2f}"))
        cats = categories or ("books",)
        for cat in cats:
            share = amount / len(cats)
            self.add("order_lines", self.next_id("l"), oid, cat, 1, Decimal(f"{share:.2f}"), Decimal("0"))
        self.add(
            "payments",
            self.next_id("p"),
            cid,
            None,
            ts(day, 14),
            ts(day, 14),
            1,
            Decimal(f"{amount:.2f}"),
            "succeeded",
            None,
        )

    def usage(
        self, cid: str, day: date, event_type: str = "play", error_code: str | None = None, hour: int = 18
    ) -> None:
        self.event_id += 1
        self.add("usage_events", self.event_id, cid, ts(day, hour), event_type, error_code)

    def charge(
        self,
        cid: str,
        sid: str,
        due: date,
        amount: float,
        outcome: tuple[str, ...] = ("succeeded",),
        delay: int = 0,
    ) -> None:
        for attempt, status in enumerate(outcome, start=1):
            at = due + timedelta(days=delay + 3 * (attempt - 1))
            code = "card_expired" if status == "failed" else None
            self.add(
                "payments",
                self.next_id("p"),
                cid,
                sid,
                ts(due, 6),
                ts(at, 7),
                attempt,
                Decimal(f"{amount:.2f}"),
                status,
                code,
            )

    def subscription(
        self,
        sid: str,
        cid: str,
        start: date,
        price: float,
        plan: str = "standard",
        period: str = "month",
        cancelled: date | None = None,
        reason: str | None = None,
        failing_from: date | None = None,
    ) -> None:
        """A subscription with one charge per period until it ends (failed charges from failing_from)."""
        step = 12 if period == "year" else 1
        k, due = 0, start
        while due < AS_OF and (cancelled is None or due <= cancelled):
            failing = failing_from is not None and due >= failing_from
            self.charge(cid, sid, due, price, ("failed", "failed", "failed") if failing else ("succeeded",))
            k += 1
            due = add_months(start, k * step)
        renewal = due
        self.add(
            "subscriptions", sid, cid, plan, Decimal(f"{price:.2f}"), period, ts(start, 10), renewal,
            ts(cancelled, 11) if cancelled else None, reason,
        )  # fmt: skip


def hand_made(c: Company) -> dict[str, str]:
    """One customer per lifecycle rule; returns customer -> expected lifecycle stage."""
    expected: dict[str, str] = {}

    c.customer("h_new", days_before(10))
    c.order("h_new", days_before(5), 40)
    expected["h_new"] = "new"

    c.customer("h_active", date(2025, 1, 1))
    c.subscription("s_active", "h_active", date(2025, 1, 1), 14.99)
    for d in range(0, 150, 3):
        c.usage("h_active", days_before(d + 1))
    expected["h_active"] = "active"

    c.customer("h_risk_pay", date(2025, 2, 1))
    c.subscription(
        "s_risk_pay", "h_risk_pay", date(2025, 2, 1), 9.99, plan="basic", failing_from=date(2026, 5, 1)
    )
    for d in range(0, 150, 3):
        c.usage("h_risk_pay", days_before(d + 1))
    expected["h_risk_pay"] = "at_risk"

    c.customer("h_risk_usage", date(2025, 3, 1))
    c.subscription("s_risk_usage", "h_risk_usage", date(2025, 3, 1), 24.99, plan="premium")
    for d in range(31, 120):
        c.usage("h_risk_usage", days_before(d))
    expected["h_risk_usage"] = "at_risk"

    c.customer("h_risk_ticket", date(2025, 5, 1))
    for d in range(3, 330, 20):
        c.order("h_risk_ticket", days_before(d), 30)
    c.add("support_tickets", "t_open", "h_risk_ticket", ts(days_before(20)), None, "delivery", None, None)
    expected["h_risk_ticket"] = "at_risk"

    c.customer("h_lapsed", date(2025, 8, 1))
    for day in (date(2025, 9, 1), date(2025, 12, 1), days_before(101)):
        c.order("h_lapsed", day, 60)
    expected["h_lapsed"] = "lapsed"

    c.customer("h_churned_sub", date(2025, 1, 10))
    c.subscription(
        "s_churned",
        "h_churned_sub",
        date(2025, 1, 10),
        14.99,
        cancelled=days_before(100),
        reason="too expensive",
    )
    c.add(
        "cancellation_feedback", "f1", "h_churned_sub", "s_churned", ts(days_before(100)), "price", "too much", "discount_20", False
    )  # fmt: skip
    expected["h_churned_sub"] = "churned"

    c.customer("h_churned_lapse", date(2025, 5, 1))
    for day in (date(2025, 6, 1), date(2025, 8, 1), days_before(212)):
        c.order("h_churned_lapse", day, 80)
    expected["h_churned_lapse"] = "churned"

    c.customer("h_reactivated", date(2025, 1, 1))
    for day in (date(2025, 1, 5), date(2025, 4, 1), days_before(20)):
        c.order("h_reactivated", day, 50)
    expected["h_reactivated"] = "reactivated"

    c.customer("h_invol", date(2025, 5, 1))
    c.subscription(
        "s_invol", "h_invol", date(2025, 5, 1), 9.99, plan="basic", cancelled=days_before(45), reason="payment_failed",
        failing_from=days_before(70),
    )  # fmt: skip
    expected["h_invol"] = "churned"
    return expected


def random_customers(c: Company, n: int = 120, seed: int = 42) -> None:
    """Seeded customers: subscribers (with churn, failed payments, resubscriptions), shoppers, both."""
    rng = random.Random(seed)
    plans = [("basic", 9.99), ("standard", 14.99), ("premium", 24.99)]
    categories = ["books", "music", "games", "garden"]
    horizon = (AS_OF - START).days
    for i in range(n):
        cid = f"r{i:04d}"
        signup = START + timedelta(days=rng.randrange(0, horizon - 20))
        c.customer(cid, signup)
        kind = rng.choice(["sub", "sub", "shop", "shop", "both"])
        if kind in ("sub", "both"):
            start = signup + timedelta(days=rng.randrange(0, 10))
            for n_sub in range(2):
                if start >= AS_OF:
                    break
                plan, price = rng.choice(plans)
                period = "year" if rng.random() < 0.15 else "month"
                if period == "year":
                    price = round(price * 10, 2)
                months = int(rng.expovariate(1 / 14)) + 1
                end = add_months(start, months)
                sid = f"s{i:04d}_{n_sub}"
                if end < AS_OF:
                    involuntary = rng.random() < 0.25
                    cancelled = (
                        end + timedelta(days=5) if involuntary else end - timedelta(days=rng.randrange(1, 20))
                    )
                    cancelled = max(cancelled, start + timedelta(days=1))
                    c.subscription(
                        sid, cid, start, price, plan=plan, period=period, cancelled=cancelled,
                        reason="payment_failed" if involuntary else rng.choice(["price", "quality", None]),
                        failing_from=end - timedelta(days=1) if involuntary else None,
                    )  # fmt: skip
                    last = cancelled
                else:
                    c.subscription(sid, cid, start, price, plan=plan, period=period)
                    last = AS_OF
                day = start
                while day < last:
                    fading = (last - day).days < 60 and last < AS_OF
                    error = rng.random() < 0.05
                    c.usage(cid, day, "error" if error else rng.choice(["login", "play", "search"]),
                            rng.choice(["E-PLAYBACK-502", "E-LOGIN-401"]) if error else None)  # fmt: skip
                    day += timedelta(days=rng.randrange(8, 20) if fading else rng.randrange(2, 7))
                if last >= AS_OF or rng.random() > 0.3:
                    break
                start = last + timedelta(days=rng.randrange(30, 300))
        if kind in ("shop", "both"):
            day = signup + timedelta(days=rng.randrange(0, 30))
            mean_gap = rng.choice([20, 45, 90])
            while day < AS_OF:
                amount = round(rng.uniform(15, 150), 2)
                discount = round(amount * rng.choice([0.1, 0.2, 0.3]), 2) if rng.random() < 0.25 else 0.0
                cats = tuple(rng.sample(categories, rng.randrange(1, 3)))
                c.order(cid, day, amount, discount, cats)
                gap = (
                    rng.randrange(200, 420) if rng.random() < 0.08 else int(rng.expovariate(1 / mean_gap)) + 1
                )
                day += timedelta(days=gap)
        if rng.random() < 0.35:
            opened = signup + timedelta(days=rng.randrange(0, max(1, (AS_OF - signup).days)))
            category = rng.choice(["inquiry", "technical", "billing", "delivery"])
            resolved = ts(opened + timedelta(days=rng.randrange(0, 10)), 16) if rng.random() < 0.85 else None
            if resolved and resolved >= ts(AS_OF, 0):
                resolved = None
            satisfaction = rng.randrange(1, 6) if resolved else None
            c.add("support_tickets", f"t{i:04d}", cid, ts(opened, 10), resolved, category, None, satisfaction)


def build_company() -> tuple[Company, dict[str, str]]:
    c = Company()
    expected = hand_made(c)
    random_customers(c)
    return c, expected


def write_rows(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    from retention.contract import load_contract
    from retention.loader import ensure_raw_tables

    contract = load_contract()
    with psycopg.connect(url) as conn:
        ensure_raw_tables(conn, "raw")
        for table, table_rows in rows.items():
            cols = ", ".join(f'"{c}"' for c in contract[table].column_names)
            with conn.cursor().copy(f"copy raw.{table} ({cols}) from stdin") as copy:
                for row in table_rows:
                    copy.write_row(row)
        conn.commit()


def dbt(args: list[str], url: str, as_of: date = AS_OF) -> Any:
    from retention.dbt_runner import run_dbt

    started = time.perf_counter()
    target = ["--target-path", TARGET_PATH[0]] if TARGET_PATH else []
    result = run_dbt([*args, *target, "--vars", f"{{as_of_date: '{as_of.isoformat()}'}}"], url=url)
    TIMINGS[" ".join(args[:2])] = round(time.perf_counter() - started, 1)
    return result


def fetch(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fixtures


@dataclass
class Built:
    url: str
    expected: dict[str, str]
    result: Any
    build_seconds: float


@pytest.fixture(scope="module")
def company(warehouse_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    TARGET_PATH[:] = [str(tmp_path_factory.mktemp("dbt_target"))]
    name = f"t_dbtcust_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = url_with_database(warehouse_server, name)
    try:
        c, expected = build_company()
        write_rows(url, c.rows)
        started = time.perf_counter()
        result = dbt(["build", *SELECT], url)
        yield Built(url, expected, result, time.perf_counter() - started)
    finally:
        with psycopg.connect(warehouse_server, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def clone(company: Built, warehouse_server: str) -> Iterator[str]:
    """A private copy of the built company, free to modify."""
    source = urlsplit(company.url).path.lstrip("/")
    name = f"{source}_c{uuid.uuid4().hex[:6]}"
    yield clone_database(warehouse_server, source, name)
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def features_at(
    url: str, as_of: date, table: str = "fct_customer_features_asof"
) -> dict[str, tuple[Any, ...]]:
    cols = ", ".join(FEATURES)
    rows = fetch(url, f"select customer_id, {cols} from analytics.{table} where as_of_date = %s", (as_of,))
    return {r[0]: r[1:] for r in rows}


def table_rows(url: str, table: str, order: str) -> list[tuple[Any, ...]]:
    """All rows of an analytics table, without the bookkeeping columns that differ by design
    between runs (max_loaded_at, computed_at)."""
    columns = [
        r[0]
        for r in fetch(
            url,
            "select column_name from information_schema.columns where table_schema = 'analytics' "
            "and table_name = %s and column_name not in ('max_loaded_at', 'computed_at') order by ordinal_position",
            (table,),
        )
    ]
    return fetch(url, f"select {', '.join(columns)} from analytics.{table} order by {order}")


# --------------------------------------------------------------------------- tests


def test_build_passes_with_unit_tests(company: Built) -> None:
    results = company.result.results
    statuses = {str(r.status).lower() for r in results}
    assert statuses <= {"success", "pass"}, statuses
    unit = [r for r in results if r.node.resource_type == "unit_test"]
    assert len(unit) >= 5, [r.node.name for r in unit]
    models = {r.node.name for r in results if r.node.resource_type == "model"}
    assert {
        "dim_customers",
        "fct_customer_signals",
        "fct_customer_features_asof",
        "int_usage_daily",
    } <= models
    print(
        f"\ndbt build of staging+intermediate+customer marts on the test company: {company.build_seconds:.1f}s"
    )


def test_staging_cleans_values(company: Built) -> None:
    email, country = fetch(
        company.url, "select email, country from analytics.stg_raw__customers where customer_id = 'h_new'"
    )[0]
    assert (email, country) == ("h_new@example.com", "DE")


def test_lifecycle_stages_of_hand_made_customers(company: Built) -> None:
    rows = fetch(
        company.url,
        "select customer_id, lifecycle_stage, at_risk_reasons, churn_type from analytics.dim_customers "
        "where customer_id like 'h\\_%%'",
    )
    stages = {r[0]: r[1] for r in rows}
    assert stages == company.expected
    reasons = {r[0]: r[2] for r in rows}
    assert reasons["h_risk_pay"] == "payment_failed"
    assert reasons["h_risk_usage"] == "usage_drop"
    assert reasons["h_risk_ticket"] == "unresolved_ticket"
    churn_types = {r[0]: r[3] for r in rows}
    assert churn_types["h_invol"] == "involuntary"
    assert churn_types["h_churned_sub"] == "voluntary"
    assert churn_types["h_churned_lapse"] == "lapsed"


def test_dim_customers_columns_and_value_split(company: Built) -> None:
    rows = fetch(
        company.url,
        "select lifecycle_stage, clv_12m, second_lifetime_value, customer_value, rfm_segment, "
        "rfm_recency_score, subscription_status from analytics.dim_customers",
    )
    assert len(rows) == len({r for r in fetch(company.url, "select customer_id from raw.customers")})
    for stage, clv, slv, value, segment, r_score, status in rows:
        if stage in ("new", "active", "at_risk", "reactivated"):
            assert slv is None and value == clv and clv is not None
        else:
            assert clv is None and value == slv and slv is not None
        assert 1 <= r_score <= 5 and status in ("live", "cancelled", "none") and segment
    segments = {r[4] for r in rows}
    assert len(segments) >= 5, segments


def test_signals_are_the_features_at_the_current_as_of_date(company: Built) -> None:
    signals = features_at(company.url, AS_OF, "fct_customer_signals")
    grid = features_at(company.url, AS_OF)
    assert signals and signals == grid
    codes = fetch(
        company.url,
        "select count(*) from analytics.fct_customer_signals where recent_error_codes is not null",
    )
    assert codes[0][0] > 0


def test_feature_parts_split_the_customers(company: Built) -> None:
    """The weekly features are stored in hash partitions of the customers: every customer's rows are in
    exactly one part, and the union view has one row per customer signed up before a grid date (AS_OF)."""
    parts = fetch(
        company.url,
        "select 0, count(distinct customer_id) from analytics.int_customer_features_weekly_part_0 "
        "union all select 1, count(distinct customer_id) from analytics.int_customer_features_weekly_part_1",
    )
    assert all(customers > 0 for _, customers in parts), parts
    shared = fetch(
        company.url,
        "select count(*) from (select customer_id from analytics.int_customer_features_weekly_part_0 "
        "intersect select customer_id from analytics.int_customer_features_weekly_part_1) as both_parts",
    )
    assert shared == [(0,)]
    coverage = fetch(
        company.url,
        """
        select
            (select count(*) from analytics.int_customer_features_weekly where as_of_date = %s),
            (select count(distinct customer_id) from analytics.int_customer_features_weekly where as_of_date = %s),
            (select count(*) from analytics.stg_raw__customers where signup_at < %s::timestamp at time zone 'utc')
        """,
        (AS_OF, AS_OF, AS_OF),
    )
    rows, customers, signed_up = coverage[0]
    assert rows == customers == signed_up > 0


def test_a_feature_part_outside_the_partition_count_is_refused(company: Built) -> None:
    from retention.dbt_runner import DbtError, run_dbt

    with pytest.raises(DbtError, match="customer feature part must be an integer from 0 to 1, got '2'"):
        run_dbt(
            [
                "run-operation",
                "customer_feature_part_filter",
                "--args",
                "{part: 2}",
                "--target-path",
                TARGET_PATH[0],
            ],
            url=company.url,
        )


def test_text_columns_of_the_features_need_a_single_as_of_date(company: Built) -> None:
    """top_dropped_category and recent_error_codes exist for one as-of date (the signals) only: a
    call asking for them on a grid of dates stops with what is missing instead of compiling SQL
    without them."""
    from retention.dbt_runner import DbtError, run_dbt

    with pytest.raises(DbtError, match="customer_features: with_text_columns needs single_date"):
        run_dbt(
            [
                "run-operation",
                "customer_features",
                "--args",
                "{spine: spine, with_text_columns: true}",
                "--target-path",
                TARGET_PATH[0],
            ],
            url=company.url,
        )


def test_labels_follow_the_churn_definition(company: Built) -> None:
    rows = fetch(
        company.url,
        "select as_of_date, churned_within_horizon, label_known, is_churned from analytics.fct_customer_features_asof "
        "where customer_id = 'h_churned_sub' order by as_of_date",
    )
    by_date = {r[0]: r[1:] for r in rows}
    assert len(by_date) == 26
    # cancelled at AS_OF - 100: the Monday 105 days before sees it within 60 days
    assert by_date[days_before(105)] == (True, True, False)
    assert by_date[days_before(98)] == (False, True, True)
    # horizon not over yet: label unknown
    assert by_date[days_before(56)][:2] == (None, False)


def test_no_leakage_and_incremental_equals_full_refresh(clone: str) -> None:
    # a grid Monday inside the incremental recompute window (horizon + 7 days), so the incremental
    # run really recomputes its rows from the enlarged data
    cut = days_before(56)
    before = features_at(clone, cut)
    signals_before = features_at(clone, AS_OF, "fct_customer_signals")
    touched = ("h_active", "h_risk_pay", "h_lapsed", "r0001", "r0002", "r0010")
    c = Company(event_id=10_000_000, seq=900_000)
    for cid in touched:
        c.usage(cid, cut, "error", "E-NEW-1", hour=0)  # exactly at the cut-off: not before it
        c.usage(cid, cut + timedelta(days=3), "play")
        c.order(cid, cut + timedelta(days=1), 99, 20, ("music",))
        c.add("support_tickets", f"tn_{cid}", cid, ts(cut, 0), None, "inquiry", None, None)
        c.charge(cid, "s_leak", cut + timedelta(days=2), 10, ("failed",))
        c.usage(cid, days_before(1), "play")  # a new day of events at the end
        c.usage(cid, days_before(40), "login")  # a late-arriving older day
    c.add(
        "subscriptions", "s_new", "h_lapsed", "basic", Decimal("9.99"), "month", ts(cut, 0), AS_OF, None, None
    )
    write_rows(clone, c.rows)
    # the features are stored in parts, each run of a part stamps its own computed_at
    built_before = fetch(clone, "select max(computed_at) from analytics.int_customer_features_weekly")[0][0]

    dbt(["run", *SELECT], clone)
    assert features_at(clone, cut) == before, "rows at a past as-of date changed after adding later events"
    assert (
        features_at(clone, AS_OF, "fct_customer_signals") != signals_before
    )  # the new data is seen at AS_OF
    compared = {
        "int_usage_daily": "customer_id, event_date",
        "int_usage_customers": "customer_id",
        "int_customer_activity": "customer_id",
        "fct_customer_features_asof": "customer_id, as_of_date",
        "fct_customer_signals": "customer_id",
        "dim_customers": "customer_id",
    }
    incremental = {table: table_rows(clone, table, order) for table, order in compared.items()}
    new_day = fetch(
        clone, "select count(*) from analytics.int_usage_daily where event_date = %s", (days_before(1),)
    )
    assert new_day[0][0] > 0
    # the features table recomputed exactly the rows the new data can change: the six customers at
    # the grid dates after their earliest new row (the cut-off itself, or the subscription start
    # for h_lapsed), nothing else
    recomputed = fetch(
        clone,
        "select customer_id, min(as_of_date), count(*) from analytics.int_customer_features_weekly "
        "where computed_at > %s group by 1 order by 1",
        (built_before,),
    )
    later_mondays = sum(1 for k in range(0, 26) if AS_OF - timedelta(weeks=k) > cut)
    assert recomputed == [(cid, cut + timedelta(days=7), later_mondays) for cid in sorted(touched)]

    # the new day is each touched customer's last usage (int_usage_customers' newest-day probe),
    # the late older day moved nothing
    last_usage = fetch(
        clone,
        "select customer_id, cast(last_usage_at at time zone 'utc' as date) from analytics.int_customer_activity "
        "where customer_id = any(%s) order by 1",
        (list(touched),),
    )
    assert last_usage == [(cid, days_before(1)) for cid in sorted(touched)]
    dbt(["run", "--full-refresh", *SELECT], clone)
    for table, order in compared.items():
        assert table_rows(clone, table, order) == incremental[table], (
            f"{table}: incremental run differs from full refresh"
        )
    print(f"\ndbt timings on the test company (s): {TIMINGS}")


def test_value_method_on_a_time_holdout(clone: str) -> None:
    """Predict clv_12m a year before AS_OF and compare with revenue realised in the following year."""
    past = AS_OF - timedelta(days=365)
    dbt(["run", *SELECT], clone, as_of=past)
    rows = fetch(
        clone,
        """
        with predicted as (
            select customer_id, clv_12m from analytics.dim_customers where clv_12m is not null
        ),
        realised as (
            select p.customer_id, coalesce(sum(t.amount), 0) as revenue
            from predicted as p
            left join analytics.int_customer_transactions as t
                on t.customer_id = p.customer_id and t.transaction_date >= %s and t.transaction_date < %s
            group by 1
        )
        select sum(p.clv_12m), sum(r.revenue), count(*), corr(p.clv_12m, r.revenue)
        from predicted as p join realised as r using (customer_id)
        """,
        (past, AS_OF),
    )
    predicted, realised, customers, correlation = rows[0]
    ratio = float(realised) / float(predicted)
    print(
        f"\nvalue holdout: {customers} live customers at {past}: predicted {predicted}, realised {realised}, "
        f"ratio {ratio:.2f}, correlation {correlation:.2f}"
    )
    assert 0.5 <= ratio <= 2.0
    assert correlation > 0.2


@pytest.mark.parametrize(
    ("model", "bad_vars", "named"),
    [
        ("dim_customers", "{as_of_date: 'yesterday'}", "as_of_date"),
        ("fct_customer_features_asof", "{feature_weeks: 0}", "feature_weeks"),
    ],
)
def test_malformed_vars_are_refused(company: Built, model: str, bad_vars: str, named: str) -> None:
    from retention.dbt_runner import DbtError, run_dbt

    with pytest.raises(DbtError, match=named):
        run_dbt(
            ["compile", "--select", model, "--target-path", TARGET_PATH[0], "--vars", bad_vars],
            url=company.url,
        )


def test_incremental_usage_starts_from_an_empty_table(fresh_db: str, tmp_path: Path) -> None:
    """Optional tables may be empty at the first run: the next incremental run must take all events."""
    from retention.dbt_runner import run_dbt

    c = Company()
    c.customer("solo", date(2026, 1, 1))
    write_rows(fresh_db, c.rows)
    args = ["run", "--select", "+int_usage_daily", "--target-path", str(tmp_path)]
    run_dbt(args, url=fresh_db)
    assert fetch(fresh_db, "select count(*) from analytics.int_usage_daily") == [(0,)]
    later = Company()
    for d in range(5):
        later.usage("solo", date(2026, 2, 1) + timedelta(days=d))
    write_rows(fresh_db, later.rows)
    run_dbt(args, url=fresh_db)
    assert fetch(fresh_db, "select count(*), sum(events_count) from analytics.int_usage_daily") == [(5, 5)]


def test_incremental_usage_new_days_late_events_and_redeliveries(fresh_db: str, tmp_path: Path) -> None:
    """int_usage_daily with no load margin: a day first seen is aggregated from the new events only,
    a day already counted (late event, re-delivered event) from all its events; equal to a full refresh."""
    from retention.dbt_runner import run_dbt

    d1, d2, d3 = date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 3)
    c = Company()
    c.customer("a", date(2026, 1, 1))
    c.customer("b", date(2026, 1, 1))
    c.usage("a", d1)
    c.usage("a", d2, hour=8)
    c.usage("a", d2, hour=9)  # event 3: re-delivered below as an error
    c.usage("b", d1)
    write_rows(fresh_db, c.rows)
    args = ["run", "--select", "+int_usage_daily", "--target-path", str(tmp_path)]
    no_margin = ["--vars", "{usage_load_margin_minutes: 0}"]
    run_dbt([*args, *no_margin], url=fresh_db)

    later = Company(event_id=100)
    later.usage("a", d3)  # a new day: only new events
    later.usage("a", d3, "error", "E-7")
    later.usage("b", d1, hour=20)  # late event for a day already counted
    write_rows(fresh_db, later.rows)
    with psycopg.connect(fresh_db) as conn:  # what the loader does with a re-delivered row
        conn.execute(
            "update raw.usage_events set event_type = 'error', error_code = 'E-9', _loaded_at = now() "
            "where event_id = '3'"
        )
    run_dbt([*args, *no_margin], url=fresh_db)
    query = (
        "select customer_id, event_date, events_count, error_events_count, error_codes "
        "from analytics.int_usage_daily order by 1, 2"
    )
    incremental = fetch(fresh_db, query)
    assert incremental == [
        ("a", d1, 1, 0, []),
        ("a", d2, 2, 1, ["E-9"]),
        ("a", d3, 2, 1, ["E-7"]),
        ("b", d1, 2, 0, []),
    ]
    # a margin re-reads the newest load: its days are then re-aggregated from all their events
    run_dbt([*args, "--vars", "{usage_load_margin_minutes: 60}"], url=fresh_db)
    assert fetch(fresh_db, query) == incremental
    run_dbt([*args, "--full-refresh"], url=fresh_db)
    assert fetch(fresh_db, query) == incremental


def test_negative_load_margin_is_refused(fresh_db: str, tmp_path: Path) -> None:
    from retention.dbt_runner import DbtError, run_dbt

    with pytest.raises(DbtError, match="usage_load_margin_minutes"):
        run_dbt(
            [
                "compile",
                "--select",
                "int_usage_daily",
                "--target-path",
                str(tmp_path),
                "--vars",
                "{usage_load_margin_minutes: -5}",
            ],
            url=fresh_db,
        )


def test_incremental_table_of_an_older_version_is_refused_untouched(fresh_db: str, tmp_path: Path) -> None:
    """A warehouse built before int_orders_daily became incremental has no max_loaded_at: the
    incremental run stops with an error naming the model and the column, and the table keeps its
    rows; --full-refresh rebuilds it."""
    from retention.dbt_runner import DbtError, run_dbt

    c = Company()
    c.customer("a", date(2026, 1, 1))
    c.order("a", date(2026, 2, 1), 30.0)
    write_rows(fresh_db, c.rows)
    args = ["run", "--select", "+int_orders_daily", "--target-path", str(tmp_path)]
    run_dbt(args, url=fresh_db)
    with psycopg.connect(fresh_db) as conn:  # the table as the previous version built it
        conn.execute("alter table analytics.int_orders_daily drop column max_loaded_at")
    before = fetch(fresh_db, "select * from analytics.int_orders_daily order by 1, 2")
    later = Company(seq=100)
    later.order("a", date(2026, 2, 2), 20.0)
    write_rows(fresh_db, later.rows)
    with pytest.raises(DbtError, match=r"(?s)int_orders_daily.*max_loaded_at"):
        run_dbt(args, url=fresh_db)
    assert fetch(fresh_db, "select * from analytics.int_orders_daily order by 1, 2") == before
    run_dbt([*args, "--full-refresh"], url=fresh_db)
    assert fetch(fresh_db, "select order_date, orders_count from analytics.int_orders_daily order by 1") == [
        (date(2026, 2, 1), 1),
        (date(2026, 2, 2), 1),
    ]


def test_incremental_orders_charges_transactions_late_rows_and_redeliveries(
    fresh_db: str, tmp_path: Path
) -> None:
    """int_orders_daily, int_order_categories_daily, int_payment_charges and int_customer_transactions
    after a new day, late rows and re-deliveries (each its own load and incremental run): equal to a
    full refresh, and only the touched keys rewritten (a row's xmin changes only when it is replaced)."""
    from retention.dbt_runner import run_dbt

    d1, d2 = date(2026, 2, 1), date(2026, 2, 2)
    models = [
        "int_orders_daily",
        "int_order_categories_daily",
        "int_payment_charges",
        "int_customer_transactions",
    ]
    args = ["run", "--select", *[f"+{m}" for m in models], "--target-path", str(tmp_path)]
    keys = {
        "int_orders_daily": "customer_id, order_date",
        "int_order_categories_daily": "customer_id, order_date, category",
        "int_payment_charges": "customer_id, subscription_id, due_at",
        "int_customer_transactions": "transaction_id, revenue_source",
    }

    def versions() -> dict[str, dict[tuple[Any, ...], str]]:
        return {
            m: {r[:-1]: r[-1] for r in fetch(fresh_db, f"select {keys[m]}, xmin::text from analytics.{m}")}
            for m in models
        }

    def incremental_run(
        touched: dict[str, set[tuple[Any, ...]]], removed: dict[str, set[tuple[Any, ...]]] | None = None
    ) -> None:
        before = versions()
        run_dbt(args, url=fresh_db)
        after = versions()
        for m in models:
            rewritten = {k for k, v in after[m].items() if before[m].get(k) != v}
            assert rewritten == touched.get(m, set()), m
            assert set(before[m]) - set(after[m]) == (removed or {}).get(m, set()), m
        incremental = {m: table_rows(fresh_db, m, keys[m]) for m in models}
        run_dbt([*args, "--full-refresh"], url=fresh_db)
        for m in models:
            assert table_rows(fresh_db, m, keys[m]) == incremental[m], m

    c = Company()
    c.customer("a", date(2026, 1, 1))
    c.customer("b", date(2026, 1, 1))
    c.order("a", d1, 30.0, categories=("books", "games"))  # o000001, lines l000002-3, payment p000004
    c.order("b", d1, 10.0)  # o000005, l000006, payment p000007
    c.charge("a", "s1", d1, 9.0)  # p000008
    c.charge("b", "s2", d1, 9.0, outcome=("failed",))  # p000009: retried below
    write_rows(fresh_db, c.rows)
    run_dbt(args, url=fresh_db)

    # (a) a new day: only its keys are written
    new_day = Company(seq=100)
    new_day.order("a", d2, 20.0)  # o000101, l000102, p000103
    new_day.charge("a", "s1", d2, 9.0)  # p000104: fails on re-delivery below
    write_rows(fresh_db, new_day.rows)
    incremental_run(
        {
            "int_orders_daily": {("a", d2)},
            "int_order_categories_daily": {("a", d2, "books")},
            "int_payment_charges": {("a", None, ts(d2, 14)), ("a", "s1", ts(d2, 6))},
            "int_customer_transactions": {("o000101", "order"), ("p000104", "subscription")},
        }
    )

    # (b) late rows for a day and a charge already built: a second order of b on d1 (its payment is
    # a second attempt of b's order-payment charge, whose subscription_id is null) and a late line of
    # a's first order in a new category (the whole customer-day is rewritten)
    late = Company(seq=200)
    late.order("b", d1, 5.0, categories=("toys",))  # o000201, l000202, p000203
    late.add("order_lines", "l000204", "o000001", "music", 1, Decimal("7.00"), Decimal("0"))
    write_rows(fresh_db, late.rows)
    incremental_run(
        {
            "int_orders_daily": {("b", d1)},
            "int_order_categories_daily": {
                ("a", d1, "books"),
                ("a", d1, "games"),
                ("a", d1, "music"),
                ("b", d1, "books"),
                ("b", d1, "toys"),
            },
            "int_payment_charges": {("b", None, ts(d1, 14))},
            "int_customer_transactions": {("o000201", "order")},
        }
    )
    assert fetch(
        fresh_db,
        "select attempts, amount from analytics.int_payment_charges where customer_id = 'b' and subscription_id is null",
    ) == [(2, Decimal("10.00"))]

    # (c) a retry of b's failed charge (a load), then re-deliveries (another load, as the loader
    # writes them): a's first order and its payment with a new amount, a's d2 charge now failed
    retry = Company(seq=300)
    retry.add(
        "payments",
        "p000301",
        "b",
        "s2",
        ts(d1, 6),
        ts(d1 + timedelta(days=3), 7),
        2,
        Decimal("9.00"),
        "succeeded",
        None,
    )
    write_rows(fresh_db, retry.rows)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("update raw.orders set amount = 40, _loaded_at = now() where order_id = 'o000001'")
        conn.execute("update raw.payments set amount = 40, _loaded_at = now() where payment_id = 'p000004'")
        conn.execute(
            "update raw.payments set status = 'failed', failure_code = 'card_expired', _loaded_at = now() "
            "where payment_id = 'p000104'"
        )
    incremental_run(
        {
            "int_orders_daily": {("a", d1)},
            "int_order_categories_daily": {("a", d1, "books"), ("a", d1, "games"), ("a", d1, "music")},
            "int_payment_charges": {("a", None, ts(d1, 14)), ("a", "s1", ts(d2, 6)), ("b", "s2", ts(d1, 6))},
            "int_customer_transactions": {("o000001", "order"), ("p000301", "subscription")},
        },
        removed={"int_customer_transactions": {("p000104", "subscription")}},
    )
    assert fetch(
        fresh_db,
        "select transaction_id, amount from analytics.int_customer_transactions where customer_id = 'a' order by 1",
    ) == [("o000001", Decimal("40.00")), ("o000101", Decimal("20.00")), ("p000008", Decimal("9.00"))]
    assert fetch(
        fresh_db,
        "select attempts, failed_attempts, recovered_at from analytics.int_payment_charges "
        "where customer_id = 'b' and subscription_id = 's2'",
    ) == [(2, 1, ts(d1 + timedelta(days=3), 7))]
    assert fetch(
        fresh_db,
        "select amount from analytics.int_orders_daily where customer_id = 'a' and order_date = %s",
        (d1,),
    ) == [(Decimal("40.00"),)]
