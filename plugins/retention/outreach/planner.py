"""Plan a day of outreach: audiences -> central guardrails -> decision log + outbox.

DAG tasks stay thin::

    result = plan_day(day=ds)              # decisions + enqueued messages, one transaction
    keys = batches_for_day(day=ds)         # batch keys to fan out (dynamic task mapping)

The whole plan is written in one transaction and is idempotent per day: rerunning the plan for the
same ``decided_on`` replaces that day's decisions and its not-yet-sent (``pending``) outbox rows;
messages already ``sending``/``sent`` keep their decision row.
"""

from __future__ import annotations

import json
import logging
import time as _time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from retention.db import connect
from retention.outreach.audiences import (
    AudienceUnavailable,
    build_audience,
    load_contacts,
    qualified,
    read_frame,
    write_frame,
)
from retention.outreach.campaigns import CampaignConfig, load_campaigns
from retention.outreach.guardrails import SEND_OUTCOMES, apply_guardrails, load_state, object_strings
from retention.outreach.models import PlannedMessage, ensure_outreach_tables
from retention.settings import Settings, get_settings

log = logging.getLogger(__name__)

_LOCK_ID = 0x7265_7465_6E74  # advisory lock: one plan at a time


class PlanError(RuntimeError):
    """The plan cannot be made (a builder's query failed); nothing was written."""


@dataclass
class PlanResult:
    day: date
    run_at: datetime
    outcome_counts: dict[str, int]
    campaign_counts: dict[str, dict[str, int]]
    notes: dict[str, str] = field(default_factory=dict)  # campaign -> why it yielded nobody / skipped
    decisions: int = 0
    enqueued_with: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    #: the planned messages, one row each (outbox columns); ``messages`` builds objects from it
    outbox: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    _to_messages: Callable[[], list[PlannedMessage]] | None = field(default=None, repr=False)
    _messages: list[PlannedMessage] | None = field(default=None, repr=False)

    @property
    def messages(self) -> list[PlannedMessage]:
        """The planned messages as objects (built on first use: a million-customer plan does not
        need them, the outbox rows are written from :attr:`outbox`)."""
        if self._messages is None:
            self._messages = self._to_messages() if self._to_messages is not None else []
        return self._messages

    @property
    def n_messages(self) -> int:
        return len(self.outbox) if self._messages is None else len(self._messages)

    @property
    def batches(self) -> dict[str, list[PlannedMessage]]:
        out: dict[str, list[PlannedMessage]] = {}
        for m in self.messages:
            out.setdefault(m.batch_key, []).append(m)
        return out

    @property
    def batch_keys(self) -> list[str]:
        """Batch keys of this plan's messages, sorted (one mapped delivery task each)."""
        if self._messages is None and "batch_key" in self.outbox.columns:
            return sorted(pd.unique(self.outbox["batch_key"]).tolist())
        return sorted({m.batch_key for m in self.messages})

    def as_xcom(self) -> dict[str, Any]:
        """A small JSON-friendly summary for Airflow's XCom (no personal data)."""
        return {
            "day": self.day.isoformat(),
            "decisions": self.decisions,
            "messages": self.n_messages,
            "batches": self.batch_keys,
            "outcome_counts": self.outcome_counts,
            "notes": self.notes,
            "dry_run": self.dry_run,
        }

    def summary(self) -> str:
        lines = [f"plan for {self.day} (run at {self.run_at.isoformat()}): {self.decisions} decisions, "
                 f"{self.n_messages} messages in {len(self.batch_keys)} batches"]  # fmt: skip
        for cid, counts in sorted(self.campaign_counts.items()):
            parts = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            lines.append(f"  {cid}: {parts}")
        for cid, note in sorted(self.notes.items()):
            lines.append(f"  {cid}: {note}")
        return "\n".join(lines)


def resolve_day(day: date | str | None, settings: Settings | None = None) -> date:
    s = settings or get_settings()
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    if isinstance(day, str) and day:
        return date.fromisoformat(day[:10])
    if s.as_of_date:
        return date.fromisoformat(s.as_of_date)
    return datetime.now(ZoneInfo(s.business_tz)).date()


def resolve_run_at(day: date, now: datetime | None, settings: Settings) -> datetime:
    """The moment messages are planned for: ``now`` when planning today, else 09:00 business time
    of ``day`` (backfills and frozen demo dates stay deterministic)."""
    if now is not None:
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    tz = ZoneInfo(settings.business_tz)
    current = datetime.now(tz)
    if current.date() == day:
        return current.astimezone(UTC)
    return datetime.combine(day, time(9), tzinfo=tz).astimezone(UTC)


