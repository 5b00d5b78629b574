"""The lifecycle marts (dbt_project/models/marts/lifecycle) and the stage snapshot.

A small hand-made company (one customer per churn-reason rule) is written straight into raw and
built with dbt once per module; the tests read the marts. A generated company (conftest's
``built_company``) measures how often the inferred churn reason matches the generator's planted
reason (ground_truth, read here only for evaluation).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

AS_OF = "2026-06-30"
LIFECYCLE_SELECT = [
    "--select",
    "+path:models/marts/lifecycle",
    "+snap_customer_stage",
    "--indirect-selection",
    "cautious",
]

# (customer_id, signup_at)
CUSTOMERS = [
    ("c_price", "2025-01-01"),
    ("c_other_service", "2025-02-01"),
    ("c_invol", "2025-02-10"),
    ("c_failed", "2025-03-01"),
    ("c_abrupt", "2025-03-05"),
    ("c_gradual", "2025-03-20"),
    ("c_unknown", "2025-04-01"),
    ("c_switch", "2025-04-02"),
    ("c_lapsed", "2025-04-03"),
    ("c_downgrade", "2025-01-01"),
    ("c_offer", "2025-05-01"),
    ("c_live", "2026-01-15"),
    ("c_react", "2025-01-01"),
    ("c_never", "2026-06-01"),
]

# (subscription_id, customer_id, plan, price, billing_period, started_at, renewal_date, cancelled_at, reason)
SUBSCRIPTIONS = [
    ("s_price", "c_price", "basic", "10.00", "month", "2025-01-01", "2026-06-20", "2026-06-10", None),
    ("s_other", "c_other_service", "basic", "10.00", "month", "2025-02-01", "2026-06-01", "2026-06-05", None),
    (
        "s_invol",
        "c_invol",
        "basic",
        "10.00",
        "month",
        "2025-02-10",
        "2026-06-01",
        "2026-06-01",
        "payment_failed",
    ),
    ("s_failed", "c_failed", "standard", "13.00", "month", "2025-03-01", "2026-06-01", "2026-06-15", None),
    ("s_abrupt", "c_abrupt", "basic", "10.00", "month", "2025-03-05", "2026-06-05", "2026-06-20", None),
    ("s_gradual", "c_gradual", "premium", "120.00", "year", "2025-03-20", "2026-03-20", "2026-06-20", None),
    ("s_unknown", "c_unknown", "basic", "10.00", "month", "2025-04-01", "2026-07-10", "2026-06-25", None),
    ("s_switch_old", "c_switch", "basic", "10.00", "month", "2025-04-02", "2026-05-02", "2026-05-01", None),
    ("s_switch_new", "c_switch", "premium", "18.00", "month", "2026-04-25", "2026-07-25", None, None),
    (
        "s_down_old",
        "c_downgrade",
        "premium",
        "30.00",
        "month",
        "2025-01-01",
        "2025-12-31",
        "2025-12-31",
        None,
    ),
    ("s_down_new", "c_downgrade", "basic", "10.00", "month", "2025-12-30", "2026-06-30", "2026-06-12", None),
    ("s_offer", "c_offer", "basic", "10.00", "month", "2025-05-01", "2026-06-01", "2026-06-18", None),
    ("s_live", "c_live", "standard", "13.00", "month", "2026-01-15", "2026-07-15", None, None),
]

# (order_id, customer_id, ordered_at, amount, discount_amount)
ORDERS = [
    ("o_l1", "c_lapsed", "2025-10-01", "50.00", "0"),
    ("o_l2", "c_lapsed", "2025-11-15", "30.00", "0"),
    ("o_r1", "c_react", "2025-01-01", "20.00", "0"),
    ("o_r2", "c_react", "2025-09-01", "40.00", "0"),
]

# (payment_id, customer_id, subscription_id, due_at, attempted_at, attempt, amount, status)
PAYMENTS = [
    ("p_f1", "c_failed", "s_failed", "2026-06-01", "2026-06-01", 1, "13.00", "failed"),
    ("p_f2", "c_failed", "s_failed", "2026-06-01", "2026-06-04", 2, "13.00", "failed"),
    # recovered failure: not a reason
    ("p_o1", "c_offer", "s_offer", "2026-06-01", "2026-06-01", 1, "10.00", "failed"),
    ("p_o2", "c_offer", "s_offer", "2026-06-01", "2026-06-03", 2, "10.00", "succeeded"),
]

# (ticket_id, customer_id, opened_at, resolved_at, category)
TICKETS = [
    ("t_s1", "c_other_service", "2026-05-20", None, "technical"),
]

# (feedback_id, customer_id, subscription_id, submitted_at, reason_category, offer_accepted)
FEEDBACK = [
    ("f_price", "c_price", "s_price", "2026-06-10", "price", False),
    ("f_other", "c_other_service", "s_other", "2026-06-05", "other", False),
    ("f_offer", "c_offer", "s_offer", "2026-06-10", "quality_fit", True),
]


def _usage_rows() -> list[tuple[str, datetime, str]]:
    """(customer_id, occurred_at, event_type): steady use that stops (abrupt) or fades (gradual)."""
    rows: list[tuple[str, datetime, str]] = []
    # c_abrupt (cancel 2026-06-20): an event every 3 days from 2026-02-20 to 2026-05-19, then none
    start = datetime(2026, 2, 20, 12, tzinfo=UTC)
    rows += [("c_abrupt", start + timedelta(days=day), "play") for day in range(0, 90, 3)]
    # c_gradual (cancel 2026-06-20): an event every 3 days until 2026-03-22, then 5 in the next
    # 30 days and 6 in the last 60 (the last on 2026-06-15): a decline, not a stop
    start = datetime(2025, 10, 1, 10, tzinfo=UTC)
    rows += [("c_gradual", start + timedelta(days=day), "play") for day in range(0, 173, 3)]
    rows += [
        ("c_gradual", datetime(2026, 3, 24, 10, tzinfo=UTC) + timedelta(days=6 * i), "play") for i in range(5)
    ]
    rows += [
        ("c_gradual", datetime(2026, 4, 25, 10, tzinfo=UTC) + timedelta(days=10 * i), "play")
        for i in range(6)
    ]
    return rows


def _insert_raw(url: str) -> None:
    from retention.loader import ensure_raw_tables

    with psycopg.connect(url) as conn:
        conn.execute("set time zone 'UTC'")  # the naive timestamps below are UTC
        ensure_raw_tables(conn, "raw")
        conn.cursor().executemany(
            "insert into raw.customers (customer_id, signup_at, email, time_zone, marketing_consent)"
            " values (%s, %s, %s, 'Europe/Berlin', true)",
            [(cid, signup, f"{cid}@example.com") for cid, signup in CUSTOMERS],
        )
        conn.cursor().executemany(
            "insert into raw.subscriptions (subscription_id, customer_id, plan, price, billing_period,"
            " started_at, renewal_date, cancelled_at, cancel_reason) values (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            SUBSCRIPTIONS,
        )
        conn.cursor().executemany(
            "insert into raw.orders (order_id, customer_id, ordered_at, amount, discount_amount)"
            " values (%s,%s,%s,%s,%s)",
            ORDERS,
        )
        conn.cursor().executemany(
            "insert into raw.payments (payment_id, customer_id, subscription_id, due_at, attempted_at,"
            " attempt_number, amount, status) values (%s,%s,%s,%s,%s,%s,%s,%s)",
            PAYMENTS,
        )
        conn.cursor().executemany(
            "insert into raw.support_tickets (ticket_id, customer_id, opened_at, resolved_at, category)"
            " values (%s,%s,%s,%s,%s)",
            TICKETS,
        )
        conn.cursor().executemany(
            "insert into raw.cancellation_feedback (feedback_id, customer_id, subscription_id,"
            " submitted_at, reason_category, offer_accepted) values (%s,%s,%s,%s,%s,%s)",
            FEEDBACK,
        )
        conn.cursor().executemany(
            "insert into raw.usage_events (event_id, customer_id, occurred_at, event_type) values (%s,%s,%s,%s)",
            [(i + 1, *row) for i, row in enumerate(_usage_rows())],
        )
        conn.commit()


def _rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(query, params)
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _build(url: str, *args: str, as_of: str = AS_OF) -> None:
    from retention.dbt_runner import run_dbt

    run_dbt(["build", "--quiet", *LIFECYCLE_SELECT, *args], url=url, extra_env={"RETENTION_AS_OF": as_of})


@pytest.fixture(scope="module")
def lifecycle_db(warehouse_server: str) -> Iterator[str]:
    """A database of its own for this module: hand-made raw data, lifecycle marts built."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"t_lifecycle_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = urlunsplit(urlsplit(warehouse_server)._replace(path=f"/{name}"))
    try:
        _insert_raw(url)
        _build(url)
        yield url
    finally:
        with psycopg.connect(warehouse_server, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_unit_tests_pass(lifecycle_db: str) -> None:
    from retention.dbt_runner import run_dbt

    result = run_dbt(
        ["test", "--quiet", "--select", "path:models/marts/lifecycle,test_type:unit"],
        url=lifecycle_db,
        extra_env={"RETENTION_AS_OF": AS_OF},
    )
    statuses = [str(r.status) for r in result.results]  # type: ignore[attr-defined]
    assert len(statuses) >= 3, "the lifecycle unit tests did not run"
    assert set(statuses) == {"pass"}


def test_churn_reasons_of_hand_made_cases(lifecycle_db: str) -> None:
    events = _rows(
        lifecycle_db,
        "select customer_id, subscription_id, churned_at, churn_type, reason_category, reason_source,"
        " revenue_lost_12m from analytics.fct_churn_events order by customer_id, churned_at",
    )
    got = {(e["customer_id"], e["churned_at"].date().isoformat()): e for e in events}
    expected = {
        ("c_price", "2026-06-10"): ("voluntary", "price", "stated", Decimal("120.00")),
        ("c_other_service", "2026-06-05"): ("voluntary", "service_failure", "inferred", Decimal("120.00")),
        ("c_invol", "2026-06-01"): ("involuntary", "involuntary", "inferred", Decimal("120.00")),
        ("c_failed", "2026-06-15"): ("voluntary", "involuntary", "inferred", Decimal("156.00")),
        ("c_abrupt", "2026-06-20"): ("voluntary", "moved_no_need", "inferred", Decimal("120.00")),
        ("c_gradual", "2026-06-20"): ("voluntary", "quality_fit", "inferred", Decimal("120.00")),
        ("c_unknown", "2026-06-25"): ("voluntary", "unknown", "unknown", Decimal("120.00")),
        ("c_downgrade", "2026-06-12"): ("voluntary", "price", "inferred", Decimal("120.00")),
        ("c_offer", "2026-06-18"): ("voluntary", "unknown", "unknown", Decimal("120.00")),
        ("c_lapsed", "2026-05-14"): ("lapsed", "unknown", "unknown", Decimal("80.00")),
        ("c_react", "2025-06-30"): ("lapsed", "unknown", "unknown", Decimal("20.00")),
        ("c_react", "2026-02-28"): ("lapsed", "unknown", "unknown", Decimal("60.00")),
    }
    assert set(got) == set(expected), "churn events differ (a plan switch is not a churn)"
    for key, (churn_type, reason, source, revenue) in expected.items():
        e = got[key]
        assert (e["churn_type"], e["reason_category"], e["reason_source"], e["revenue_lost_12m"]) == (
            churn_type,
            reason,
            source,
            revenue,
        ), key
    assert got[("c_lapsed", "2026-05-14")]["subscription_id"] is None


def test_renewal_calendar_dates(lifecycle_db: str) -> None:
    rows = {
        r["subscription_id"]: r for r in _rows(lifecycle_db, "select * from analytics.fct_renewal_calendar")
    }
    # live subscriptions, plus cancelled ones whose renewal date is at most 14 days past (T+7 window);
    # the old subscription of a plan switch is left out
    assert set(rows) == {"s_switch_new", "s_live", "s_price", "s_unknown", "s_down_new"}
    live = rows["s_live"]
    assert live["renewal_date"] == date(2026, 7, 15)
    assert (live["t_minus_7"], live["t_minus_1"], live["t_0"], live["t_plus_7"]) == (
        date(2026, 7, 8),
        date(2026, 7, 14),
        date(2026, 7, 15),
        date(2026, 7, 22),
    )
    assert live["is_cancelled"] is False and live["cancelled_at"] is None
    assert live["days_to_renewal"] == 15
    gone = rows["s_unknown"]
    assert gone["is_cancelled"] is True and gone["t_plus_7"] == date(2026, 7, 17)
    assert isinstance(gone["cancelled_at"], datetime)


def test_cohort_retention_is_consistent(lifecycle_db: str) -> None:
    rows = _rows(lifecycle_db, "select * from analytics.fct_cohort_retention")
    customers = _rows(lifecycle_db, "select count(*) as n from raw.customers")[0]["n"]
    sizes: dict[date, set[int]] = {}
    for r in rows:
        sizes.setdefault(r["cohort_month"], set()).add(r["cohort_size"])
        assert 0 <= r["retained_customers"] <= r["cohort_size"]
        assert r["retention_rate"] == round(Decimal(r["retained_customers"]) / r["cohort_size"], 4)
    assert all(len(s) == 1 for s in sizes.values()), "cohort_size differs within a cohort"
    assert sum(next(iter(s)) for s in sizes.values()) == customers
    # every cohort has a row for every month from signup to the as-of month
    for cohort in sizes:
        months = sorted(r["months_since_signup"] for r in rows if r["cohort_month"] == cohort)
        expected_last = (2026 - cohort.year) * 12 + 6 - cohort.month
        assert months == list(range(expected_last + 1))
    by_key = {(r["cohort_month"], r["months_since_signup"]): r["retained_customers"] for r in rows}
    # 2025-01 cohort: c_price (sub to 2026-06-10), c_downgrade (subs to 2026-06-12), c_react
    # (orders 2025-01-01 and 2025-09-01: alive Jan-Jun 2025 and Sep 2025-Feb 2026)
    assert by_key[(date(2025, 1, 1), 0)] == 3
    assert by_key[(date(2025, 1, 1), 6)] == 2  # end of July 2025: c_react lapsed on 2025-06-30
    assert by_key[(date(2025, 1, 1), 8)] == 3  # end of September 2025: c_react is back
    assert by_key[(date(2025, 1, 1), 17)] == 0  # as of 2026-06-30 all three are gone
    # 2026-01 cohort: c_live is still live on the as-of date
    assert by_key[(date(2026, 1, 1), 5)] == 1


def test_snapshot_records_a_stage_change(fresh_db: str) -> None:
    """Build, cancel a live subscription, build again a day later: the snapshot keeps both stages,
    the stage transitions and daily stage counts read them, and the incremental churn events gain
    the new churn and lose one whose cancellation was taken back."""
    _insert_raw(fresh_db)
    _build(fresh_db)
    before = _rows(
        fresh_db, "select lifecycle_stage from analytics.dim_customers where customer_id = 'c_live'"
    )
    assert before and before[0]["lifecycle_stage"] != "churned"
    churns_before = _rows(fresh_db, "select churn_event_id, customer_id from analytics.fct_churn_events")
    with psycopg.connect(fresh_db) as conn:
        conn.execute(
            "update raw.subscriptions set cancelled_at = '2026-06-30 09:00+00', _loaded_at = now()"
            " where subscription_id = 's_live'"
        )
        # a cancellation taken back: its churn event must disappear from the incremental mart
        conn.execute(
            "update raw.subscriptions set cancelled_at = null, _loaded_at = now() where subscription_id = 's_unknown'"
        )
    _build(fresh_db, as_of="2026-07-01")
    churns_after = _rows(
        fresh_db, "select churn_event_id, customer_id, churn_type from analytics.fct_churn_events"
    )
    assert {c["customer_id"] for c in churns_after} == (
        {c["customer_id"] for c in churns_before} - {"c_unknown"}
    ) | {"c_live"}
    assert len(churns_after) == len(churns_before)  # one churn more, one less
    history = _rows(
        fresh_db,
        "select lifecycle_stage, as_of_date, dbt_valid_to from analytics.snap_customer_stage"
        " where customer_id = 'c_live' order by dbt_valid_from",
    )
    assert [(h["lifecycle_stage"], h["as_of_date"]) for h in history] == [
        (before[0]["lifecycle_stage"], date(2026, 6, 30)),
        ("churned", date(2026, 7, 1)),
    ]
    assert history[0]["dbt_valid_to"] is not None and history[1]["dbt_valid_to"] is None
    transitions = _rows(
        fresh_db,
        "select from_stage, to_stage, transitions from analytics.fct_stage_transitions"
        " where transition_date = '2026-07-01' and from_stage is not null",
    )
    assert {
        "from_stage": before[0]["lifecycle_stage"],
        "to_stage": "churned",
        "transitions": 1,
    } in transitions
    counts = _rows(
        fresh_db,
        "select stage_date, lifecycle_stage, customers from analytics.fct_daily_stage_counts order by 1, 2",
    )
    per_day: dict[date, dict[str, int]] = {}
    for c in counts:
        per_day.setdefault(c["stage_date"], {})[c["lifecycle_stage"]] = c["customers"]
    assert sorted(per_day) == [date(2026, 6, 30), date(2026, 7, 1)]
    dim = _rows(fresh_db, "select lifecycle_stage, count(*) as n from analytics.dim_customers group by 1")
    assert per_day[date(2026, 7, 1)] == {
        **{stage: 0 for stage in per_day[date(2026, 6, 30)]},
        **{d["lifecycle_stage"]: d["n"] for d in dim},
    }
    assert sum(per_day[date(2026, 6, 30)].values()) == sum(per_day[date(2026, 7, 1)].values())
    # c_live churned, c_unknown came back
    assert per_day[date(2026, 7, 1)]["churned"] == per_day[date(2026, 6, 30)]["churned"]


def test_inferred_reasons_match_ground_truth(built_company: str) -> None:
    """Share of churn events (matched to the generator's planted churns) whose reason equals the
    planted true_reason. Ground truth is read here only, for evaluation."""
    from retention.settings import get_settings

    truth_schema = get_settings().truth_schema
    rows = _rows(
        built_company,
        f"""
        select e.reason_source, e.reason_category, t.true_reason
        from analytics.fct_churn_events as e
        inner join {truth_schema}.churn_truth as t
            on t.customer_id = e.customer_id
            and abs(extract(epoch from t.churned_at - e.churned_at)) < 86400 * 2
        """,
    )
    assert len(rows) >= 50, f"only {len(rows)} churn events matched the ground truth"
    report = {}
    for source in ("stated", "inferred", "unknown", "all"):
        subset = [r for r in rows if source in ("all", r["reason_source"])]
        hits = sum(r["reason_category"] == r["true_reason"] for r in subset)
        report[source] = (len(subset), hits / len(subset) if subset else 0.0)
    print("\nchurn reason vs ground truth (events, share matching):")
    for source, (n, share) in report.items():
        print(f"  {source:9} {n:6d}  {share:.1%}")
    assert report["all"][1] >= 0.5
    assert report["inferred"][1] >= 0.5
