"""Daily digests of high-value at-risk customers for the human teams.

Who: the latest analytics.churn_scores (on or before the day) with risk tier in
``team_alerts.risk_tiers`` and ``customer_value > RETENTION_HIGH_VALUE_THRESHOLD``.
Where (first match wins):

1. ``customer_value > RETENTION_KEY_ACCOUNT_THRESHOLD``       -> account managers (key_account_team)
2. a failed payment not recovered (fct_customer_signals)      -> billing (payment_failed_team)
3. ``reason_routes[reason_category]`` (service_failure -> support, involuntary -> billing, ...)
   Reasons without a route (moved_no_need: we let go) are not escalated.

Each team's digest is written as Markdown and JSON to
``<state_dir>/digests/<date>/<team>.md|.json`` and delivered once per day and team: to the
Slack-compatible webhook when ``RETENTION_ALERT_WEBHOOK_URL`` is set (a ``<team>.sent`` marker keeps
a rerun from posting twice), otherwise by email to the team's mailbox from ``RETENTION_TEAM_EMAILS``
through the delivery layer: a transactional ``team_digest`` message queued in ops.outbox
(campaign ``team_digest``, step = team, cycle = date, so the outbox key sends it once a day).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from retention.db import connect
from retention.outreach.audiences import first_table, read_frame
from retention.outreach.campaigns import CampaignConfig, TeamAlertConfig, load_campaigns
from retention.settings import Settings, get_settings

log = logging.getLogger(__name__)

DIGEST_CAMPAIGN = "team_digest"
DIGEST_TEMPLATE = "team_digest"


class TeamAlertError(RuntimeError):
    """A digest cannot be routed or delivered; the message names the team and the problem."""


@dataclass
class DigestResult:
    day: date
    teams: dict[str, list[dict[str, Any]]]
    paths: dict[str, Path] = field(default_factory=dict)
    delivered: dict[str, str] = field(default_factory=dict)  # team -> how (webhook / email / skipped: why)
    note: str = ""


def _reasons(raw: Any) -> list[dict[str, Any]]:
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return []
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return [{"feature": "", "text": str(raw), "contribution": None}]
    if not isinstance(items, list):
        return []
    return [
        {"feature": i.get("feature", ""), "text": i.get("text", ""), "contribution": i.get("contribution")}
        for i in items
        if isinstance(i, dict)
    ]


def route(row: dict[str, Any], cfg: TeamAlertConfig, settings: Settings) -> str | None:
    """The team a high-value at-risk customer goes to (None: not escalated)."""
    if float(row.get("customer_value") or 0) > float(settings.key_account_threshold):
        return cfg.key_account_team
    if row.get("payment_failed_unrecovered"):
        return cfg.payment_failed_team
    return cfg.reason_routes.get(row.get("reason_category") or "unknown")


def collect(
    conn: psycopg.Connection, day: date, config: CampaignConfig | None = None
) -> dict[str, list[dict[str, Any]]]:
    """High-value at-risk customers by team, highest value first."""
    s = get_settings()
    cfg = (config or load_campaigns()).team_alerts
    scores = first_table(conn, (s.analytics_schema, "churn_scores"))
    if scores is None:
        log.warning("no analytics.churn_scores: no team digest today")
        return {}
    signals = first_table(conn, (s.analytics_schema, "fct_customer_signals"))
    pf = (
        sql.SQL(
            "coalesce((select g.payment_failed_unrecovered::int from {} g where g.customer_id = s.customer_id), 0) > 0"
        ).format(signals)
        if signals is not None
        else sql.SQL("false")
    )
    frame = read_frame(
        conn,
        sql.SQL(
            "with latest as (select max(as_of_date) as d from {t} where as_of_date <= %(day)s) "
            "select s.customer_id, s.customer_value, s.churn_probability, s.risk_tier, "
            "coalesce(s.reason_category, 'unknown') as reason_category, s.priority_score, "
            "s.reason_codes::text as reason_codes, {pf} as payment_failed_unrecovered "
            "from {t} s join latest on s.as_of_date = latest.d "
            "where s.risk_tier = any(%(tiers)s) and s.customer_value > %(min)s "
            "order by s.customer_value desc, s.customer_id"
        ).format(t=scores, pf=pf),
        {"day": day, "tiers": list(cfg.risk_tiers), "min": float(s.high_value_threshold)},
        types={
            "customer_value": "float",
            "churn_probability": "float",
            "priority_score": "float",
            "payment_failed_unrecovered": "bool",
        },
    )
    teams: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        team = route(row, cfg, s)
        if team is None:
            continue
        reasons = _reasons(row.pop("reason_codes"))
        teams.setdefault(team, []).append(
            {
                "customer_id": row["customer_id"],
                "customer_value": round(float(row["customer_value"]), 2),
                "churn_probability": round(float(row["churn_probability"]), 3)
                if pd.notna(row["churn_probability"])
                else None,
                "risk_tier": row["risk_tier"],
                "reason_category": row["reason_category"],
                "payment_failed_unrecovered": bool(row["payment_failed_unrecovered"]),
                "reason_codes": reasons,
            }
        )
    return teams


def render_markdown(team: str, day: date, customers: list[dict[str, Any]]) -> str:
    lines = [
        f"# High-value customers at risk — {team} — {day.isoformat()}",
        "",
        f"{len(customers)} customer(s) need a person today. Reasons are the churn model's top drivers.",
        "",
        "| customer | value | churn prob. | risk | reason | reason codes |",
        "|---|---:|---:|---|---|---|",
    ]
    for c in customers:
        codes = "; ".join(f"{r['text'] or r['feature']} (`{r['feature']}`)" for r in c["reason_codes"]) or "—"
        prob = f"{c['churn_probability']:.0%}" if c["churn_probability"] is not None else "?"
        reason = c["reason_category"] + (" + failed payment" if c["payment_failed_unrecovered"] else "")
        lines.append(
            f"| {c['customer_id']} | {c['customer_value']:,.2f} | {prob} | {c['risk_tier']} | {reason} | {codes} |"
        )
    return "\n".join(lines) + "\n"


def _post_webhook(url: str, text: str) -> None:
    body = json.dumps({"text": text}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=float(get_settings().sendgrid_timeout_s)) as resp:
            if not 200 <= resp.status < 300:
                raise TeamAlertError(f"alert webhook answered HTTP {resp.status}")
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise TeamAlertError(f"alert webhook failed: {exc}") from exc


def digest_message(team: str, address: str, day: date, customers: list[dict[str, Any]]) -> Any:
    """The digest as a transactional PlannedMessage for the delivery layer (template team_digest)."""
    from retention.outreach.models import PlannedMessage

    rows = []
    for c in customers:
        row = {
            "customer_id": str(c["customer_id"]),
            "customer_value": float(c["customer_value"] or 0),
            "churn_probability": float(c.get("churn_probability") or 0.0),
            "reasons": [r.get("text") or r.get("feature") or "" for r in c.get("reason_codes") or []],
        }
        if c.get("reason_category"):  # the template shows it only when present
            row["reason_category"] = str(c["reason_category"])
        rows.append(row)
    return PlannedMessage(
        campaign_id=DIGEST_CAMPAIGN,
        step=team,
        customer_id=f"team:{team}",
        email=address,
        template=DIGEST_TEMPLATE,
        category="transactional",
        send_at=datetime.now(UTC),
        batch_key=f"{DIGEST_CAMPAIGN}.{team}",
        priority=0.0,
        cycle=day.isoformat(),
        context={"team": team, "digest_date": day.isoformat(), "customers": rows},
    )


def _enqueue_digest(conn: psycopg.Connection, message: Any, day: date) -> bool:
    """Queue the digest through delivery's ``outbox.enqueue``; False when delivery is not installed."""
    try:
        from retention.outreach.outbox import enqueue  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name != "retention.outreach.outbox":
            raise
        return False
    enqueue(conn, [message], planned_on=day)
    return True


