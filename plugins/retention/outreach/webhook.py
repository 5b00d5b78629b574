"""SendGrid Event Webhook receiver (FastAPI).

``POST /sendgrid/events`` with SendGrid's signed Event Webhook:

* verifies ``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER ECDSA P-256 / SHA-256 signature
  over ``timestamp + raw body``) with the public key of ``SENDGRID_WEBHOOK_PUBLIC_KEY`` (base64 DER,
  as SendGrid shows it; PEM accepted) and rejects timestamps further than
  ``RETENTION_SENDGRID_WEBHOOK_TOLERANCE_S`` from now (replays);
* validates the payload (a JSON list of event objects with ``sg_event_id``, ``event``, ``email`` and
  an integer ``timestamp``): anything else is a 400 naming the problem, and nothing is written;
* in one transaction: inserts the events into ``raw.email_events`` (``on conflict (sg_event_id) do
  nothing``: SendGrid delivers at least once) and, for events that are new, applies unsubscribe /
  group_unsubscribe / bounce / spamreport to ``ops.suppressions`` at once, so the next send skips
  the address.

``app`` (and ``create_app(url=None)``) can be mounted by the Airflow 3 plugin (``fastapi_apps``);
``retention webhook serve --port 8025`` runs it with uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from retention.settings import get_settings

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PATH = "/sendgrid/events"

#: event → suppression reason (ops.suppressions.reason)
SUPPRESSING_EVENTS = {
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "bounce": "bounced",
    "spamreport": "spamreport",
}
REQUIRED = ("sg_event_id", "event", "email", "timestamp")


class PayloadError(ValueError):
    """The webhook body is not what SendGrid sends; the message says what is wrong."""


class KeyConfigError(RuntimeError):
    """SENDGRID_WEBHOOK_PUBLIC_KEY is missing or unusable."""


@dataclass(frozen=True)
class Event:
    sg_event_id: str
    event: str
    email: str
    occurred_at: datetime
    outbox_key: str | None
    sg_message_id: str | None
    reason: str | None
    bounce_type: str | None


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    value = value.strip()
    if not value:
        raise KeyConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not set: signed events cannot be verified")
    try:
        if value.startswith("-----BEGIN"):
            key = load_pem_public_key(value.encode())
        else:
            key = load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise KeyConfigError(
            f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER (or PEM) public key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve (ECDSA) key")
    return key


def verify_signature(key: ec.EllipticCurvePublicKey, signature_b64: str, timestamp: str, body: bytes) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _opt_str(value: Any, name: str, i: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"event {i}: field {name!r} must be a string, got {type(value).__name__}")


def parse_events(body: bytes) -> list[Event]:
    """Validate the whole payload first (all or nothing)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, list):
        raise PayloadError(f"body must be a JSON list of events, got {type(doc).__name__}")
    events = []
    for i, raw in enumerate(doc):
        if not isinstance(raw, dict):
            raise PayloadError(f"event {i} is not an object ({type(raw).__name__})")
        missing = [f for f in REQUIRED if raw.get(f) in (None, "")]
        if missing:
            raise PayloadError(f"event {i} misses required field(s) {', '.join(missing)}")
        for f in ("sg_event_id", "event", "email"):
            if not isinstance(raw[f], str):
                raise PayloadError(f"event {i}: field {f!r} must be a string")
        ts = raw["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise PayloadError(f"event {i}: timestamp must be unix seconds (a number), got {ts!r}")
        try:
            occurred = datetime.fromtimestamp(ts, UTC)
        except (OverflowError, OSError, ValueError):
            raise PayloadError(f"event {i}: timestamp {ts!r} is out of range") from None
        if "@" not in raw["email"]:
            raise PayloadError(f"event {i}: email {raw['email']!r} is not an e-mail address")
        events.append(
            Event(
                sg_event_id=raw["sg_event_id"],
                event=raw["event"].strip().lower(),
                email=raw["email"].strip(),
                occurred_at=occurred,
                outbox_key=_opt_str(raw.get("outbox_key"), "outbox_key", i),
                sg_message_id=_opt_str(raw.get("sg_message_id"), "sg_message_id", i),
                reason=_opt_str(raw.get("reason"), "reason", i),
                bounce_type=_opt_str(raw.get("type"), "type", i),
            )
        )
    return events


def ensure_event_tables(conn: psycopg.Connection) -> None:
    """raw.email_events (from the raw contract) and the ops tables (suppressions)."""
    from retention.outreach.models import ensure_outreach_tables

    s = get_settings()
    try:
        from retention.loader import ensure_raw_tables  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from retention.contract import load_contract

        conn.execute(f'create schema if not exists "{s.raw_schema}"')
        conn.execute(load_contract()["email_events"].ddl(s.raw_schema))
    else:
        ensure_raw_tables(conn)
    ensure_outreach_tables(conn)


def suppression_reason(event: Event) -> str | None:
    reason = SUPPRESSING_EVENTS.get(event.event)
    if reason == "bounced" and (event.bounce_type or "").lower() == "blocked":
        return None  # a block is temporary (reputation, content), not a dead address
    return reason


_ENSURED: set[str] = set()  # warehouses whose tables this process has already created


def store_events(url: str | None, events: list[Event]) -> dict[str, int]:
    """One transaction: new events into raw.email_events, their suppressions into ops.suppressions."""
    from retention.db import connect, default_url

    s = get_settings()
    raw = f'"{s.raw_schema}".email_events'
    ops = f'"{s.ops_schema}".suppressions'
    target = url or default_url()
    with connect(target) as conn:
        if target not in _ENSURED:
            ensure_event_tables(conn)
            conn.commit()
            _ENSURED.add(target)
        if not events:
            return {"received": 0, "new": 0, "suppressions": 0}
        cols = list(zip(*[
            (e.sg_event_id, e.event, e.email, e.occurred_at, e.outbox_key, e.sg_message_id, e.reason)
            for e in events
        ], strict=True))  # fmt: skip
        new_ids = {
            r[0]
            for r in conn.execute(
                f"""insert into {raw} (sg_event_id, event, email, occurred_at, outbox_key, sg_message_id,
                                       reason, _source_file)
                    select *, 'sendgrid-event-webhook'
                    from unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[],
                                %s::text[])
                    on conflict (sg_event_id) do nothing
                    returning sg_event_id""",
                [list(c) for c in cols],
            ).fetchall()
        }
        inserted = len(new_ids)
        suppressions = 0
        seen: set[str] = set()
        for e in events:
            reason = suppression_reason(e)
            if e.sg_event_id not in new_ids or reason is None:
                continue
            new_ids.discard(e.sg_event_id)  # a duplicate inside the same payload is applied once
            email = e.email.lower()
            if email in seen:
                continue
            seen.add(email)
            cur = conn.execute(
                f"""insert into {ops} (email, reason, source) values (%s, %s, %s)
                    on conflict (email) do nothing""",
                (email, reason, f"sendgrid:{e.event}"),
            )
            suppressions += cur.rowcount
    return {"received": len(events), "new": inserted, "suppressions": suppressions}


def create_app(url: str | None = None, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The webhook app; ``url`` is the warehouse (default: the settings')."""
    app = FastAPI(title="retention: SendGrid Event Webhook", docs_url=None, redoc_url=None)

    def reject(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.post(PATH)
    async def events(request: Request) -> JSONResponse:
        s = get_settings()
        body = await request.body()
        try:
            key = load_public_key(s.sendgrid_webhook_public_key)
        except KeyConfigError as exc:
            return reject(503, str(exc))
        signature = request.headers.get(SIGNATURE_HEADER)
        stamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            return reject(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        try:
            stamp_s = int(stamp)
        except ValueError:
            return reject(401, f"{TIMESTAMP_HEADER} is not unix seconds: {stamp[:40]!r}")
        if abs(clock() - stamp_s) > s.sendgrid_webhook_tolerance_s:
            return reject(403, f"stale timestamp: more than {s.sendgrid_webhook_tolerance_s:g} s from now")
        if not verify_signature(key, signature, stamp, body):
            return reject(403, "signature does not verify with SENDGRID_WEBHOOK_PUBLIC_KEY")
        try:
            parsed = parse_events(body)
        except PayloadError as exc:
            return reject(400, str(exc))
        counts = await run_in_threadpool(store_events, url, parsed)
        return JSONResponse(counts)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()


def main(argv: list[str]) -> int:
    """``retention webhook serve [--port 8025] [--host 127.0.0.1]``"""
    parser = argparse.ArgumentParser(prog="retention webhook", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the Event Webhook receiver with uvicorn")
    serve.add_argument("--port", type=int, default=8025)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        import uvicorn

        try:
            load_public_key(get_settings().sendgrid_webhook_public_key)
        except KeyConfigError as exc:
            print(f"warning: {exc}; every request will be refused with 503")
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0
