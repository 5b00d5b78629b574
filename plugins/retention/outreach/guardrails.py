"""The central guardrails, applied to every campaign's candidates in one place and one order.

Each considered (campaign, step, customer) ends with exactly one outcome from ``models.OUTCOMES``;
the first rule that stops a candidate decides it:

 0. the audience already decided (``sequence_stopped``, ``let_go``)
 1. no usable email                                    -> ``suppressed:no_email``
 2. marketing without consent (transactional excepted) -> ``suppressed:no_consent``
 3. ops.suppressions / webhook events: unsubscribed, bounced, spamreport (transactional messages
    still go to unsubscribed customers, never to bounced or spam-reporting addresses; a manual
    suppression stops everything)                      -> ``suppressed:<reason>``
 4. global holdout, then the campaign's holdout        -> ``held_out``
 5. the outbox already has the message's key           -> ``already_sent``
 6. marketing frequency cap over the rolling window    -> ``capped``
 7. one message per customer per day: campaign priority, then score -> ``lower_priority``
 8. winners: ``sent``, or ``quiet_hours_deferred`` with send_at moved to the end of quiet hours in
    the customer's own time zone (still queued).

Everything is vectorised (pandas/numpy); the state the rules need is read once by
:func:`load_state`.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from retention.outreach import holdout
from retention.outreach.audiences import first_table, qualified, read_frame
from retention.outreach.models import EMAIL_PATTERN, OUTCOMES
from retention.settings import Settings, get_settings

log = logging.getLogger(__name__)

SEND_OUTCOMES = ("sent", "quiet_hours_deferred")
_SUPPRESSION_RANK = {"spamreport": 0, "bounced": 1, "manual": 2, "unsubscribed": 3}
_EVENT_REASON = {"unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed", "bounce": "bounced",
                 "spamreport": "spamreport"}  # fmt: skip


@dataclass
class GuardrailState:
    """What the rules need from ops tables, read once per plan."""

    suppressions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["email_lc", "reason", "source"])
    )
    existing_keys: set[str] = field(default_factory=set)
    existing_state: dict[str, str] = field(default_factory=dict)
    recent_marketing: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))  # by customer_id
    messaged_today: pd.Series = field(
        default_factory=lambda: pd.Series(dtype="object")
    )  # customer -> campaign


def load_state(
    conn: psycopg.Connection,
    campaign_ids: list[str],
    run_at: datetime,
    day: date,
    settings: Settings | None = None,
) -> GuardrailState:
    s = settings or get_settings()
    ops = s.ops_schema
    supp = read_frame(
        conn,
        sql.SQL("select lower(email) as email_lc, reason, source from {}").format(
            qualified(ops, "suppressions")
        ),
    )
    events = first_table(conn, (s.raw_schema, "email_events"))
    if events is not None:
        ev = read_frame(
            conn,
            sql.SQL(
                "select distinct lower(email) as email_lc, event from {} where event = any(%(ev)s)"
            ).format(events),
            {"ev": list(_EVENT_REASON)},
        )
        ev["reason"] = ev["event"].map(_EVENT_REASON)
        ev["source"] = "email_events"
        supp = pd.concat([supp, ev[["email_lc", "reason", "source"]]], ignore_index=True)
    if len(supp):
        supp["rank"] = supp["reason"].map(_SUPPRESSION_RANK).fillna(9)
        supp = supp.sort_values("rank").drop_duplicates("email_lc").drop(columns="rank")
    outbox = qualified(ops, "outbox")
    keys = read_frame(
        conn,
        sql.SQL("select outbox_key, state from {} where campaign_id = any(%(ids)s)").format(outbox),
        {"ids": campaign_ids},
    )
    window_start = run_at - timedelta(days=int(s.frequency_window_days))
    recent = read_frame(
        conn,
        sql.SQL(
            "select customer_id, count(*) as n from {} where category = 'marketing' "
            "and state in ('pending', 'sending', 'sent') and coalesce(sent_at, send_at) > %(start)s "
            "group by 1"
        ).format(outbox),
        {"start": window_start},
        types={"n": "int"},
    )
    today = read_frame(
        conn,
        sql.SQL(
            "select distinct on (customer_id) customer_id, campaign_id from {} "
            "where state in ('pending', 'sending', 'sent') "
            "and (planned_on = %(day)s or (send_at at time zone %(tz)s)::date = %(day)s) "
            "order by customer_id, send_at"
        ).format(outbox),
        {"day": day, "tz": s.business_tz},
    )
    return GuardrailState(
        suppressions=supp,
        existing_keys=set(keys["outbox_key"]),
        existing_state=dict(zip(keys["outbox_key"], keys["state"], strict=True)),
        recent_marketing=recent.set_index("customer_id")["n"] if len(recent) else pd.Series(dtype="int64"),
        messaged_today=today.set_index("customer_id")["campaign_id"]
        if len(today)
        else pd.Series(dtype="object"),
    )


def outbox_keys(
    campaign_ids: pd.Series, steps: pd.Series, cycles: pd.Series, customer_ids: pd.Series
) -> pd.Series:
    """Vectorised ``models.outbox_key`` (same result, one hash per distinct customer)."""
    uniq = pd.unique(customer_ids)
    digests = dict(zip(uniq, [hashlib.sha256(str(c).encode()).hexdigest()[:16] for c in uniq], strict=True))
    dig = customer_ids.map(digests)
    base = campaign_ids + ":" + steps + ":"
    return pd.Series(np.where(cycles != "", base + cycles + ":" + dig, base + dig), index=customer_ids.index)


def in_quiet_hours(hour: int, start: int, end: int) -> bool:
    if start == end:
        return False
    return start <= hour < end if start < end else (hour >= start or hour < end)


def quiet_hours_send_at(run_at: datetime, tz_name: str, start: int, end: int) -> tuple[datetime, bool]:
    """(send_at in UTC, deferred?) for a message planned at ``run_at`` to someone in ``tz_name``."""
    tz = ZoneInfo(tz_name)
    local = run_at.astimezone(tz)
    if not in_quiet_hours(local.hour, start, end):
        return run_at, False
    target_day = local.date() if local.hour < end else local.date() + timedelta(days=1)
    target = datetime.combine(target_day, time(end), tzinfo=tz)
    return target.astimezone(UTC), True


@contextmanager
def object_strings() -> Iterator[None]:
    """Plan with plain object strings: pandas 3 infers arrow-backed ``str`` columns, whose element-wise
    operations (map, isin, iteration, concatenation of ids) cost several times more at a million rows.
    Scoped (an option context), so nothing else in the process is affected; a no-op once pandas
    drops the option."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer_string.*")
        try:
            ctx = pd.option_context("future.infer_string", False)
        except (KeyError, ValueError):  # pandas.errors.OptionError subclasses both
            ctx = nullcontext()
        with ctx:
            yield


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed string columns as plain objects (pandas' arrow ``isin``/iteration is slow here)."""
    cols = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(cols, object)) if cols else frame