def run_digests(
    url: str | None = None,
    day: date | str | None = None,
    *,
    send: bool = True,
    config: CampaignConfig | None = None,
) -> DigestResult:
    """Build, write and deliver today's team digests."""
    from retention.outreach.planner import resolve_day

    s = get_settings()
    d = resolve_day(day, s)
    with connect(url) as conn:
        teams = collect(conn, d, config)
        result = _write_and_deliver(conn, teams, d, send, s)
    return result


def send_digests(
    url: str | None = None, day: date | str | None = None, *, send_now: bool = True
) -> dict[str, Any]:
    """DAG entry point: :func:`run_digests`, then (``send_now``) delivery's ``send_batch`` for each
    queued digest, so the teams get it today whatever the task order. Returns a summary for XCom."""
    result = run_digests(url, day)
    sent: dict[str, str] = {}
    if send_now:
        queued = [t for t, how in result.delivered.items() if how.startswith("queued")]
        if queued:
            from retention.outreach.outbox import send_batch

            for team in queued:
                batch = send_batch(url, f"{DIGEST_CAMPAIGN}.{team}", planned_on=result.day)
                sent[team] = "sent" if batch.ok else f"not sent: {batch.summary()}"
    return {
        "day": result.day.isoformat(),
        "note": result.note,
        "teams": {
            team: {
                "customers": len(cs),
                "path": str(result.paths.get(team, "")),
                "delivered": sent.get(team, result.delivered.get(team, "")),
            }
            for team, cs in sorted(result.teams.items())
        },
    }


def _write_and_deliver(
    conn: psycopg.Connection, teams: dict[str, list[dict[str, Any]]], d: date, send: bool, s: Settings
) -> DigestResult:
    mailboxes = s.team_email_map
    webhook = s.alert_webhook_url
    if not webhook:
        unknown = sorted(t for t in teams if t not in mailboxes)
        if unknown:
            raise TeamAlertError(
                f"team(s) {unknown} have no mailbox in RETENTION_TEAM_EMAILS (known: {sorted(mailboxes)})"
            )
    folder = Path(s.state_dir) / "digests" / d.isoformat()
    result = DigestResult(day=d, teams=teams)
    if not teams:
        result.note = "no high-value at-risk customers today"
        return result
    folder.mkdir(parents=True, exist_ok=True)
    for team, customers in sorted(teams.items()):
        md = render_markdown(team, d, customers)
        payload = {
            "team": team,
            "date": d.isoformat(),
            "recipient": mailboxes.get(team),
            "customers": customers,
        }
        md_path = folder / f"{team}.md"
        for path, text in ((md_path, md), (folder / f"{team}.json", json.dumps(payload, indent=2) + "\n")):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)  # never a half-written digest
        result.paths[team] = md_path
        marker = folder / f"{team}.sent"
        if not send:
            result.delivered[team] = "skipped: not sending"
        elif webhook:
            if marker.exists():
                result.delivered[team] = "skipped: already posted to the webhook today"
                continue
            _post_webhook(webhook, md)
            marker.write_text("webhook\n")
            result.delivered[team] = "webhook"
        elif _enqueue_digest(conn, digest_message(team, mailboxes[team], d, customers), d):
            result.delivered[team] = f"queued for {mailboxes[team]} (outbox batch {DIGEST_CAMPAIGN}.{team})"
        else:
            result.delivered[team] = (
                f"not sent: delivery layer (retention.outreach.outbox) missing; see {md_path}"
            )
            log.warning("team digest for %s not emailed: delivery layer missing", team)
    return result