def _candidates(
    conn: psycopg.Connection, config: CampaignConfig, day: date, notes: dict[str, str]
) -> pd.DataFrame:
    frames = []
    for c in config.campaigns:
        if not c.runs_on(day):
            notes[c.id] = f"not scheduled on {day:%a}"
            continue
        try:
            with conn.transaction():  # a savepoint: a failing builder leaves the plan usable
                aud = build_audience(conn, c, day)
        except AudienceUnavailable as exc:
            notes[c.id] = f"yields nobody: {exc}"
            log.warning("campaign %s yields nobody: %s", c.id, exc)
            continue
        except psycopg.Error as exc:
            raise PlanError(
                f"campaign {c.id!r}: audience builder {c.builder!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not len(aud):
            notes[c.id] = "audience is empty today"
            continue
        aud = aud.copy()
        aud["campaign_id"] = c.id
        aud["category"] = c.category
        aud["campaign_priority"] = c.priority
        aud["holdout_share"] = c.holdout_share
        aud["global_holdout"] = c.global_holdout
        # one decision per (campaign, step, customer): keep the best-scored row
        aud = aud.sort_values("score", ascending=False, na_position="last").drop_duplicates(
            ["step", "customer_id"]
        )
        frames.append(aud)
    if not frames:
        return pd.DataFrame()
    cands = pd.concat(frames, ignore_index=True)
    for col in cands.columns:  # plain object strings: pandas' arrow strings are slow element-wise
        if isinstance(cands[col].dtype, pd.StringDtype):
            cands[col] = cands[col].astype(object)
    return cands


def _batch_keys(df: pd.DataFrame, size: int) -> pd.Series:
    """campaign x segment (the step), cut into chunks of at most ``size`` messages."""
    seg = df["campaign_id"] + "." + df["step"]
    order = df.assign(_seg=seg).sort_values(["_seg", "score", "customer_id"], ascending=[True, False, True])
    rank = order.groupby("_seg", sort=False).cumcount() // size
    keys = order["_seg"] + "." + rank.astype(str).str.zfill(4)
    return keys.reindex(df.index)


def _messages(df: pd.DataFrame, config: CampaignConfig) -> list[PlannedMessage]:
    """PlannedMessage objects of the planned rows (``df`` as made by :func:`_outbox_frame`)."""
    if not len(df):
        return []
    ctx_cols = [c for c in df.columns if c.startswith("ctx_")]
    steps = {(c.id, s.id): s for c in config.campaigns for s in c.steps}
    ctx_values = [_plain_list(df[c]) for c in ctx_cols]
    ctx_names = [c[4:] for c in ctx_cols]
    out: list[PlannedMessage] = []
    cols = zip(
        df["campaign_id"].tolist(), df["step"].tolist(), df["customer_id"].tolist(), df["email"].tolist(),
        df["category"].tolist(), df["send_at"].tolist(), df["batch_key"].tolist(), df["score"].tolist(),
        df["cycle"].tolist(), zip(*ctx_values, strict=True) if ctx_cols else [()] * len(df), strict=True,
    )  # fmt: skip
    for cid, step_id, cust, email, cat, send_at, batch, score, cycle, ctx in cols:
        step = steps[(cid, step_id)]
        context: dict[str, Any] = {"campaign_id": cid, "step": step_id}
        context.update((k, v) for k, v in zip(ctx_names, ctx, strict=True) if v is not None)
        offer = step.offer
        if offer:
            context["offer_code"] = offer.code
        out.append(
            PlannedMessage(
                campaign_id=cid,
                step=step_id,
                customer_id=cust,
                email=email.strip(),
                template=step.template,
                category=cat,
                send_at=send_at,
                batch_key=batch,
                priority=float(score),
                cycle=cycle,
                offer_code=offer.code if offer else None,
                offer_cost=offer.cost if offer else 0.0,
                context=context,
            )
        )
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)  # e.g. Decimal from a numeric column


def _json_values(col: pd.Series) -> np.ndarray:
    """The JSON text of every value of a column (each distinct value encoded once)."""
    uniq = pd.unique(col)
    enc = {v: json.dumps(v.item() if isinstance(v, np.generic) else v, default=_json_default) for v in uniq}
    return col.map(enc).to_numpy(dtype=object)


