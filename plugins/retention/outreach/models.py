"""Shared outreach types and the operational tables (schema ``ops``).

Planning (campaigns, guardrails, holdouts) produces :class:`PlannedMessage` objects and a row in
``ops.decision_log`` for every customer considered. Delivery puts planned messages in
``ops.outbox`` (unique per campaign, step and customer) and sends each exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import psycopg

from retention.settings import get_settings

Category = Literal["marketing", "transactional"]

#: a deliverable address: planning (guardrails) and delivery (enqueue) use this one pattern, so
#: every planned message can be queued
EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$"

#: outcomes written to ops.decision_log (one query answers "why did this customer get nothing?")
OUTCOMES = (
    "sent",  # planned and queued for delivery
    "held_out",  # in the campaign's (or global) random control group
    "suppressed:unsubscribed",
    "suppressed:bounced",
    "suppressed:spamreport",
    "suppressed:manual",  # suppressed by hand (legal request, complaint): stops every message
    "suppressed:no_consent",
    "suppressed:no_email",
    "capped",  # frequency cap over the rolling window
    "lower_priority",  # another campaign won the one-message-a-day slot
    "quiet_hours_deferred",  # queued with send_at at the end of the customer's quiet hours
    "sequence_stopped",  # e.g. the customer renewed
    "already_sent",  # this campaign step reached the customer before
    "let_go",  # moved / no longer needs it: we do not chase
)


def outbox_key(campaign_id: str, step: str, customer_id: str, cycle: str = "") -> str:
    """Stable key of one message: the same campaign step for the same customer (and cycle, e.g.
    the renewal date) is sent at most once. Carries no personal data: the customer id is hashed."""
    digest = hashlib.sha256(f"{customer_id}".encode()).hexdigest()[:16]
    parts = [campaign_id, step, cycle, digest] if cycle else [campaign_id, step, digest]
    return ":".join(parts)


@dataclass(frozen=True)
class PlannedMessage:
    campaign_id: str
    step: str  # e.g. "t-7", "offer", "dunning-1"
    customer_id: str
    email: str
    template: str  # template name under plugins/retention/outreach/templates/
    category: Category
    send_at: datetime  # UTC, already moved out of the customer's quiet hours
    batch_key: str  # campaign x segment: one mapped delivery task per batch key
    priority: float
    cycle: str = ""  # e.g. the renewal date of a renewal sequence
    offer_code: str | None = None
    offer_cost: float = 0.0
    context: dict[str, Any] = field(default_factory=dict)  # template variables (no secrets)

    @property
    def key(self) -> str:
        return outbox_key(self.campaign_id, self.step, self.customer_id, self.cycle)


DDL = """
create schema if not exists {ops};

create table if not exists {ops}.outbox (
    outbox_key      text primary key,
    campaign_id     text not null,
    step            text not null,
    cycle           text not null default '',
    customer_id     text not null,
    email           text not null,
    template        text not null,
    category        text not null check (category in ('marketing', 'transactional')),
    batch_key       text not null,
    priority        double precision not null default 0,
    offer_code      text,
    offer_cost      numeric(12,2) not null default 0,
    context         jsonb not null default '{{}}'::jsonb,
    send_at         timestamptz not null,
    planned_on      date not null,
    state           text not null default 'pending'
                    check (state in ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    sendgrid_batch_id text,
    request_id      text,
    attempts        integer not null default 0,
    last_error      text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    sent_at         timestamptz
);
create index if not exists outbox_state_idx on {ops}.outbox (state, batch_key);
create index if not exists outbox_customer_idx on {ops}.outbox (customer_id, send_at);

create table if not exists {ops}.decision_log (
    decided_on      date not null,
    campaign_id     text not null,
    step            text not null,
    customer_id     text not null,
    outcome         text not null,
    detail          text,
    priority        double precision,
    outbox_key      text,
    holdout_group   text,
    decided_at      timestamptz not null default now(),
    primary key (decided_on, campaign_id, step, customer_id)
);
create index if not exists decision_log_customer_idx on {ops}.decision_log (customer_id, decided_on);

create table if not exists {ops}.suppressions (
    email           text primary key,
    reason          text not null check (reason in ('unsubscribed', 'bounced', 'spamreport', 'manual')),
    source          text not null,
    created_at      timestamptz not null default now()
);
"""


def ensure_outreach_tables(conn: psycopg.Connection) -> None:
    """Create the ops tables of outreach if missing (idempotent)."""
    ops = get_settings().ops_schema
    conn.execute(DDL.format(ops=f'"{ops}"'))


def business_day(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value
