"""Planning: audiences, central guardrails, holdouts, decision log, team digests.

Each test builds the few analytics/raw tables the audiences read (columns as in INTERFACES.md) in an
isolated database and runs ``plan_day`` on a fixed day (Tuesday 2026-03-10) and run time.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

DAY = date(2026, 3, 10)  # a Tuesday (winback runs tue/thu)
RUN_AT = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)  # 14:00 Berlin, 22:00 Tokyo, 06:00 Los Angeles

DDL = """
create schema if not exists analytics;
create schema if not exists raw;
create table analytics.dim_customers (
    customer_id text primary key, email text, country text, time_zone text, marketing_consent boolean,
    customer_value numeric, second_lifetime_value numeric, lifecycle_stage text,
    churned_at timestamptz, last_activity_at timestamptz, last_order_at timestamptz
);
create table analytics.churn_scores (
    customer_id text, as_of_date date, churn_probability double precision, risk_tier text,
    reason_codes jsonb, reason_category text, model_version text, customer_value numeric,
    expected_save_rate double precision, offer_cost numeric, priority_score double precision
);
create table analytics.fct_customer_signals (
    customer_id text, as_of_date date, payment_failed_unrecovered boolean
);
create table analytics.fct_renewal_calendar (
    subscription_id text, customer_id text, plan text, price numeric, billing_period text,
    renewal_date date, t_minus_7 date, t_minus_1 date, t_0 date, t_plus_7 date,
    is_cancelled boolean, cancelled_at timestamptz
);
create table raw.payments (
    payment_id text, customer_id text, subscription_id text, due_at timestamptz, attempted_at timestamptz,
    attempt_number integer, amount numeric, status text, failure_code text
);
create table raw.support_tickets (
    ticket_id text, customer_id text, opened_at timestamptz, resolved_at timestamptz, category text,
    error_code text, satisfaction integer
);
create table raw.usage_events (
    event_id bigint, customer_id text, occurred_at timestamptz, event_type text, error_code text
);
"""


# --- helpers -----------------------------------------------------------------------------------


def setup_tables(url: str) -> None:
    from retention.outreach.models import ensure_outreach_tables

    with psycopg.connect(url) as conn:
        conn.execute(DDL)
        ensure_outreach_tables(conn)


def add_customer(
    conn: psycopg.Connection,
    cid: str,
    *,
    email: str | None = "",
    tz: str = "Europe/Berlin",
    consent: bool = True,
    value: float = 100.0,
    slv: float = 50.0,
    stage: str = "active",
    churned_at: datetime | None = None,
) -> None:
    email = f"{cid}@example.com" if email == "" else email
    conn.execute(
        "insert into analytics.dim_customers values (%s, %s, 'DE', %s, %s, %s, %s, %s, %s, null, null)",
        (cid, email, tz, consent, value, slv, stage, churned_at),
    )


def add_score(
    conn: psycopg.Connection,
    cid: str,
    reason: str,
    *,
    tier: str = "high",
    priority: float = 10.0,
    value: float = 100.0,
    prob: float = 0.8,
    as_of: date = DAY,
) -> None:
    codes = [
        {"feature": "usage_trend_pct", "text": "usage fell by half", "contribution": 0.4},
        {"feature": f"{reason}_driver", "text": f"{reason} signal", "contribution": 0.2},
    ]
    conn.execute(
        "insert into analytics.churn_scores values (%s, %s, %s, %s, %s, %s, 'v1', %s, 0.3, 5, %s)",
        (cid, as_of, prob, tier, json.dumps(codes), reason, value, priority),
    )


def add_failed_payment(conn: psycopg.Connection, cid: str, failed_on: date) -> None:
    conn.execute("insert into analytics.fct_customer_signals values (%s, %s, true)", (cid, DAY))
    at = datetime.combine(failed_on, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    conn.execute(
        "insert into raw.payments values (%s, %s, 'sub', %s, %s, 1, 10, 'failed', 'card_expired')",
        (f"p-{cid}-{failed_on}", cid, at, at),
    )


def add_renewal(conn: psycopg.Connection, sub: str, cid: str, renewal: date, cancelled: bool = False) -> None:
    conn.execute(
        "insert into analytics.fct_renewal_calendar values (%s, %s, 'premium', 19.99, 'month', %s, %s, %s, %s, %s,"
        " %s, null)",
        (
            sub,
            cid,
            renewal,
            renewal - timedelta(days=7),
            renewal - timedelta(days=1),
            renewal,
            renewal + timedelta(days=7),
            cancelled,
        ),
    )


def test_config(holdouts: float | None = 0.0, **overrides: Any) -> Any:
    """The real campaigns.yml, with every campaign's holdout set to ``holdouts`` (None: as is)."""
    from retention.outreach.campaigns import parse_campaigns
    from retention.settings import get_settings

    raw = yaml.safe_load(Path(get_settings().campaigns_file).read_text())
    for c in raw["campaigns"]:
        if holdouts is not None:
            c["holdout_share"] = holdouts
        c.update(overrides.get(c["id"], {}))
    return parse_campaigns(yaml.safe_dump(raw), "test")