def _outbox_frame(df: pd.DataFrame, config: CampaignConfig, size: int) -> pd.DataFrame:
    """The planned messages as outbox rows, vectorised (one row per message: key, template, offer,
    batch key, the JSON context of the template variables, send_at). ``ctx_*`` columns and score
    are kept for :func:`_messages`."""
    if not len(df):
        return pd.DataFrame(columns=["outbox_key", "batch_key"])
    df = df.copy()
    df["batch_key"] = _batch_keys(df, size)
    step_of = {(c.id, s.id): s for c in config.campaigns for s in c.steps}
    pair = pd.Series(list(zip(df["campaign_id"], df["step"], strict=True)), index=df.index)
    known = pair.isin(list(step_of))
    if not known.all():
        unknown = sorted({f"{a}/{b}" for a, b in pair[~known]})
        raise PlanError(f"audience produced steps that campaigns.yml does not define: {', '.join(unknown)}")
    df["template"] = pair.map({k: s.template for k, s in step_of.items()})
    df["offer_code"] = pair.map({k: (s.offer.code if s.offer else None) for k, s in step_of.items()})
    df["offer_cost"] = pair.map({k: (s.offer.cost if s.offer else 0.0) for k, s in step_of.items()})
    df["priority"] = df["score"].astype(float)
    df["email"] = df["email"].astype(str).str.strip()
    # context JSON: {"campaign_id", "step", every non-null ctx_* variable, "offer_code" with an offer}
    text = '{"campaign_id": ' + _json_values(df["campaign_id"]) + ', "step": ' + _json_values(df["step"])
    for col in (c for c in df.columns if c.startswith("ctx_")):
        present = df[col].notna().to_numpy()
        piece = np.full(len(df), "", dtype=object)
        if present.any():
            piece[present] = f", {json.dumps(col[4:])}: " + _json_values(df[col][present])
        text = text + piece
    offer = df["offer_code"].notna().to_numpy()
    piece = np.full(len(df), "", dtype=object)
    if offer.any():
        piece[offer] = ', "offer_code": ' + _json_values(df["offer_code"][offer])
    df["context"] = text + piece + "}"
    return df


def _plain_list(col: pd.Series) -> list[Any]:
    """Python values (None for missing) of a column: JSON-friendly template variables."""
    values = col.astype(object).where(col.notna(), None).tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values] if col.dtype == object else values


#: decided_at is left to its default, now(): the transaction's start, the same for the whole plan
_DECISION_COLUMNS = ["decided_on", "campaign_id", "step", "customer_id", "outcome", "detail", "priority",
                     "outbox_key", "holdout_group"]  # fmt: skip


def _reset_day(conn: psycopg.Connection, day: date, ops: str) -> int:
    """Undo a previous plan of ``day``: its pending outbox rows and the decisions whose message is
    not on its way. Returns how many pending outbox rows were removed."""
    dl, ob = qualified(ops, "decision_log"), qualified(ops, "outbox")
    cur = conn.execute(
        sql.SQL(
            "delete from {ob} o using {dl} d where d.decided_on = %(day)s and d.outbox_key = o.outbox_key "
            "and d.outcome = any(%(send)s) and o.state = 'pending'"
        ).format(ob=ob, dl=dl),
        {"day": day, "send": list(SEND_OUTCOMES)},
    )
    removed = cur.rowcount
    conn.execute(
        sql.SQL(
            "delete from {dl} d where d.decided_on = %(day)s and not exists ("
            "select 1 from {ob} o where o.outbox_key = d.outbox_key and d.outcome = any(%(send)s) "
            "and o.state in ('sending', 'sent'))"
        ).format(ob=ob, dl=dl),
        {"day": day, "send": list(SEND_OUTCOMES)},
    )
    return removed


