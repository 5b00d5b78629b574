"""The outbox: planned messages are queued in ``ops.outbox`` and sent exactly once through SendGrid
(or written to the local file outbox when no API key is configured).

States of an outbox row: ``pending`` → ``sending`` → ``sent`` | ``failed``; ``pending`` →
``cancelled`` (suppressed since planning, or an invalid address).

Exactly once (SendGrid has no idempotency key):

1. Each Mail Send request gets a fresh ``batch_id`` (``POST /v3/mail/batch``) that is also a custom
   arg (``retention_batch``) of every personalization.
2. Before the HTTP call, in one committed transaction: a row in ``ops.send_journal`` (batch id,
   outbox keys, request hash, earliest ``send_at``) and the outbox rows → ``sending`` with that
   batch id. After the ``202``: rows → ``sent``, journal → ``sent``, committed.
3. A 429 / 5xx answer means "not accepted": the same request is retried (429: wait until
   ``X-RateLimit-Reset``, capped; 5xx: exponential backoff with jitter). Other 4xx: the request's
   rows → ``failed`` with SendGrid's ``errors[].message``.
4. An *unknown* outcome (timeout, dropped connection, or a crash between the 202 and the commit)
   leaves the rows in ``sending``. Every run first *reconciles* them, request by request: Email
   Activity shows the batch → ``sent`` (no resend); the request is scheduled more than 10 minutes
   ahead → cancel its batch (Scheduled Sends API), then resend under a new batch id; Email Activity
   does not show it and the request is older than the grace period → resend; otherwise it stays
   ``sending`` (``BatchResult.unresolved``) until a later run can decide. Hence neither a duplicate
   nor a lost message.
5. File outbox (no API key): the body is written atomically (temp file + rename) to
   ``<state_dir>/outbox/<planned_on>/<batch_key>-<n>.json``; reconciliation checks the file.

Before each pass, suppressions that arrived since planning are re-checked: ``unsubscribed`` cancels
marketing rows, ``bounced`` / ``spamreport`` / ``manual`` cancel every row (state ``cancelled``,
``last_error`` = ``suppressed:<reason> (...)``). A per-batch-key advisory lock keeps two senders of the
same batch apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import psycopg.sql
from psycopg.rows import dict_row

from retention.outreach import render as _render
from retention.outreach.models import EMAIL_PATTERN, PlannedMessage, ensure_outreach_tables
from retention.outreach.render import (
    Prepared,
    RenderError,
    SkeletonCache,
    full_context,
    prepare,
)
from retention.outreach.sendgrid_client import (
    BATCH_ARG,
    CANCEL_MARGIN_S,
    MAX_SCHEDULE_AHEAD_S,
    BadResponse,
    RateLimited,
    Rejected,
    RetryPolicy,
    SendGridError,
    SendGridTransport,
    ServerError,
    UnknownOutcome,
    with_retries,
)
from retention.settings import get_settings

#: a send_at closer than this is sent immediately (no send_at in the request)
IMMEDIATE_WITHIN_S = 60
_EMAIL = re.compile(EMAIL_PATTERN)

JOURNAL_DDL = """
create table if not exists {ops}.send_journal (
    batch_id      text primary key,
    batch_key     text not null,
    planned_on    date not null,
    mode          text not null check (mode in ('api', 'file')),
    outbox_keys   text[] not null,
    n_messages    integer not null,
    request_hash  text not null,
    min_send_at   timestamptz,
    status        text not null
                  check (status in ('sending', 'sent', 'failed', 'not_accepted', 'cancelled')),
    file_path     text,
    message_id    text,
    error         text,
    last_attempt_at timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
alter table {ops}.send_journal add column if not exists last_attempt_at timestamptz;
create index if not exists send_journal_batch_key_idx on {ops}.send_journal (batch_key, status);
"""


class DeliveryError(RuntimeError):
    """Delivery could not proceed (the message says why); nothing was half-written."""


class DeliveryBusy(DeliveryError):
    """Another process is sending the same batch key."""


@dataclass
class BatchResult:
    batch_key: str
    mode: str  # "api" | "file"
    sent: int = 0  # rows marked sent in this run (incl. reconciled)
    failed: int = 0  # rows marked failed (SendGrid refused the request, bad address)
    cancelled: int = 0  # rows cancelled (suppressed since planning)
    deferred: int = 0  # pending rows whose send_at is beyond SendGrid's 72 h scheduling window
    unresolved: int = 0  # rows still in 'sending' with an outcome nobody can know yet
    retry_later: int = 0  # rows put back to 'pending' after retries ran out (429/5xx)
    reconciled_sent: int = 0  # of sent: found accepted by reconciliation (no resend)
    reconciled_resent: int = 0  # rows reconciliation proved not accepted (or cancelled) and requeued
    requests: int = 0  # Mail Send requests (or files) made, including retries
    accepted_requests: int = 0
    batch_ids: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.unresolved or self.retry_later)

    def raise_for_incomplete(self) -> BatchResult:
        """For a delivery task: fail (so Airflow retries later) when something is failed or open."""
        if not self.ok:
            raise DeliveryError(f"{self.summary()}: " + "; ".join(self.errors[-5:]))
        return self

    def summary(self) -> str:
        return (
            f"batch {self.batch_key} ({self.mode}): sent {self.sent} in {self.accepted_requests} requests "
            f"({self.requests} attempts), failed {self.failed}, cancelled {self.cancelled}, "
            f"deferred {self.deferred}, unresolved {self.unresolved}, retry later {self.retry_later}, "
            f"reconciled {self.reconciled_sent} sent / {self.reconciled_resent} resent"
        )


def _ops() -> str:
    return f'"{get_settings().ops_schema}"'


def ensure_delivery_tables(conn: psycopg.Connection) -> None:
    """ops.outbox & co. (models.py) plus the request journal of delivery (idempotent)."""
    ensure_outreach_tables(conn)
    conn.execute(JOURNAL_DDL.format(ops=_ops()))


# --- enqueue ----------------------------------------------------------------------------------


def _check(msg: PlannedMessage, index: int, known_templates: set[str]) -> str:
    where = f"message {index} ({msg.campaign_id}/{msg.step}, template {msg.template!r})"
    if msg.category not in ("marketing", "transactional"):
        raise ValueError(f"{where}: category {msg.category!r} is not marketing or transactional")
    if not msg.email or not msg.email.strip():
        raise ValueError(f"{where}: empty recipient address")
    if msg.template not in known_templates:
        folder = _render.TEMPLATES_DIR
        if not all((folder / f"{msg.template}.{p}").is_file() for p in ("subject", "txt", "html")):
            raise ValueError(f"{where}: no template {msg.template!r} in {folder}")
        known_templates.add(msg.template)
    if not isinstance(msg.send_at, datetime) or msg.send_at.tzinfo is None:
        raise ValueError(f"{where}: send_at must be a timezone-aware datetime, got {msg.send_at!r}")
    if not msg.batch_key:
        raise ValueError(f"{where}: empty batch_key")
    try:
        return json.dumps(msg.context, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: context is not JSON-serialisable: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON")


def default_planned_on() -> date:
    """The business day: RETENTION_AS_OF when frozen, else today in the business time zone."""
    from zoneinfo import ZoneInfo

    s = get_settings()
    if s.as_of_date:
        return date.fromisoformat(s.as_of_date)
    return datetime.now(ZoneInfo(s.business_tz)).date()


#: the columns an enqueue writes (the rest of ops.outbox keeps its defaults)
OUTBOX_COLUMNS = ["outbox_key", "campaign_id", "step", "cycle", "customer_id", "email", "template", "category",
                  "batch_key", "priority", "offer_code", "offer_cost", "context", "send_at", "planned_on"]  # fmt: skip


def enqueue(conn: psycopg.Connection, messages: list[PlannedMessage], planned_on: date | None = None) -> int:
    """Queue planned messages as ``pending`` outbox rows; a key already in the outbox (in any state)
    is left alone, so a message is never queued twice. Returns how many rows were inserted.
    Every message is checked first: one bad message raises ValueError and nothing is written.
    ``planned_on`` defaults to the business day (:func:`default_planned_on`).
    Runs in the caller's transaction (the caller commits)."""
    import pandas as pd

    planned_on = planned_on or default_planned_on()
    rows = []
    known: set[str] = set()
    for i, m in enumerate(messages):
        ctx = _check(m, i, known)
        rows.append(
            (
                m.key, m.campaign_id, m.step, m.cycle, m.customer_id, m.email.strip(), m.template,
                m.category, m.batch_key, float(m.priority), m.offer_code, float(m.offer_cost), ctx,
                m.send_at.astimezone(UTC).isoformat(), planned_on.isoformat(),
            )
        )  # fmt: skip
    ensure_delivery_tables(conn)
    if not rows:
        return 0
    return _insert_outbox(conn, pd.DataFrame(rows, columns=OUTBOX_COLUMNS, dtype=object))


def enqueue_frame(conn: psycopg.Connection, frame: Any, planned_on: date) -> int:
    """:func:`enqueue` for a planner's DataFrame (one row per message, columns
    :data:`OUTBOX_COLUMNS` but ``planned_on``; ``context`` is the JSON text of the template
    variables, ``send_at`` timezone-aware datetimes). The same checks, vectorised: the first bad
    row raises ValueError naming it and nothing is written. Runs in the caller's transaction."""
    import pandas as pd

    if not len(frame):
        ensure_delivery_tables(conn)
        return 0
    missing = [c for c in OUTBOX_COLUMNS if c not in frame.columns and c != "planned_on"]
    if missing:
        raise ValueError(f"enqueue_frame: columns missing: {', '.join(missing)}")
    df = frame.reset_index(drop=True)
    email = df["email"].astype(object).where(df["email"].notna(), "").astype(str).str.strip()

    def bad(mask: Any, why: Any) -> None:
        hits = mask.to_numpy().nonzero()[0] if hasattr(mask, "to_numpy") else mask.nonzero()[0]
        if len(hits):
            i = int(hits[0])
            r = df.iloc[i]
            where = f"message {i} ({r['campaign_id']}/{r['step']}, template {r['template']!r})"
            raise ValueError(f"{where}: {why(r) if callable(why) else why}")

    bad(~df["category"].isin(["marketing", "transactional"]),
        lambda r: f"category {r['category']!r} is not marketing or transactional")  # fmt: skip
    bad(email == "", "empty recipient address")
    folder = _render.TEMPLATES_DIR
    for name in pd.unique(df["template"]):  # the files are checked once per template name
        if not all((folder / f"{name}.{p}").is_file() for p in ("subject", "txt", "html")):
            bad(df["template"] == name, f"no template {name!r} in {folder}")
    send_at = df["send_at"]
    if not isinstance(send_at.dtype, pd.DatetimeTZDtype):
        aware = send_at.map(lambda v: isinstance(v, datetime) and v.tzinfo is not None)
        bad(~aware.astype(bool), lambda r: f"send_at must be a timezone-aware datetime, got {r['send_at']!r}")
        send_at = pd.to_datetime(send_at, utc=True)
    bad(df["batch_key"].isna() | (df["batch_key"].astype(str) == ""), "empty batch_key")
    bad(~df["context"].map(lambda v: isinstance(v, str)).astype(bool), "context is not JSON text")
    ensure_delivery_tables(conn)
    if not len(df):
        return 0
    out = df[[c for c in OUTBOX_COLUMNS if c != "planned_on"]].copy()
    out["email"] = email
    # few distinct send times (one per time zone): format each once
    utc = send_at.dt.tz_convert("UTC")
    stamps = {t: t.isoformat() for t in pd.unique(utc)}
    out["send_at"] = utc.map(stamps).astype(object)
    out["planned_on"] = planned_on.isoformat()
    return _insert_outbox(conn, out)


def _insert_outbox(conn: psycopg.Connection, rows: Any) -> int:
    """COPY the rows into a temporary table, then insert the keys the outbox does not have yet, in
    key order (the primary key's B-tree is filled page by page, not at random)."""
    from retention.outreach.audiences import write_frame

    ops = _ops()
    cols = ", ".join(OUTBOX_COLUMNS)
    conn.execute(
        f"create temp table if not exists _enqueue (like {ops}.outbox including defaults) on commit drop"
    )
    conn.execute("truncate _enqueue")
    write_frame(conn, psycopg.sql.Identifier("_enqueue"), OUTBOX_COLUMNS, rows)
    cur = conn.execute(
        f"insert into {ops}.outbox ({cols}) select {cols} from _enqueue order by outbox_key "
        "on conflict (outbox_key) do nothing"
    )
    inserted = cur.rowcount
    conn.execute("drop table if exists _enqueue")
    return inserted


def pending_batch_keys(conn: psycopg.Connection, planned_on: date | None = None) -> list[str]:
    """Batch keys with rows to send (or to reconcile): one mapped delivery task each."""
    ensure_delivery_tables(conn)
    sql = f"select distinct batch_key from {_ops()}.outbox where state in ('pending', 'sending')"
    params: list[Any] = []
    if planned_on is not None:
        sql += " and planned_on = %s"
        params.append(planned_on)
    return [r[0] for r in conn.execute(sql + " order by 1", params).fetchall()]


# --- state transitions (each commits) -------------------------------------------------------------


def _mark_sending(
    conn: psycopg.Connection,
    *,
    batch_id: str,
    batch_key: str,
    planned_on: date,
    mode: str,
    keys: list[str],
    request_hash: str,
    min_send_at: datetime | None,
    file_path: str | None = None,
) -> None:
    ops = _ops()
    conn.execute(
        f"""insert into {ops}.send_journal
            (batch_id, batch_key, planned_on, mode, outbox_keys, n_messages, request_hash, min_send_at,
             status, file_path, last_attempt_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, 'sending', %s, now())""",
        (batch_id, batch_key, planned_on, mode, keys, len(keys), request_hash, min_send_at, file_path),
    )
    cur = conn.execute(
        f"""update {ops}.outbox set state = 'sending', sendgrid_batch_id = %s, attempts = attempts + 1,
                   updated_at = now()
            where outbox_key = any(%s) and state = 'pending'""",
        (batch_id, keys),
    )
    if cur.rowcount != len(keys):
        conn.rollback()
        raise DeliveryError(
            f"batch {batch_key}: {len(keys) - cur.rowcount} of {len(keys)} rows were no longer pending "
            f"when request {batch_id} was prepared (another sender?); nothing sent"
        )
    conn.commit()


def _mark_sent(conn: psycopg.Connection, batch_id: str, keys: list[str], message_id: str | None) -> int:
    """The request with this batch id was accepted: its rows → sent (committed)."""
    ops = _ops()
    cur = conn.execute(
        f"""update {ops}.outbox set state = 'sent', sent_at = now(), updated_at = now(),
                   request_id = coalesce(%s, request_id), last_error = null
            where outbox_key = any(%s) and sendgrid_batch_id = %s and state = 'sending'""",
        (message_id, keys, batch_id),
    )
    conn.execute(
        f"""update {ops}.send_journal set status = 'sent', message_id = coalesce(%s, message_id),
                   updated_at = now() where batch_id = %s""",
        (message_id, batch_id),
    )
    conn.commit()
    return cur.rowcount


def _mark_back_to_pending(
    conn: psycopg.Connection, batch_id: str, keys: list[str], journal_status: str, error: str
) -> int:
    ops = _ops()
    cur = conn.execute(
        f"""update {ops}.outbox set state = 'pending', sendgrid_batch_id = null, last_error = %s,
                   updated_at = now()
            where outbox_key = any(%s) and sendgrid_batch_id = %s and state = 'sending'""",
        (error, keys, batch_id),
    )
    conn.execute(
        f"update {ops}.send_journal set status = %s, error = %s, updated_at = now() where batch_id = %s",
        (journal_status, error, batch_id),
    )
    conn.commit()
    return cur.rowcount


def _mark_failed(conn: psycopg.Connection, batch_id: str, keys: list[str], error: str) -> int:
    ops = _ops()
    cur = conn.execute(
        f"""update {ops}.outbox set state = 'failed', last_error = %s, updated_at = now()
            where outbox_key = any(%s) and sendgrid_batch_id = %s and state = 'sending'""",
        (error, keys, batch_id),
    )
    conn.execute(
        f"update {ops}.send_journal set status = 'failed', error = %s, updated_at = now() where batch_id = %s",
        (error, batch_id),
    )
    conn.commit()
    return cur.rowcount


def _touch_attempt(conn: psycopg.Connection, batch_id: str) -> None:
    conn.execute(
        f"update {_ops()}.send_journal set last_attempt_at = now(), updated_at = now() where batch_id = %s",
        (batch_id,),
    )
    conn.commit()


def _note_unknown(conn: psycopg.Connection, batch_id: str, keys: list[str], error: str) -> None:
    ops = _ops()
    conn.execute(
        f"""update {ops}.outbox set last_error = %s, updated_at = now()
            where outbox_key = any(%s) and sendgrid_batch_id = %s""",
        (error, keys, batch_id),
    )
    conn.execute(
        f"update {ops}.send_journal set error = %s, updated_at = now() where batch_id = %s",
        (error, batch_id),
    )
    conn.commit()


# --- requests ----------------------------------------------------------------------------------


@dataclass
class _Msg:
    key: str
    email: str
    category: str
    template: str
    send_at: datetime
    planned_on: date
    prepared: Prepared
    quoted_key: str  # the outbox key, URL-quoted (unsubscribe links)


@dataclass
class _Request:
    planned_on: date
    template: str
    category: str
    group: tuple[str, str, str]
    messages: list[_Msg]

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.messages]

    @property
    def min_send_at(self) -> datetime:
        return min(m.send_at for m in self.messages)