def apply_guardrails(
    cands: pd.DataFrame,
    contacts: pd.DataFrame,
    state: GuardrailState,
    run_at: datetime,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Decide every candidate. ``cands`` has campaign_id, step, customer_id, cycle, score, preset,
    detail, category, campaign_priority, holdout_share, global_holdout. Returns it with email,
    time_zone, outcome, detail, holdout_group, outbox_key and send_at (for sendable outcomes)."""
    s = settings or get_settings()
    df = _plain_strings(cands).merge(
        _plain_strings(
            contacts[["customer_id", "email", "time_zone", "marketing_consent", "customer_value"]]
        ),
        on="customer_id",
        how="left",
        indicator="_contact",
    )
    n = len(df)
    outcome = np.full(n, None, dtype=object)
    detail = df["detail"].to_numpy(dtype=object, copy=True)

    def decide(mask: np.ndarray, name: str, why: np.ndarray | str | None = None) -> None:
        m = mask & pd.isna(outcome)
        outcome[m] = name
        if why is not None:
            detail[m] = why[m] if isinstance(why, np.ndarray) else why

    df["score"] = df["score"].fillna(df["customer_value"]).fillna(0.0)
    marketing = (df["category"] == "marketing").to_numpy()

    # 0. the audience decided
    preset = df["preset"].to_numpy(dtype=object)
    has_preset = ~pd.isna(preset)
    outcome[has_preset] = preset[has_preset]

    # 1. email
    email = df["email"].astype(object).str.strip()
    known = (df.pop("_contact") == "both").to_numpy()
    no_email = ~email.str.match(EMAIL_PATTERN).fillna(False).astype(bool).to_numpy()
    decide(~known, "suppressed:no_email", "customer not found in dim_customers")
    decide(no_email, "suppressed:no_email", "no usable email address")

    # 2. consent
    consent = df["marketing_consent"].fillna(False).astype(bool).to_numpy()
    decide(marketing & ~consent, "suppressed:no_consent", "no marketing consent")

    # 3. suppressions
    if len(state.suppressions):
        sup = state.suppressions.set_index("email_lc")
        email_lc = email.str.lower()
        reason_s = email_lc.map(sup["reason"])
        why = (reason_s + " (" + email_lc.map(sup["source"]).fillna("") + ")").to_numpy(dtype=object)
        reason = reason_s.to_numpy(dtype=object)
        for r in ("spamreport", "bounced"):
            decide(reason == r, f"suppressed:{r}", why)
        decide(reason == "manual", "suppressed:manual", why)
        decide((reason == "unsubscribed") & marketing, "suppressed:unsubscribed", why)

    # 4. holdouts (group recorded for every row, so the review can compare like with like)
    group = np.full(n, "treatment", dtype=object)
    gshare = float(s.global_holdout_share)
    glob = np.zeros(n, dtype=bool)
    if gshare > 0 and n:
        uniq = pd.unique(df["customer_id"])
        u = pd.Series(holdout.uniforms(uniq, holdout.GLOBAL, s.holdout_salt), index=uniq)
        glob = (df["customer_id"].map(u).to_numpy() < gshare) & df["global_holdout"].to_numpy(dtype=bool)
    camp = np.zeros(n, dtype=bool)
    for cid, idx in df.groupby("campaign_id", sort=False).indices.items():
        share = float(df["holdout_share"].iat[idx[0]])
        if share > 0:
            camp[idx] = holdout.uniforms(df["customer_id"].to_numpy()[idx], cid, s.holdout_salt) < share
    group[camp] = "campaign"
    group[glob] = "global"
    decide(glob, "held_out", "global control group")
    decide(camp, "held_out", "campaign control group")

    # 5. already sent (keys are hashed only for the rows still open: the expensive part)
    keys = pd.Series(None, index=df.index, dtype=object)
    still_open = pd.isna(outcome)
    if still_open.any():
        sub = df.loc[still_open]
        keys[still_open] = outbox_keys(
            sub["campaign_id"], sub["step"], sub["cycle"], sub["customer_id"]
        ).to_numpy()
    sent_before = keys.isin(state.existing_keys).to_numpy() & still_open
    if sent_before.any():
        st = keys.map(state.existing_state).fillna("").to_numpy(dtype=object)
        decide(sent_before, "already_sent", np.array([f"outbox state {x}" for x in st], dtype=object))

    # 6. frequency cap (marketing only)
    recent = df["customer_id"].map(state.recent_marketing).fillna(0).to_numpy()
    cap = int(s.frequency_cap)
    decide(
        marketing & (recent >= cap),
        "capped",
        f"{cap} marketing messages in the last {s.frequency_window_days} days",
    )

    # 7. one message per customer per day
    today = df["customer_id"].map(state.messaged_today).to_numpy(dtype=object)
    busy = ~pd.isna(today)
    if busy.any():
        why_busy = np.full(n, None, dtype=object)
        why_busy[busy] = [f"already messaged today ({c})" for c in today[busy]]
        decide(busy, "lower_priority", why_busy)
    open_mask = pd.isna(outcome)
    if open_mask.any():
        live = df.loc[open_mask, ["customer_id", "campaign_priority", "score", "campaign_id", "step"]]
        live = live.sort_values(
            ["customer_id", "campaign_priority", "score", "campaign_id", "step"],
            ascending=[True, False, False, True, True],
        )
        first = ~live["customer_id"].duplicated()
        winners = live[first]
        winner_of = winners.set_index("customer_id")
        losers = live[~first]
        if len(losers):
            won = losers["customer_id"].map(winner_of["campaign_id"] + ":" + winner_of["step"])
            pos = df.index.get_indexer(losers.index)
            outcome[pos] = "lower_priority"
            detail[pos] = ("slot taken by " + won).to_numpy(dtype=object)

    # 8. quiet hours for the winners
    send_at = np.full(n, None, dtype=object)
    winners_mask = pd.isna(outcome)
    if winners_mask.any():
        tzs = df["time_zone"].fillna(s.business_tz).to_numpy(dtype=object)
        start, end = int(s.quiet_hours_start), int(s.quiet_hours_end)
        per_tz: dict[str, tuple[datetime, bool]] = {}
        for tz in pd.unique(tzs[winners_mask]):
            try:
                per_tz[tz] = quiet_hours_send_at(run_at, tz, start, end)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("unknown time zone %r: using the business time zone", tz)
                per_tz[tz] = quiet_hours_send_at(run_at, s.business_tz, start, end)
        idx = np.flatnonzero(winners_mask)
        zones = list(per_tz)
        codes = pd.Categorical(tzs[idx], categories=zones).codes
        at_by_zone = np.empty(len(zones), dtype=object)
        at_by_zone[:] = [per_tz[z][0] for z in zones]
        deferred_by_zone = np.array([per_tz[z][1] for z in zones], dtype=bool)
        why_by_zone = np.array(
            [f"quiet hours in {z}: send at {per_tz[z][0].isoformat()}" for z in zones], dtype=object
        )
        deferred = deferred_by_zone[codes]
        send_at[idx] = at_by_zone[codes]
        outcome[idx] = np.where(deferred, "quiet_hours_deferred", "sent")
        detail[idx[deferred]] = why_by_zone[codes[deferred]]
    unknown = set(pd.unique(outcome)) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"guardrails produced outcomes outside models.OUTCOMES: {sorted(map(str, unknown))}")
    df["outcome"] = outcome
    df["detail"] = detail
    df["holdout_group"] = group
    df["outbox_key"] = keys.to_numpy()
    df["send_at"] = send_at
    return df