def write_decisions(conn: psycopg.Connection, decisions: pd.DataFrame, day: date, ops: str) -> int:
    """Bulk-write the decision log (COPY into a temp table, then insert; rows kept by
    :func:`_reset_day` for messages already on their way win over the rerun's)."""
    if not len(decisions):
        return 0
    frame = decisions[["campaign_id", "step", "customer_id", "outcome", "detail", "score", "outbox_key",
                       "holdout_group"]].copy()  # fmt: skip
    frame["decided_on"] = day.isoformat()
    frame["priority"] = frame["score"]
    keep_key = frame["outcome"].isin([*SEND_OUTCOMES, "already_sent"])
    frame["outbox_key"] = frame["outbox_key"].where(keep_key, None)
    dl = qualified(ops, "decision_log")
    kept = conn.execute(
        sql.SQL("select count(*) from {} where decided_on = %s").format(dl), (day,)
    ).fetchone()
    # in primary-key order: the B-tree is filled page by page (about twice as fast as at random)
    frame = frame.sort_values(["campaign_id", "step", "customer_id"])
    if not kept or not kept[0]:  # the usual case: nothing kept from an earlier run, COPY straight in
        write_frame(conn, dl, _DECISION_COLUMNS, frame)
        return len(frame)
    conn.execute(
        sql.SQL("create temp table _decisions (like {} including defaults) on commit drop").format(dl)
    )
    write_frame(conn, sql.Identifier("_decisions"), _DECISION_COLUMNS, frame)
    cur = conn.execute(
        sql.SQL(
            "insert into {} select * from _decisions on conflict (decided_on, campaign_id, step, customer_id) "
            "do nothing"
        ).format(qualified(ops, "decision_log"))
    )
    return cur.rowcount


def _cancel_stopped(conn: psycopg.Connection, decisions: pd.DataFrame, ops: str) -> int:
    """Pending messages of a sequence that just stopped (the customer renewed) are cancelled."""
    stopped = decisions[decisions["outcome"] == "sequence_stopped"]
    if not len(stopped):
        return 0
    cur = conn.execute(
        sql.SQL(
            "update {} set state = 'cancelled', last_error = 'sequence_stopped', updated_at = now() "
            "where state = 'pending' and (campaign_id, customer_id, cycle) in "
            "(select * from unnest(%(c)s::text[], %(u)s::text[], %(y)s::text[]))"
        ).format(qualified(ops, "outbox")),
        {
            "c": stopped["campaign_id"].tolist(),
            "u": stopped["customer_id"].tolist(),
            "y": stopped["cycle"].tolist(),
        },
    )
    return cur.rowcount


#: the outbox columns the plan writes (delivery's ``outbox.OUTBOX_COLUMNS``)
_OUTBOX_COLUMNS = ["outbox_key", "campaign_id", "step", "cycle", "customer_id", "email", "template", "category",
                   "batch_key", "priority", "offer_code", "offer_cost", "context", "send_at", "planned_on"]  # fmt: skip


def enqueue_planned(conn: psycopg.Connection, planned: pd.DataFrame, day: date) -> str:
    """Hand the plan's messages (:func:`_outbox_frame` rows) to delivery in this transaction:
    ``retention.outreach.outbox.enqueue_frame`` (vectorised checks, one COPY) when the delivery
    layer is installed, else pending ops.outbox rows are written here (same columns, ``on conflict
    do nothing``). Returns which path was used."""
    try:
        from retention.outreach.outbox import enqueue_frame
    except ModuleNotFoundError as exc:
        if exc.name not in {"retention.outreach.outbox"}:
            raise
    else:
        enqueue_frame(conn, planned, planned_on=day)
        return "retention.outreach.outbox.enqueue_frame"
    if not len(planned):
        return "planner fallback"
    rows = planned.copy()
    rows["send_at"] = pd.to_datetime(rows["send_at"], utc=True).map(lambda t: t.isoformat()).astype(object)
    rows["planned_on"] = day.isoformat()
    ob = qualified(get_settings().ops_schema, "outbox")
    conn.execute(sql.SQL("create temp table _outbox (like {} including defaults) on commit drop").format(ob))
    write_frame(conn, sql.Identifier("_outbox"), _OUTBOX_COLUMNS, rows)
    cols = sql.SQL(", ").join(map(sql.Identifier, _OUTBOX_COLUMNS))
    conn.execute(
        sql.SQL("insert into {} ({}) select {} from _outbox on conflict (outbox_key) do nothing").format(
            ob, cols, cols
        )
    )
    return "planner fallback"


def plan_day(
    url: str | None = None,
    day: date | str | None = None,
    *,
    now: datetime | None = None,
    config: CampaignConfig | None = None,
    dry_run: bool = False,
) -> PlanResult:
    """Decide every campaign's audience for ``day``, write the decision log and enqueue the
    messages, all in one transaction (``dry_run``: decide, then roll back)."""
    with object_strings():
        return _plan_day(url, day, now=now, config=config, dry_run=dry_run)