def _unsubscribe_headers(quoted_key: str, mailto: str, base: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe (the https URI receives the POST); RFC 2369 mailto fallback."""
    return {
        "List-Unsubscribe": f"<mailto:{mailto}?subject=unsubscribe%20{quoted_key}>, <{base}/{quoted_key}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def build_body(req: _Request, batch_id: str, now: datetime) -> dict[str, Any]:
    """The Mail Send request body (validates against PostMailSend of the OpenAPI spec)."""
    s = get_settings()
    subject, text, html = req.group
    base = s.unsubscribe_url.rstrip("/")
    personalizations = []
    for m in req.messages:
        p: dict[str, Any] = {
            "to": [{"email": m.email}],
            "custom_args": {"outbox_key": m.key, BATCH_ARG: batch_id},
        }
        if m.prepared.substitutions:
            p["substitutions"] = m.prepared.substitutions
        if m.category == "marketing":
            p["headers"] = _unsubscribe_headers(m.quoted_key, s.unsubscribe_mailto, base)
        if (m.send_at - now).total_seconds() > IMMEDIATE_WITHIN_S:
            p["send_at"] = int(m.send_at.timestamp())
        personalizations.append(p)
    body: dict[str, Any] = {
        "personalizations": personalizations,
        "from": {"email": s.sender_email, "name": s.sender_name},
        "subject": subject,
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "categories": ["retention", req.template[:255]],
        "batch_id": batch_id,
        "tracking_settings": {"subscription_tracking": {"enable": False}},
    }
    if req.category == "marketing" and s.sendgrid_asm_group_id:
        if s.sendgrid_asm_group_id < 0:
            raise DeliveryError(
                f"setting RETENTION_SENDGRID_ASM_GROUP={s.sendgrid_asm_group_id} must be a SendGrid "
                "unsubscribe group id (> 0) or 0 for none"
            )
        body["asm"] = {"group_id": s.sendgrid_asm_group_id}
    elif req.category == "transactional":
        # dunning reaches customers on the global unsubscribe list (bounces and spam reports still
        # stop it at SendGrid, as they do here)
        body["mail_settings"] = {"bypass_unsubscribe_management": {"enable": True}}
    return body


def _request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _safe_name(batch_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", batch_key).strip("._") or "batch"


def _next_file(directory: Path, batch_key: str) -> Path:
    stem = _safe_name(batch_key)
    pattern = re.compile(rf"^{re.escape(stem)}-(\d+)\.json$")
    used = [int(m.group(1)) for p in directory.glob(f"{stem}-*.json") if (m := pattern.match(p.name))]
    return directory / f"{stem}-{max(used, default=0) + 1}.json"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- the sender ---------------------------------------------------------------------------------


class _Sender:
    def __init__(
        self,
        conn: psycopg.Connection,
        batch_key: str,
        planned_on: date | None,
        transport: SendGridTransport | None,
        policy: RetryPolicy,
        grace_s: float,
    ) -> None:
        self.conn = conn
        self.batch_key = batch_key
        self.planned_on = planned_on
        self.transport = transport
        self.policy = policy
        self.grace_s = grace_s
        s = get_settings()
        self.settings = s
        self.result = BatchResult(batch_key, "api" if transport else "file")
        self.outbox_dir = Path(s.state_dir) / "outbox"
        self.skeletons = SkeletonCache(_render.TEMPLATES_DIR)

    # scope of this sender's rows
    def _where(self, state: str, alias: str = "") -> tuple[str, list[Any]]:
        a = f"{alias}." if alias else ""
        sql = f"{a}state = %s and {a}batch_key = %s"
        params: list[Any] = [state, self.batch_key]
        if self.planned_on is not None:
            sql += f" and {a}planned_on = %s"
            params.append(self.planned_on)
        return sql, params

    # 1. reconcile rows left in 'sending'
    def reconcile(self) -> None:
        ops = _ops()
        where, params = self._where("sending")
        batch_ids = [
            r[0]
            for r in self.conn.execute(
                f"select distinct sendgrid_batch_id from {ops}.outbox where {where}", params
            ).fetchall()
        ]
        self.conn.commit()
        for batch_id in batch_ids:
            self._reconcile_one(batch_id)

    def _reconciled_sent(self, n: int) -> None:
        self.result.reconciled_sent += n
        self.result.sent += n

    def _reconcile_one(self, batch_id: str) -> None:
        ops = _ops()
        journal = (
            self.conn.cursor(row_factory=dict_row)
            .execute(
                f"""select *,
                           coalesce(last_attempt_at, created_at) <= now() - make_interval(secs => %s)
                               as past_grace,
                           now() as db_now
                    from {ops}.send_journal where batch_id = %s""",
                (self.grace_s, batch_id),
            )
            .fetchone()
        )
        self.conn.commit()
        if journal is None:  # cannot happen (same transaction), but never guess: keep it visible
            self.result.unresolved += self.conn.execute(
                f"select count(*) from {ops}.outbox where sendgrid_batch_id = %s and state = 'sending'",
                (batch_id,),
            ).fetchone()[0]
            self.result.errors.append(f"request {batch_id}: rows in 'sending' without a journal entry")
            return
        keys: list[str] = list(journal["outbox_keys"])
        n_rows = self.conn.execute(
            f"""select count(*) from {ops}.outbox
                where outbox_key = any(%s) and sendgrid_batch_id = %s and state = 'sending'""",
            (keys, batch_id),
        ).fetchone()[0]
        self.conn.commit()
        if journal["mode"] == "file":
            path = Path(journal["file_path"])
            written = False
            if path.is_file():
                try:
                    written = json.loads(path.read_bytes()).get("batch_id") == batch_id
                except (ValueError, OSError):
                    written = False
            if written:
                self._reconciled_sent(_mark_sent(self.conn, batch_id, keys, None))
            else:
                self.result.reconciled_resent += _mark_back_to_pending(
                    self.conn, batch_id, keys, "not_accepted", f"file {path} was not written; resending"
                )
            return
        if self.transport is None:
            self.result.unresolved += n_rows
            self.result.errors.append(
                f"request {batch_id} went to SendGrid with an outcome unknown, and no API key is configured "
                "now to ask SendGrid about it; left in 'sending'"
            )
            return
        try:
            accepted = with_retries(lambda: self.transport.batch_accepted(batch_id), self.policy)
        except SendGridError as exc:
            self.result.unresolved += n_rows
            self.result.errors.append(f"request {batch_id}: cannot ask Email Activity: {exc}")
            return
        if accepted:
            self._reconciled_sent(_mark_sent(self.conn, batch_id, keys, None))
            return
        min_send_at = journal["min_send_at"]
        if (
            min_send_at is not None
            and (min_send_at - journal["db_now"]).total_seconds() > CANCEL_MARGIN_S + 60
        ):
            try:
                with_retries(lambda: self.transport.cancel_batch(batch_id), self.policy)
            except SendGridError as exc:
                self.result.errors.append(f"request {batch_id}: cancelling the scheduled send failed: {exc}")
            else:
                self.result.reconciled_resent += _mark_back_to_pending(
                    self.conn,
                    batch_id,
                    keys,
                    "cancelled",
                    f"request {batch_id} cancelled at SendGrid; resending",
                )
                return
        if journal["past_grace"]:
            self.result.reconciled_resent += _mark_back_to_pending(
                self.conn,
                batch_id,
                keys,
                "not_accepted",
                f"request {batch_id} not in Email Activity after {self.grace_s:g} s; resending",
            )
            return
        self.result.unresolved += n_rows
        self.result.errors.append(
            f"request {batch_id}: outcome unknown and not (yet) in Email Activity; decided by a later run "
            f"after the {self.grace_s:g} s grace period"
        )

    # 2. suppressions that arrived since planning
    def cancel_suppressed(self) -> None:
        """An unsubscribe stops marketing mail; a bounce, spam report or manual suppression stops
        every message (transactional mail such as dunning still reaches the unsubscribed)."""
        ops = _ops()
        where_o, params = self._where("pending", "o")
        cur = self.conn.execute(
            f"""update {ops}.outbox o
                set state = 'cancelled', updated_at = now(),
                    last_error = 'suppressed:' || s.reason || ' (' || s.source || ', since planning)'
                from {ops}.suppressions s
                where {where_o} and lower(o.email) = lower(s.email)
                  and (s.reason <> 'unsubscribed' or o.category = 'marketing')""",
            params,
        )
        self.result.cancelled += cur.rowcount
        self.conn.commit()

    # 3. pending rows → rendered requests
    def load_pending(self, now: datetime) -> list[dict[str, Any]]:
        ops = _ops()
        where, params = self._where("pending")
        horizon = now + timedelta(seconds=MAX_SCHEDULE_AHEAD_S - 300)
        rows = (
            self.conn.cursor(row_factory=dict_row)
            .execute(
                f"""select outbox_key, email, template, category, send_at, planned_on, context, offer_code
                    from {ops}.outbox where {where} and send_at <= %s
                    order by send_at, outbox_key""",
                [*params, horizon],
            )
            .fetchall()
        )
        self.result.deferred = self.conn.execute(
            f"select count(*) from {ops}.outbox where {where} and send_at > %s", [*params, horizon]
        ).fetchone()[0]
        self.conn.commit()
        return rows

    def prepare(self, rows: list[dict[str, Any]]) -> list[_Msg]:
        s = self.settings
        out: list[_Msg] = []
        bad: list[str] = []
        for r in rows:
            if not _EMAIL.match(r["email"]):
                bad.append(r["outbox_key"])
                continue
            quoted = quote(r["outbox_key"], safe="")
            ctx = full_context(
                r["context"] or {},
                outbox_key=r["outbox_key"],
                category=r["category"],
                offer_code=r["offer_code"],
                sender_name=s.sender_name,
                unsubscribe_base=s.unsubscribe_url,
                account_url=s.account_url,
                unsubscribe_url=f"{s.unsubscribe_url.rstrip('/')}/{quoted}",
            )
            try:
                prepared = prepare(r["template"], ctx, self.skeletons, key=r["outbox_key"])
            except RenderError as exc:
                msg = f"batch {self.batch_key} not sent: {exc}"
                ops = _ops()
                where, params = self._where("pending")
                self.conn.execute(
                    f"update {ops}.outbox set last_error = %s, updated_at = now() where {where} and template = %s",
                    [msg, *params, r["template"]],
                )
                self.conn.commit()
                raise RenderError(msg) from None
            out.append(_Msg(r["outbox_key"], r["email"], r["category"], r["template"], r["send_at"],
                            r["planned_on"], prepared, quoted))  # fmt: skip
        if bad:
            cur = self.conn.execute(
                f"""update {_ops()}.outbox set state = 'failed', updated_at = now(),
                           last_error = 'recipient address is not an e-mail address'
                    where outbox_key = any(%s) and state = 'pending'""",
                (bad,),
            )
            self.result.failed += cur.rowcount
            self.conn.commit()
        return out

    def group(self, msgs: list[_Msg]) -> list[_Request]:
        size = self.settings.sendgrid_batch_size
        groups: dict[tuple[Any, ...], list[_Msg]] = {}
        for m in msgs:
            groups.setdefault((m.planned_on, m.template, m.category, m.prepared.group), []).append(m)
        requests = []
        for (planned_on, template, category, content), members in groups.items():
            for i in range(0, len(members), size):
                requests.append(_Request(planned_on, template, category, content, members[i : i + size]))
        return requests

    # 4. one request
    def send_file(self, req: _Request, now: datetime) -> None:
        batch_id = f"file-{uuid.uuid4().hex}"
        body = build_body(req, batch_id, now)
        directory = self.outbox_dir / req.planned_on.isoformat()
        directory.mkdir(parents=True, exist_ok=True)
        path = _next_file(directory, self.batch_key)
        data = json.dumps(body, indent=1, sort_keys=True).encode()
        _mark_sending(
            self.conn, batch_id=batch_id, batch_key=self.batch_key, planned_on=req.planned_on, mode="file",
            keys=req.keys, request_hash=_request_hash(body), min_send_at=req.min_send_at, file_path=str(path),
        )  # fmt: skip
        self.result.requests += 1
        _atomic_write(path, data)
        self.result.sent += _mark_sent(self.conn, batch_id, req.keys, None)
        self.result.accepted_requests += 1
        self.result.files.append(path)
        self.result.batch_ids.append(batch_id)

    def send_api(self, req: _Request, now: datetime) -> str:
        """Returns 'sent' | 'failed' | 'unknown' | 'exhausted'."""
        assert self.transport is not None
        transport = self.transport
        try:
            batch_id = with_retries(transport.create_batch_id, self.policy)
        except SendGridError as exc:
            raise DeliveryError(f"batch {self.batch_key}: cannot get a SendGrid batch id: {exc}") from None
        body = build_body(req, batch_id, now)
        _mark_sending(
            self.conn, batch_id=batch_id, batch_key=self.batch_key, planned_on=req.planned_on, mode="api",
            keys=req.keys, request_hash=_request_hash(body), min_send_at=req.min_send_at,
        )  # fmt: skip
        self.result.batch_ids.append(batch_id)
        before = transport.calls["mail_send"]

        attempts = 0

        def attempt() -> str | None:
            nonlocal attempts
            if attempts:  # the grace period counts from the last attempt (the first: _mark_sending)
                _touch_attempt(self.conn, batch_id)
            attempts += 1
            return transport.send(body)

        try:
            message_id = with_retries(attempt, self.policy, retry_unknown=False)
        except (UnknownOutcome, BadResponse) as exc:
            self.result.requests += transport.calls["mail_send"] - before
            _note_unknown(self.conn, batch_id, req.keys, f"outcome unknown: {exc}")
            self.result.errors.append(f"request {batch_id}: {exc}")
            return "unknown"
        except Rejected as exc:
            self.result.requests += transport.calls["mail_send"] - before
            self.result.failed += _mark_failed(self.conn, batch_id, req.keys, str(exc))
            self.result.errors.append(f"request {batch_id} ({len(req.messages)} messages) refused: {exc}")
            return "failed"
        except (RateLimited, ServerError) as exc:
            self.result.requests += transport.calls["mail_send"] - before
            n = _mark_back_to_pending(
                self.conn,
                batch_id,
                req.keys,
                "not_accepted",
                f"not accepted after {self.policy.max_retries} retries: {exc}",
            )
            self.result.retry_later += n
            self.result.errors.append(f"request {batch_id}: gave up after retries: {exc}")
            return "exhausted"
        self.result.requests += transport.calls["mail_send"] - before
        self.result.sent += _mark_sent(self.conn, batch_id, req.keys, message_id)
        self.result.accepted_requests += 1
        return "sent"

    def run(self) -> BatchResult:
        passes = 0
        while True:
            self.reconcile()
            self.cancel_suppressed()
            now = datetime.now(UTC)
            rows = self.load_pending(now)
            if not rows:
                break
            requests = self.group(self.prepare(rows))
            unknown = False
            for req in requests:
                if self.transport is None:
                    self.send_file(req, now)
                    continue
                outcome = self.send_api(req, now)
                if outcome == "unknown":
                    unknown = True
                elif outcome == "exhausted":
                    break  # SendGrid is unwell: the rest stays pending for the next attempt
            if not unknown or passes >= self.policy.max_retries:
                break
            self.policy.sleep(self.policy.backoff(passes))
            passes += 1
        # what is still open after the last pass
        ops = _ops()
        where, params = self._where("sending")
        still = self.conn.execute(f"select count(*) from {ops}.outbox where {where}", params).fetchone()[0]
        self.conn.commit()
        self.result.unresolved = still
        return self.result


def _lock_id(batch_key: str) -> str:
    return f"retention.outbox:{batch_key}"


def send_batch(
    url: str | None,
    batch_key: str,
    *,
    planned_on: date | None = None,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    reconcile_grace_s: float | None = None,
) -> BatchResult:
    """Send the pending outbox rows of one batch key exactly once (see the module docstring).

    ``client``: a ``SendGridAPIClient`` (default: one built from the settings when an API key is
    configured, else the file outbox). ``sleep``/``clock`` are injectable for tests.
    Raises :class:`RenderError` (a template failed: nothing of the batch sent),
    :class:`DeliveryBusy`, :class:`DeliveryError`."""
    from sendgrid import SendGridAPIClient

    from retention.db import default_url

    s = get_settings()
    url = url or default_url()
    if client is None and s.sendgrid_api_key:
        client = SendGridAPIClient(s.sendgrid_api_key, host=s.sendgrid_host)
    transport = SendGridTransport(client, s.sendgrid_timeout_s) if client is not None else None
    policy = RetryPolicy(
        max_retries=s.sendgrid_max_retries,
        max_rate_wait_s=s.sendgrid_max_rate_wait_s,
        sleep=sleep,
        clock=clock,
    )
    grace = s.sendgrid_reconcile_grace_s if reconcile_grace_s is None else reconcile_grace_s
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as lock_conn:
        got = lock_conn.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0))", (_lock_id(batch_key),)
        ).fetchone()[0]
        if not got:
            raise DeliveryBusy(f"batch {batch_key} is being sent by another process")
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                ensure_delivery_tables(conn)
                conn.commit()
                return _Sender(conn, batch_key, planned_on, transport, policy, grace).run()
        finally:
            lock_conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_id(batch_key),))


def send_all(url: str | None, *, planned_on: date | None = None, client: Any = None) -> list[BatchResult]:
    from retention.db import connect

    with connect(url) as conn:
        keys = pending_batch_keys(conn, planned_on)
    return [send_batch(url, k, planned_on=planned_on, client=client) for k in keys]


def send_main(argv: list[str]) -> int:
    """``retention outreach send [BATCH_KEY ...] [--planned-on DATE]``: send pending outbox rows
    (every batch key with pending rows when none is named). Exit 1 if anything failed or is open."""
    parser = argparse.ArgumentParser(prog="retention outreach send", description=send_main.__doc__)
    parser.add_argument("batch_keys", nargs="*", help="batch keys (default: all with pending rows)")
    parser.add_argument(
        "--planned-on", type=date.fromisoformat, default=None, help="only rows planned on DATE"
    )
    args = parser.parse_args(argv)
    try:
        if args.batch_keys:
            results = [send_batch(None, k, planned_on=args.planned_on) for k in args.batch_keys]
        else:
            results = send_all(None, planned_on=args.planned_on)
    except (DeliveryError, RenderError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(r.summary())
        for e in r.errors:
            print(f"  {e}", file=sys.stderr)
    if not results:
        print("nothing to send")
    return 0 if all(r.ok for r in results) else 1