test_config.__test__ = False  # type: ignore[attr-defined]


def decisions(url: str, day: date = DAY) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select campaign_id, step, customer_id, outcome, detail from ops.decision_log where decided_on = %s",
            (day,),
        ).fetchall()
    return {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}


def outcome_of(decs: dict[tuple[str, str, str], tuple[str, str | None]], customer: str) -> dict[str, str]:
    return {f"{k[0]}/{k[1]}": v[0] for k, v in decs.items() if k[2] == customer}


@pytest.fixture
def wh(use_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_GLOBAL_HOLDOUT", "0")
    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETENTION_AS_OF", "")
    get_settings.cache_clear()
    setup_tables(use_db)
    return use_db


def plan(url: str, day: date = DAY, now: datetime = RUN_AT, config: Any = None, **kw: Any) -> Any:
    from retention.outreach.planner import plan_day

    return plan_day(url, day, now=now, config=config or test_config(), **kw)


# --- guardrails and treatments -----------------------------------------------------------------


def test_guardrails_and_treatments_by_reason(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        for cid, reason in [
            ("c_price", "price"),
            ("c_quality", "quality_fit"),
            ("c_service", "service_failure"),
            ("c_moved", "moved_no_need"),
            ("c_invol", "involuntary"),
            ("c_noemail", "price"),
            ("c_bademail", "price"),
            ("c_noconsent", "price"),
            ("c_unsub", "price"),
            ("c_spam", "price"),
        ]:
            email = {"c_noemail": None, "c_bademail": "not-an-address"}.get(cid, "")
            add_customer(conn, cid, email=email, consent=cid != "c_noconsent")
            add_score(conn, cid, reason)
        add_failed_payment(conn, "c_invol", DAY)
        # transactional dunning still reaches the unsubscribed, never the bounced
        add_customer(conn, "c_unsub_dun", consent=False)
        add_failed_payment(conn, "c_unsub_dun", DAY)
        add_customer(conn, "c_bounced_dun")
        add_failed_payment(conn, "c_bounced_dun", DAY)
        add_customer(conn, "c_manual_dun")  # a manual suppression stops even transactional mail
        add_failed_payment(conn, "c_manual_dun", DAY)
        conn.execute(
            "insert into ops.suppressions (email, reason, source) values"
            " ('c_unsub@example.com', 'unsubscribed', 'webhook'), ('C_SPAM@example.com', 'spamreport', 'webhook'),"
            " ('c_unsub_dun@example.com', 'unsubscribed', 'webhook'), ('c_bounced_dun@example.com', 'bounced', 'sg'),"
            " ('c_manual_dun@example.com', 'manual', 'legal request')"
        )
    result = plan(wh)
    decs = decisions(wh)
    by_customer = {m.customer_id: m for m in result.messages}

    assert outcome_of(decs, "c_price") == {"save_offers/discount": "sent"}
    assert (
        by_customer["c_price"].offer_code == "SAVE-20" and by_customer["c_price"].template == "save_discount"
    )
    assert by_customer["c_quality"].template == "save_help" and by_customer["c_quality"].offer_code is None
    assert by_customer["c_service"].template == "save_apology"
    assert outcome_of(decs, "c_moved") == {"save_offers/let-go": "let_go"}
    assert "c_moved" not in by_customer
    # involuntary: never a discount, routed to dunning
    assert outcome_of(decs, "c_invol") == {"dunning/dunning-1": "sent"}
    assert by_customer["c_invol"].offer_code is None and by_customer["c_invol"].category == "transactional"
    assert not any(m.offer_code for m in result.messages if m.customer_id == "c_invol")
    assert outcome_of(decs, "c_noemail") == {"save_offers/discount": "suppressed:no_email"}
    assert outcome_of(decs, "c_bademail") == {"save_offers/discount": "suppressed:no_email"}
    assert outcome_of(decs, "c_noconsent") == {"save_offers/discount": "suppressed:no_consent"}
    assert outcome_of(decs, "c_unsub") == {"save_offers/discount": "suppressed:unsubscribed"}
    assert outcome_of(decs, "c_spam") == {"save_offers/discount": "suppressed:spamreport"}
    assert outcome_of(decs, "c_unsub_dun") == {"dunning/dunning-1": "sent"}
    assert outcome_of(decs, "c_bounced_dun") == {"dunning/dunning-1": "suppressed:bounced"}
    assert outcome_of(decs, "c_manual_dun") == {"dunning/dunning-1": "suppressed:manual"}
    assert decs[("dunning", "dunning-1", "c_manual_dun")][1] == "manual (legal request)"
    blocked = {
        "c_noemail",
        "c_bademail",
        "c_noconsent",
        "c_unsub",
        "c_spam",
        "c_bounced_dun",
        "c_manual_dun",
        "c_moved",
    }
    assert not blocked & set(by_customer)
    # the decision log has one row per considered (campaign, step, customer) and matches the result
    assert len(decs) == result.decisions == sum(result.outcome_counts.values())
    with psycopg.connect(wh) as conn:
        queued = {r[0] for r in conn.execute("select customer_id from ops.outbox where state = 'pending'")}
    assert queued == set(by_customer)


def test_unsubscribe_from_webhook_events_is_honoured(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        conn.execute(
            "create table raw.email_events (sg_event_id text, event text, email text, occurred_at timestamptz,"
            " outbox_key text, sg_message_id text, reason text)"
        )
        conn.execute(
            "insert into raw.email_events values ('e1', 'unsubscribe', 'A@example.com', now(), null, null, null)"
        )
        add_customer(conn, "a")
        add_score(conn, "a", "price")
    plan(wh)
    assert outcome_of(decisions(wh), "a") == {"save_offers/discount": "suppressed:unsubscribed"}


def test_one_message_per_customer_per_day_by_priority(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        add_customer(conn, "both")
        add_score(conn, "both", "price")
        add_failed_payment(conn, "both", DAY)  # dunning (priority 100) beats save_offers (60)
        add_customer(conn, "renew")
        add_score(conn, "renew", "quality_fit")
        add_renewal(conn, "s1", "renew", DAY + timedelta(days=7))  # renewal (80) beats save_offers
    result = plan(wh)
    decs = decisions(wh)
    assert outcome_of(decs, "both") == {"dunning/dunning-1": "sent", "save_offers/discount": "lower_priority"}
    assert decs[("save_offers", "discount", "both")][1] == "slot taken by dunning:dunning-1"
    assert outcome_of(decs, "renew") == {"renewal_sequence/t-7": "sent", "save_offers/help": "lower_priority"}
    assert sorted(m.customer_id for m in result.messages) == ["both", "renew"]


def test_frequency_cap_counts_marketing_in_the_window(wh: str) -> None:
    from retention.outreach.models import outbox_key

    with psycopg.connect(wh) as conn:
        for cid in ("busy", "calm"):
            add_customer(conn, cid)
            add_score(conn, cid, "price")
        add_failed_payment(conn, "busy", DAY - timedelta(days=1))
        # three marketing messages in the last 7 days for "busy", three older ones for "calm"
        for i, (cid, days_ago) in enumerate(
            [("busy", 1), ("busy", 3), ("busy", 6), ("calm", 8), ("calm", 9), ("calm", 20)]
        ):
            at = RUN_AT - timedelta(days=days_ago)
            conn.execute(
                "insert into ops.outbox (outbox_key, campaign_id, step, customer_id, email, template, category,"
                " batch_key, send_at, planned_on, state, sent_at) values (%s, 'old', 's', %s, 'x@example.com',"
                " 'save_help', 'marketing', 'b', %s, %s, 'sent', %s)",
                (outbox_key("old", f"s{i}", cid), cid, at, at.date(), at),
            )
    plan(wh)
    decs = decisions(wh)
    assert outcome_of(decs, "busy") == {"save_offers/discount": "capped", "dunning/dunning-1": "sent"}
    assert outcome_of(decs, "calm") == {"save_offers/discount": "sent"}


def test_quiet_hours_in_the_customers_time_zone(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        for cid, tz in [
            ("tokyo", "Asia/Tokyo"),
            ("la", "America/Los_Angeles"),
            ("berlin", "Europe/Berlin"),
            ("mars", "Mars/Olympus_Mons"),  # unknown zone: the business time zone (Berlin) applies
        ]:
            add_customer(conn, cid, tz=tz)
            add_score(conn, cid, "price")
    result = plan(wh)
    send_at = {m.customer_id: m.send_at for m in result.messages}
    # 13:00 UTC is 22:00 in Tokyo (quiet): 08:00 local next morning = 23:00 UTC
    assert send_at["tokyo"] == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    # and 06:00 in Los Angeles (PDT since 8 March, quiet): 08:00 local = 15:00 UTC
    assert send_at["la"] == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert send_at["berlin"] == RUN_AT and send_at["mars"] == RUN_AT
    decs = decisions(wh)
    assert decs[("save_offers", "discount", "tokyo")][0] == "quiet_hours_deferred"
    assert decs[("save_offers", "discount", "la")][0] == "quiet_hours_deferred"
    assert decs[("save_offers", "discount", "berlin")][0] == "sent"
    with psycopg.connect(wh) as conn:
        rows = dict(conn.execute("select customer_id, send_at from ops.outbox").fetchall())
    assert rows["tokyo"] == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)  # deferred but still queued


def test_quiet_hours_helper() -> None:
    from retention.outreach.guardrails import in_quiet_hours, quiet_hours_send_at

    assert in_quiet_hours(22, 21, 8) and in_quiet_hours(3, 21, 8) and not in_quiet_hours(8, 21, 8)
    assert in_quiet_hours(13, 12, 14) and not in_quiet_hours(14, 12, 14) and not in_quiet_hours(5, 5, 5)
    at, deferred = quiet_hours_send_at(datetime(2026, 3, 10, 16, 30, tzinfo=UTC), "Asia/Tokyo", 21, 8)
    assert deferred and at == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)  # 01:30 local -> 08:00 same day
    at, deferred = quiet_hours_send_at(RUN_AT, "UTC", 21, 8)
    assert not deferred and at == RUN_AT


# --- holdouts ----------------------------------------------------------------------------------


def test_holdout_is_deterministic_and_has_the_right_share() -> None:
    from retention.outreach import holdout

    ids = [f"cust-{i:06d}" for i in range(40_000)]
    u1 = holdout.uniforms(ids, "save_offers", "salt-a")
    u2 = holdout.uniforms(ids, "save_offers", "salt-a")
    assert (u1 == u2).all() and ((u1 >= 0) & (u1 < 1)).all()
    assert holdout.uniform(ids[7], "save_offers", "salt-a") == u1[7]
    share = (u1 < 0.1).mean()
    assert abs(share - 0.1) < 0.006  # 40k draws: sd 0.0015
    # campaigns and salts draw independently
    other = holdout.uniforms(ids, "winback", "salt-a") < 0.1
    overlap = ((u1 < 0.1) & other).mean()
    assert abs(overlap - 0.01) < 0.003
    assert (holdout.uniforms(ids, "save_offers", "salt-b") != u1).mean() > 0.99
    # the documented formula
    import hashlib

    digest = hashlib.sha256(b"salt-a:save_offers:cust-000007").digest()
    assert u1[7] == int.from_bytes(digest[:8], "big") / 2**64
    assert holdout.held_out_mask(ids[:10], "x", 0.0, "s").sum() == 0


def test_held_out_customers_never_get_a_message(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.outreach import holdout
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_GLOBAL_HOLDOUT", "0.1")
    monkeypatch.setenv("RETENTION_HOLDOUT_SALT", "test-salt")
    get_settings.cache_clear()
    with psycopg.connect(wh) as conn:
        for i in range(400):
            add_customer(conn, f"h{i:03d}")
            add_score(conn, f"h{i:03d}", "price")
    config = test_config(holdouts=0.3)
    result = plan(wh, config=config)
    decs = decisions(wh)
    messaged = {m.customer_id for m in result.messages}
    held = {k[2] for k, v in decs.items() if v[0] == "held_out"}
    assert held and not held & messaged
    assert len(held) + len(messaged) == 400
    for i in range(400):
        cid = f"h{i:03d}"
        expected = holdout.is_held_out(cid, "global", 0.1, "test-salt") or holdout.is_held_out(
            cid, "save_offers", 0.3, "test-salt"
        )
        assert (cid in held) == expected
    assert 0.28 < len(held) / 400 < 0.42  # 1 - 0.9 * 0.7 = 0.37
    with psycopg.connect(wh) as conn:
        groups = dict(
            conn.execute("select holdout_group, count(*) from ops.decision_log group by 1").fetchall()
        )
    assert set(groups) == {"global", "campaign", "treatment"}
    # same assignment on a rerun
    plan(wh, config=config)
    assert {k[2] for k, v in decisions(wh).items() if v[0] == "held_out"} == held


def test_transactional_dunning_can_skip_the_global_holdout(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.outreach import holdout
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_GLOBAL_HOLDOUT", "0.5")
    get_settings.cache_clear()
    with psycopg.connect(wh) as conn:
        for i in range(40):
            add_customer(conn, f"d{i}")
            add_failed_payment(conn, f"d{i}", DAY)
    result = plan(wh)
    assert any(holdout.is_held_out(f"d{i}", "global", 0.5) for i in range(40))
    assert len(result.messages) == 40  # dunning: global_holdout false, holdout_share 0


# --- renewal sequence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "step", "template", "offer"),
    [
        (7, "t-7", "renewal_t_minus_7", None),
        (1, "t-1", "renewal_t_minus_1_offer", "RENEW-EXTRA-MONTH"),
        (0, "t0", "renewal_t0_perk", "RENEW-PERK"),
        (-7, "t+7", "renewal_t_plus_7_winback", "COMEBACK-15"),
    ],
)
def test_renewal_sequence_picks_the_step(
    wh: str, offset: int, step: str, template: str, offer: str | None
) -> None:
    renewal = DAY + timedelta(days=offset)
    with psycopg.connect(wh) as conn:
        add_customer(conn, "sub")
        add_renewal(conn, "s1", "sub", renewal, cancelled=offset < 0)
        add_customer(conn, "other")
        add_renewal(conn, "s2", "other", DAY + timedelta(days=3))  # no step today
    result = plan(wh)
    assert [(m.customer_id, m.step, m.template, m.offer_code, m.cycle) for m in result.messages] == [
        ("sub", step, template, offer, renewal.isoformat())
    ]
    assert result.messages[0].context["renewal_date"] == renewal.isoformat()
    assert "other" not in {k[2] for k in decisions(wh)}


def test_no_winback_for_a_subscription_still_live_after_its_renewal_date(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        add_customer(conn, "live")
        add_renewal(conn, "s1", "live", DAY - timedelta(days=7), cancelled=False)
    result = plan(wh)
    assert result.messages == []
    assert outcome_of(decisions(wh), "live") == {"renewal_sequence/t+7": "sequence_stopped"}


def test_renewal_sequence_stops_when_the_customer_renews(wh: str) -> None:
    renewal = DAY + timedelta(days=7)
    with psycopg.connect(wh) as conn:
        for cid in ("stays", "renews", "pays"):
            add_customer(conn, cid)
            add_renewal(conn, f"s-{cid}", cid, renewal)
    t7 = plan(wh, DAY, now=RUN_AT)
    assert sorted(m.customer_id for m in t7.messages) == ["pays", "renews", "stays"]
    # T-1 is planned in advance for "stays"? no: each day is planned on its own day. Mark T-7 as sent.
    with psycopg.connect(wh) as conn:
        conn.execute("update ops.outbox set state = 'sent', sent_at = send_at")
        # "renews" renewed early: its renewal date moved on a cycle
        conn.execute(
            "update analytics.fct_renewal_calendar set renewal_date = %s where subscription_id = 's-renews'",
            (renewal + timedelta(days=31),),
        )
        # "pays" paid for the subscription since T-7
        conn.execute(
            "insert into raw.payments values ('p1', 'pays', 's-pays', %s, %s, 1, 19.99, 'succeeded', null)",
            (RUN_AT + timedelta(days=2), RUN_AT + timedelta(days=2)),
        )
    t1_day = renewal - timedelta(days=1)
    t1 = plan(wh, t1_day, now=RUN_AT + timedelta(days=6))
    decs = decisions(wh, t1_day)
    assert [m.customer_id for m in t1.messages] == ["stays"]
    assert outcome_of(decs, "renews") == {"renewal_sequence/t-1": "sequence_stopped"}
    assert "renewal date moved" in (decs[("renewal_sequence", "t-1", "renews")][1] or "")
    assert outcome_of(decs, "pays") == {"renewal_sequence/t-1": "sequence_stopped"}
    assert "payment succeeded" in (decs[("renewal_sequence", "t-1", "pays")][1] or "")
    # and on T0 / T+7 they stay stopped; "stays" gets its perk
    t0 = plan(wh, renewal, now=RUN_AT + timedelta(days=7))
    assert [(m.customer_id, m.step) for m in t0.messages] == [("stays", "t0")]
    assert outcome_of(decisions(wh, renewal), "renews") == {"renewal_sequence/t0": "sequence_stopped"}


def test_stopped_sequence_cancels_pending_messages(wh: str) -> None:
    renewal = DAY + timedelta(days=1)
    with psycopg.connect(wh) as conn:
        add_customer(conn, "r")
        add_renewal(conn, "s-r", "r", renewal)
    plan(wh, renewal - timedelta(days=7), now=RUN_AT - timedelta(days=6))  # T-7 queued, still pending
    with psycopg.connect(wh) as conn:
        conn.execute("update analytics.fct_renewal_calendar set renewal_date = renewal_date + 31")
    plan(wh)  # T-1 day: renewed
    with psycopg.connect(wh) as conn:
        states = conn.execute("select step, state, last_error from ops.outbox").fetchall()
    assert states == [("t-7", "cancelled", "sequence_stopped")]


# --- proactive service, win-back, dunning ------------------------------------------------------


def test_proactive_outreach_finds_silent_victims_not_the_complainer(wh: str) -> None:
    t = datetime(2026, 3, 5, 12, tzinfo=UTC)
    with psycopg.connect(wh) as conn:
        for cid in ("complainer", "silent1", "silent2", "other_error", "old_hit", "no_error"):
            add_customer(conn, cid)
        conn.execute(
            "insert into raw.support_tickets values ('t1', 'complainer', %s, null, 'technical', 'E-PLAY-502', null)",
            (t,),
        )
        events = [
            ("complainer", t, "E-PLAY-502"),
            ("silent1", t - timedelta(days=1), "E-PLAY-502"),
            ("silent1", t, "E-PLAY-502"),
            ("silent2", t + timedelta(days=2), "E-PLAY-502"),
            ("other_error", t, "E-LOGIN-1"),  # nobody complained about this one
            ("old_hit", t - timedelta(days=30), "E-PLAY-502"),  # outside the period
        ]
        for i, (cid, at, code) in enumerate(events):
            conn.execute("insert into raw.usage_events values (%s, %s, %s, 'error', %s)", (i, cid, at, code))
        conn.execute("insert into raw.usage_events values (99, 'no_error', %s, 'play', null)", (t,))
    result = plan(wh)
    victims = {m.customer_id: m for m in result.messages if m.campaign_id == "proactive_service"}
    assert set(victims) == {"silent1", "silent2"}
    assert victims["silent1"].cycle == "E-PLAY-502" and victims["silent1"].template == "proactive_apology"
    assert victims["silent1"].context["error_code"] == "E-PLAY-502"
    assert "complainer" not in {k[2] for k in decisions(wh)}


def test_winback_quick_offer_nurture_and_let_go(wh: str) -> None:
    def ago(days: int) -> datetime:
        return datetime.combine(DAY - timedelta(days=days), datetime.min.time(), tzinfo=UTC)

    with psycopg.connect(wh) as conn:
        add_customer(conn, "recent", stage="lapsed", churned_at=ago(70), slv=300)
        add_customer(conn, "long", stage="churned", churned_at=ago(200), slv=80)
        add_customer(conn, "too_new", stage="lapsed", churned_at=ago(20))
        add_customer(conn, "moved", stage="churned", churned_at=ago(90))
        conn.execute(
            "create table analytics.fct_churn_events (customer_id text, subscription_id text, churned_at timestamptz,"
            " churn_type text, reason_category text, reason_source text, revenue_lost_12m numeric)"
        )
        conn.execute(
            "insert into analytics.fct_churn_events values ('moved', null, %s, 'voluntary', 'moved_no_need',"
            " 'stated', 0)",
            (ago(90),),
        )
    result = plan(wh)
    msgs = {m.customer_id: m for m in result.messages}
    assert msgs["recent"].step == "quick-offer" and msgs["recent"].offer_code == "WELCOME-BACK-25"
    assert msgs["long"].step == "nurture" and msgs["long"].offer_code is None
    assert msgs["recent"].priority == 300  # ranked by second-lifetime value
    assert outcome_of(decisions(wh), "moved") == {"winback/quick-offer": "let_go"}
    assert "too_new" not in msgs
    # winback is scheduled on Tuesdays and Thursdays only
    wed = plan(wh, DAY + timedelta(days=1), now=RUN_AT + timedelta(days=1))
    assert "not scheduled" in wed.notes["winback"]


def test_dunning_step_follows_days_since_failure(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        for cid, ago in [("d0", 0), ("d4", 4), ("d9", 9)]:
            add_customer(conn, cid)
            add_failed_payment(conn, cid, DAY - timedelta(days=ago))
    result = plan(wh)
    steps = {m.customer_id: (m.step, m.cycle) for m in result.messages}
    assert steps == {
        "d0": ("dunning-1", DAY.isoformat()),
        "d4": ("dunning-2", (DAY - timedelta(days=4)).isoformat()),
        "d9": ("dunning-3", (DAY - timedelta(days=9)).isoformat()),
    }
    assert all(m.context["update_payment_url"] for m in result.messages)


# --- idempotency, batches, decision log, missing data -------------------------------------------


def test_rerun_same_day_replaces_decisions_and_keeps_sent(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        for cid in ("a", "b", "c"):
            add_customer(conn, cid)
            add_score(conn, cid, "price")
    first = plan(wh)
    assert len(first.messages) == 3
    with psycopg.connect(wh) as conn:
        conn.execute("update ops.outbox set state = 'sent', sent_at = now() where customer_id = 'a'")
        conn.execute("insert into ops.suppressions values ('b@example.com', 'unsubscribed', 'webhook')")
    second = plan(wh)
    decs = decisions(wh)
    assert len(decs) == 3
    assert outcome_of(decs, "a") == {"save_offers/discount": "sent"}  # the sent message keeps its row
    assert outcome_of(decs, "b") == {"save_offers/discount": "suppressed:unsubscribed"}
    assert outcome_of(decs, "c") == {"save_offers/discount": "sent"}
    assert second.outcome_counts["already_sent"] == 1
    with psycopg.connect(wh) as conn:
        rows = dict(conn.execute("select customer_id, state from ops.outbox").fetchall())
    assert rows == {"a": "sent", "c": "pending"}  # b's pending message is gone
    third = plan(wh)
    assert decisions(wh) == decs and third.outcome_counts == second.outcome_counts


def test_dry_run_writes_nothing(wh: str) -> None:
    with psycopg.connect(wh) as conn:
        add_customer(conn, "a")
        add_score(conn, "a", "price")
    result = plan(wh, dry_run=True)
    assert len(result.messages) == 1
    assert decisions(wh) == {}


def test_batches_hold_at_most_the_batch_size(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.outreach.planner import batches_for_day
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_BATCH", "2")
    get_settings.cache_clear()
    with psycopg.connect(wh) as conn:
        for i in range(5):
            add_customer(conn, f"p{i}")
            add_score(conn, f"p{i}", "price", priority=float(i))
        add_customer(conn, "q")
        add_score(conn, "q", "quality_fit")
    result = plan(wh)
    sizes = {k: len(v) for k, v in result.batches.items()}
    assert sizes == {
        "save_offers.discount.0000": 2,
        "save_offers.discount.0001": 2,
        "save_offers.discount.0002": 1,
        "save_offers.help.0000": 1,
    }
    assert [m.customer_id for m in result.batches["save_offers.discount.0000"]] == ["p4", "p3"]  # best first
    assert batches_for_day(wh, DAY) == sorted(sizes)
    assert result.batch_keys == sorted(sizes)
    xcom = json.loads(json.dumps(result.as_xcom()))
    assert (
        xcom["messages"] == 6 and xcom["batches"] == sorted(sizes) and xcom["outcome_counts"] == {"sent": 6}
    )


def test_fallback_enqueue_without_the_delivery_layer(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "retention.outreach.outbox", None)
    with psycopg.connect(wh) as conn:
        add_customer(conn, "a")
        add_score(conn, "a", "price")
    result = plan(wh)
    assert result.enqueued_with == "planner fallback"
    with psycopg.connect(wh) as conn:
        row = conn.execute(
            "select outbox_key, template, offer_code, context, planned_on, state from ops.outbox"
        ).fetchone()
    assert row[0] == result.messages[0].key and row[1:3] == ("save_discount", "SAVE-20")
    assert row[3]["reason_category"] == "price" and row[4] == DAY and row[5] == "pending"


def test_vectorised_outbox_keys_match_the_shared_function() -> None:
    import pandas as pd

    from retention.outreach.guardrails import outbox_keys
    from retention.outreach.models import outbox_key

    df = pd.DataFrame({"c": ["x", "y"], "s": ["t-7", "a"], "y": ["2026-03-17", ""], "u": ["cust1", "cust2"]})
    got = outbox_keys(df["c"], df["s"], df["y"], df["u"]).tolist()
    assert got == [outbox_key("x", "t-7", "cust1", "2026-03-17"), outbox_key("y", "a", "cust2")]


def test_missing_optional_tables_yield_nobody_and_say_why(
    use_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_GLOBAL_HOLDOUT", "0")
    get_settings.cache_clear()
    with psycopg.connect(use_db) as conn:
        conn.execute(DDL.split("create table analytics.churn_scores")[0])  # schemas + dim_customers only
        add_customer(conn, "lonely", stage="lapsed", churned_at=datetime(2025, 1, 1, tzinfo=UTC))
    result = plan(use_db)
    assert result.messages == [] and result.decisions == 0
    assert "analytics.churn_scores does not exist" in result.notes["save_offers"]
    assert "fct_renewal_calendar does not exist" in result.notes["renewal_sequence"]
    assert "support_tickets does not exist" in result.notes["proactive_service"]
    assert "fct_customer_signals does not exist" in result.notes["dunning"]
    assert result.notes["winback"] == "audience is empty today"


def test_a_broken_audience_query_is_a_clear_error_and_writes_nothing(wh: str) -> None:
    from retention.outreach.planner import PlanError

    with psycopg.connect(wh) as conn:
        add_customer(conn, "a")
        add_score(conn, "a", "price")
        add_failed_payment(conn, "a", DAY)
        conn.execute("alter table analytics.churn_scores drop column priority_score")
    with pytest.raises(PlanError, match="campaign 'save_offers': audience builder 'at_risk_scores' failed"):
        plan(wh)
    assert decisions(wh) == {}


def test_why_answers_with_one_query_and_the_cli(wh: str, capsys: pytest.CaptureFixture[str]) -> None:
    from retention.outreach.cli import main
    from retention.outreach.planner import why

    with psycopg.connect(wh) as conn:
        add_customer(conn, "quiet", consent=False)
        add_score(conn, "quiet", "price")
        add_failed_payment(conn, "quiet", DAY)
        conn.execute("insert into ops.suppressions values ('quiet@example.com', 'bounced', 'webhook')")
    plan(wh)
    rows = why("quiet", DAY, wh)
    assert sorted(zip(rows["campaign_id"], rows["outcome"], strict=True)) == [
        ("dunning", "suppressed:bounced"),
        ("save_offers", "suppressed:no_consent"),
    ]
    # the README's query, verbatim
    readme = (Path(__file__).resolve().parents[1] / "plugins/retention/outreach/README.md").read_text()
    query = readme.split("```sql\n", 1)[1].split("```", 1)[0]
    with psycopg.connect(wh) as conn:
        got = conn.execute(query, {"customer_id": "quiet", "day": DAY}).fetchall()
    assert sorted(r[1] + "/" + r[3] for r in got) == [
        "dunning/suppressed:bounced",
        "save_offers/suppressed:no_consent",
    ]
    assert main(["why", "quiet", "--date", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "dunning/dunning-1: suppressed:bounced" in out and "no marketing consent" in out
    assert main(["why", "nobody", "--date", DAY.isoformat()]) == 0
    assert "no campaign considered them" in capsys.readouterr().out


def test_cli_plan_and_batches(
    wh: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retention.outreach.cli import main

    with psycopg.connect(wh) as conn:
        add_customer(conn, "a", tz="UTC")
        add_score(conn, "a", "price")
    assert main(["dry-run", "--date", DAY.isoformat()]) == 0
    assert "save_offers" in capsys.readouterr().out and decisions(wh) == {}
    assert main(["plan", "--date", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "save_offers: sent=1" in out or "save_offers: quiet_hours_deferred=1" in out
    assert main(["batches", "--date", DAY.isoformat()]) == 0
    assert capsys.readouterr().out.split() == ["save_offers.discount.0000"]
    assert main(["nonsense"]) == 2


# --- team alerts -------------------------------------------------------------------------------


def _team_data(conn: psycopg.Connection) -> None:
    add_score(conn, "svc", "service_failure", value=2000)
    add_score(conn, "inv", "involuntary", value=1500)
    add_score(conn, "pay", "price", value=1200)
    conn.execute("insert into analytics.fct_customer_signals values ('pay', %s, true)", (DAY,))
    add_score(conn, "key", "service_failure", value=9000)
    add_score(conn, "small", "service_failure", value=500)  # below the high-value threshold
    add_score(conn, "lowrisk", "service_failure", value=3000, tier="low")
    add_score(conn, "moved", "moved_no_need", value=3000)  # let go: not escalated
    add_score(conn, "old", "service_failure", value=3000, as_of=DAY - timedelta(days=7))  # not the latest


def test_team_digest_routes_with_reason_codes(wh: str, tmp_path: Path) -> None:
    from retention.outreach.team_alerts import run_digests

    with psycopg.connect(wh) as conn:
        _team_data(conn)
    result = run_digests(wh, DAY, config=test_config())
    ids = {team: [c["customer_id"] for c in cs] for team, cs in result.teams.items()}
    assert ids == {"support": ["svc"], "billing": ["inv", "pay"], "account_managers": ["key"]}
    folder = tmp_path / "state" / "digests" / DAY.isoformat()
    md = (folder / "support.md").read_text()
    assert (
        "svc" in md and "service_failure" in md and "usage fell by half" in md and "`usage_trend_pct`" in md
    )
    data = json.loads((folder / "billing.json").read_text())
    assert data["recipient"] == "billing-team@example.com"
    assert [c["reason_codes"][0]["text"] for c in data["customers"]] == ["usage fell by half"] * 2
    assert next(c for c in data["customers"] if c["customer_id"] == "pay")["payment_failed_unrecovered"]
    # e-mail through the delivery layer: one transactional team_digest message per team and day
    with psycopg.connect(wh) as conn:
        rows = conn.execute(
            "select step, email, template, category, context from ops.outbox where campaign_id = 'team_digest'"
        ).fetchall()
    assert {r[0]: r[1] for r in rows} == {
        "support": "support-team@example.com",
        "billing": "billing-team@example.com",
        "account_managers": "key-accounts@example.com",
    }
    assert all(r[2] == "team_digest" and r[3] == "transactional" for r in rows)
    support = next(r[4] for r in rows if r[0] == "support")
    assert support["customers"][0]["reasons"] == ["usage fell by half", "service_failure signal"]
    assert "reason_category" in support["customers"][0]
    from retention.outreach.team_alerts import send_digests

    # the DAG's entry point: a rerun queues nothing twice, and the queued digests are sent right away
    summary = json.loads(json.dumps(send_digests(wh, DAY)))
    assert summary["teams"]["billing"] == {
        "customers": 2,
        "path": str(folder / "billing.md"),
        "delivered": "sent",
    }
    with psycopg.connect(wh) as conn:
        states = conn.execute("select state, count(*) from ops.outbox group by 1").fetchall()
    assert states == [("sent", 3)]


def test_team_digest_to_a_webhook(wh: str, monkeypatch: pytest.MonkeyPatch, httpserver: Any) -> None:
    from retention.outreach.team_alerts import TeamAlertError, run_digests
    from retention.settings import get_settings

    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    monkeypatch.setenv("RETENTION_ALERT_WEBHOOK_URL", httpserver.url_for("/hook"))
    get_settings.cache_clear()
    with psycopg.connect(wh) as conn:
        _team_data(conn)
    result = run_digests(wh, DAY, config=test_config())
    assert set(result.delivered.values()) == {"webhook"}
    bodies = [json.loads(req.data)["text"] for req, _ in httpserver.log]
    assert len(bodies) == 3 and any("svc" in b and "service_failure" in b for b in bodies)
    again = run_digests(wh, DAY, config=test_config())
    assert len(httpserver.log) == 3 and all(v.startswith("skipped") for v in again.delivered.values())
    # a failing webhook is a clear error (next day: not posted yet)
    httpserver.clear()
    httpserver.expect_request("/hook").respond_with_data("boom", status=500)
    with pytest.raises(TeamAlertError, match="alert webhook failed"):
        run_digests(wh, DAY + timedelta(days=1), config=test_config())


def test_team_without_mailbox_is_a_clear_error(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.outreach.team_alerts import TeamAlertError, run_digests
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_TEAM_EMAILS", "support=s@example.com")
    get_settings.cache_clear()
    with psycopg.connect(wh) as conn:
        _team_data(conn)
    with pytest.raises(TeamAlertError, match=r"\['account_managers', 'billing'\] have no mailbox"):
        run_digests(wh, DAY, config=test_config())


def test_outcomes_are_the_shared_vocabulary(wh: str) -> None:
    from retention.outreach.models import OUTCOMES

    with psycopg.connect(wh) as conn:
        add_customer(conn, "a", email=None)
        add_score(conn, "a", "price")
    result = plan(wh)
    assert set(result.outcome_counts) <= set(OUTCOMES)


def test_outbox_frame_rejects_a_step_campaigns_yml_does_not_define() -> None:
    import pandas as pd

    from retention.outreach.campaigns import load_campaigns
    from retention.outreach.planner import PlanError, _outbox_frame

    df = pd.DataFrame({"campaign_id": ["dunning"], "step": ["no-such-step"], "customer_id": ["c1"],
                       "score": [1.0], "email": ["a@example.com"], "cycle": [""]})  # fmt: skip
    with pytest.raises(PlanError, match="dunning/no-such-step"):
        _outbox_frame(df, load_campaigns(), 1000)