def _plan_day(
    url: str | None,
    day: date | str | None,
    *,
    now: datetime | None,
    config: CampaignConfig | None,
    dry_run: bool,
) -> PlanResult:
    t0, cpu0 = _time.perf_counter(), _time.process_time()
    s = get_settings()
    config = config or load_campaigns()
    day = resolve_day(day, s)
    run_at = resolve_run_at(day, now, s)
    timings: dict[str, float] = {}
    notes: dict[str, str] = {}
    ops = s.ops_schema
    with connect(url) as conn:
        ensure_outreach_tables(conn)
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        _reset_day(conn, day, ops)
        cands = _candidates(conn, config, day, notes)
        contacts = load_contacts(conn, pd.unique(cands["customer_id"]) if len(cands) else [])
        timings["audiences_s"] = _time.perf_counter() - t0
        t1 = _time.perf_counter()
        if len(cands):
            state = load_state(conn, [c.id for c in config.campaigns], run_at, day, s)
            decisions = apply_guardrails(cands, contacts, state, run_at, s)
        else:
            decisions = pd.DataFrame(
                columns=["campaign_id", "step", "customer_id", "outcome", "cycle", "score"]
            )
        timings["guardrails_s"] = _time.perf_counter() - t1
        t2 = _time.perf_counter()
        sendable = decisions[decisions["outcome"].isin(SEND_OUTCOMES)] if len(decisions) else decisions
        planned = _outbox_frame(sendable, config, int(s.sendgrid_batch_size))
        timings["messages_s"] = _time.perf_counter() - t2
        t3 = _time.perf_counter()
        written = write_decisions(conn, decisions, day, ops) if len(decisions) else 0
        if len(decisions):
            _cancel_stopped(conn, decisions, ops)
        timings["decision_log_s"] = _time.perf_counter() - t3
        t4 = _time.perf_counter()
        how = enqueue_planned(conn, planned, day)
        timings["enqueue_s"] = _time.perf_counter() - t4
        if dry_run:
            conn.rollback()
    counts = Counter(decisions["outcome"]) if len(decisions) else Counter()
    by_campaign: dict[str, dict[str, int]] = {}
    if len(decisions):
        for (cid, outcome), n in decisions.groupby(["campaign_id", "outcome"]).size().items():
            by_campaign.setdefault(cid, {})[outcome] = int(n)
    timings["total_s"] = _time.perf_counter() - t0
    timings["python_cpu_s"] = _time.process_time() - cpu0
    log.info("planned %s: %d decisions (%d written), %d messages", day, len(decisions), written, len(planned))
    return PlanResult(
        day=day,
        run_at=run_at,
        outbox=planned,
        _to_messages=lambda: _messages(planned, config),
        outcome_counts=dict(counts),
        campaign_counts=by_campaign,
        notes=notes,
        decisions=len(decisions),
        enqueued_with=how,
        timings=timings,
        dry_run=dry_run,
    )


def batches_for_day(url: str | None = None, day: date | str | None = None) -> list[str]:
    """Batch keys (campaign x segment, <= 1000 messages each) with messages planned on ``day`` that
    are still to send (pending) or to reconcile (sending): one mapped delivery task per key."""
    s = get_settings()
    d = resolve_day(day, s)
    with connect(url) as conn:
        ensure_outreach_tables(conn)
        rows = read_frame(
            conn,
            sql.SQL(
                "select distinct batch_key from {} where planned_on = %(day)s "
                "and state in ('pending', 'sending') order by 1"
            ).format(qualified(s.ops_schema, "outbox")),
            {"day": d},
        )
    return rows["batch_key"].tolist()


WHY_SQL = """
select d.decided_on, d.campaign_id, d.step, d.outcome, d.detail, d.holdout_group,
       d.priority, o.state as outbox_state, o.send_at, o.sent_at
from {dl} d
left join {ob} o on o.outbox_key = d.outbox_key
where d.customer_id = %(customer)s and d.decided_on = %(day)s
order by d.campaign_id, d.step
"""


def why(customer_id: str, day: date | str | None = None, url: str | None = None) -> pd.DataFrame:
    """Every decision about one customer on one day (the README's "why did they get nothing?")."""
    s = get_settings()
    d = resolve_day(day, s)
    with connect(url) as conn:
        ensure_outreach_tables(conn)
        q = sql.SQL(WHY_SQL).format(
            dl=qualified(s.ops_schema, "decision_log"), ob=qualified(s.ops_schema, "outbox")
        )
        return read_frame(conn, q, {"customer": customer_id, "day": d})
