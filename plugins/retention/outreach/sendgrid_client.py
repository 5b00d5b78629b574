"""SendGrid transport: the official ``sendgrid`` client, error classification and retries.

Real SendGrid endpoints used (v3, https://api.sendgrid.com):

* ``POST /v3/mail/batch`` → ``201 {"batch_id": ...}``: one batch id per Mail Send request, so the
  request can be found (Email Activity, by custom arg) and cancelled (Scheduled Sends).
* ``POST /v3/mail/send`` → ``202``: up to 1000 personalizations. No idempotency key exists, so a
  retry after an *unknown* outcome (timeout, dropped connection, crash) is only made after the
  reconciliation below. A ``429`` or ``5xx`` answer means the request was not accepted.
* ``GET /v3/messages?query=unique_args['retention_batch']="<batch_id>"&limit=1`` (Email Activity
  Feed): was anything of this request accepted? A Mail Send request is accepted or rejected as a
  whole, so one hit answers for the whole request. Limits of the real API: it needs the paid
  "Email Activity History" add-on and an API key with Email Activity access, is rate-limited to
  6 requests per minute, and lags behind Mail Send (minutes), so *absence* is proof only after a
  grace period (setting ``RETENTION_SENDGRID_RECONCILE_GRACE_S``).
* ``POST /v3/user/scheduled_sends {"batch_id", "status": "cancel"}`` (Cancel Scheduled Sends): a
  request whose ``send_at`` is more than 10 minutes away can be cancelled for sure, whether or not
  it was accepted, and then resent under a new batch id. Limits: not later than 10 minutes before
  ``send_at``; at most 10 batches paused/cancelled at a time.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from python_http_client import exceptions as http_exc
from sendgrid import SendGridAPIClient

T = TypeVar("T")

#: SendGrid refuses to cancel a scheduled send later than this before its send_at
CANCEL_MARGIN_S = 10 * 60
#: SendGrid schedules at most this far ahead
MAX_SCHEDULE_AHEAD_S = 72 * 3600
#: custom arg that names our request (batch id) on every personalization
BATCH_ARG = "retention_batch"


class SendGridError(RuntimeError):
    """Base of transport errors."""


class RateLimited(SendGridError):
    def __init__(self, reset_at: float | None, message: str) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class ServerError(SendGridError):
    """5xx: the request was not accepted; retry with backoff."""


class UnknownOutcome(SendGridError):
    """Timeout or dropped connection: the request may or may not have been accepted."""


class Rejected(SendGridError):
    """4xx other than 429: SendGrid refused the request; its error text is the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BadResponse(SendGridError):
    """SendGrid answered something that is not the JSON the API documents."""


def error_text(status: int, body: bytes | str | None) -> str:
    """SendGrid's ``errors[].message`` (with the field), or a clear message when the body is not
    the documented JSON error object."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        doc = json.loads(raw)
        errors = doc["errors"]
        if not isinstance(errors, list) or not errors:
            raise ValueError("no errors")
        parts = []
        for err in errors:
            msg = str(err["message"])
            field = err.get("field")
            parts.append(f"{field}: {msg}" if field and field != "null" else msg)
        return f"SendGrid {status}: " + "; ".join(parts)
    except (ValueError, KeyError, TypeError, AttributeError):
        snippet = raw[:200].replace("\n", " ")
        return (
            f"SendGrid {status} with a body that is not the expected JSON error object "
            f'({{"errors": [{{"message": ...}}]}}): {snippet!r}'
        )


@dataclass
class RetryPolicy:
    max_retries: int
    max_rate_wait_s: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    base_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    rng: random.Random | None = None

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        rng = self.rng or random
        cap = min(self.max_backoff_s, self.base_backoff_s * (2**attempt))
        return rng.uniform(cap / 2, cap)

    def rate_wait(self, reset_at: float | None) -> float:
        if reset_at is None:
            return min(self.max_rate_wait_s, 1.0)
        return max(0.0, min(self.max_rate_wait_s, reset_at - self.clock()))


class SendGridTransport:
    """The HTTP calls delivery makes, with errors turned into the classes above."""

    def __init__(self, client: SendGridAPIClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.calls: dict[str, int] = {"mail_send": 0, "mail_batch": 0, "messages": 0, "cancel": 0}

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except http_exc.HTTPError as exc:
            status = int(exc.status_code)
            if status == 429:
                reset = None
                headers = exc.headers or {}
                value = headers.get("X-RateLimit-Reset") if hasattr(headers, "get") else None
                try:
                    reset = float(value) if value is not None else None
                except ValueError:
                    reset = None
                raise RateLimited(reset, error_text(status, exc.body)) from None
            if status >= 500:
                raise ServerError(error_text(status, exc.body)) from None
            raise Rejected(status, error_text(status, exc.body)) from None
        except TimeoutError as exc:
            raise UnknownOutcome(f"no answer from SendGrid within {self.timeout_s:g} s ({exc})") from None
        except urllib.error.URLError as exc:
            raise UnknownOutcome(f"SendGrid unreachable or connection dropped: {exc.reason}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise UnknownOutcome(f"connection to SendGrid failed: {type(exc).__name__}: {exc}") from None

    def create_batch_id(self) -> str:
        self.calls["mail_batch"] += 1
        resp = self._call(lambda: self.client.client.mail.batch.post(timeout=self.timeout_s))
        try:
            batch_id = json.loads(resp.body)["batch_id"]
            if not isinstance(batch_id, str) or not batch_id:
                raise ValueError("empty")
        except (ValueError, KeyError, TypeError):
            raise BadResponse(
                f"POST /v3/mail/batch answered {resp.status_code} without the documented "
                f'{{"batch_id": "..."}} body: {resp.body[:200]!r}'
            ) from None
        return batch_id

    def send(self, body: dict[str, Any]) -> str | None:
        """POST /v3/mail/send; returns SendGrid's X-Message-Id."""
        self.calls["mail_send"] += 1
        resp = self._call(
            lambda: self.client.client.mail.send.post(request_body=body, timeout=self.timeout_s)
        )
        if not 200 <= resp.status_code < 300:
            raise BadResponse(f"POST /v3/mail/send answered {resp.status_code}, expected 202")
        return resp.headers.get("X-Message-Id") if resp.headers else None

    def batch_accepted(self, batch_id: str) -> bool:
        """Does Email Activity show any message of this request?"""
        self.calls["messages"] += 1
        query = f"unique_args['{BATCH_ARG}']=\"{batch_id}\""
        resp = self._call(
            lambda: self.client.client.messages.get(
                query_params={"query": query, "limit": 1}, timeout=self.timeout_s
            )
        )
        try:
            messages = json.loads(resp.body)["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages is not a list")
        except (ValueError, KeyError, TypeError):
            raise BadResponse(
                f"GET /v3/messages answered without the documented {{'messages': [...]}} body: "
                f"{resp.body[:200]!r}"
            ) from None
        return len(messages) > 0

    def cancel_batch(self, batch_id: str) -> None:
        """Cancel a scheduled send (raises :class:`Rejected` when SendGrid refuses, e.g. too late)."""
        self.calls["cancel"] += 1
        self._call(
            lambda: self.client.client.user.scheduled_sends.post(
                request_body={"batch_id": batch_id, "status": "cancel"}, timeout=self.timeout_s
            )
        )


def with_retries(fn: Callable[[], T], policy: RetryPolicy, *, retry_unknown: bool = True) -> T:
    """Call ``fn``; on 429 wait for X-RateLimit-Reset (capped), on 5xx (and timeouts when
    ``retry_unknown``: only for idempotent calls) back off exponentially with jitter."""
    attempt = 0
    while True:
        try:
            return fn()
        except RateLimited as exc:
            if attempt >= policy.max_retries:
                raise
            policy.sleep(policy.rate_wait(exc.reset_at))
        except ServerError:
            if attempt >= policy.max_retries:
                raise
            policy.sleep(policy.backoff(attempt))
        except UnknownOutcome:
            if not retry_unknown or attempt >= policy.max_retries:
                raise
            policy.sleep(policy.backoff(attempt))
        attempt += 1


def send_team_digest(
    to: str, subject: str, markdown: str, *, url: str | None = None, client: Any = None
) -> Any:
    """Email a team digest (the hook team_alerts.py calls): queued in the outbox as a transactional
    ``team_digest`` message keyed by mailbox and subject, then sent exactly once like any other.
    Raises DeliveryError when it could not be delivered."""
    import hashlib
    from datetime import UTC, datetime

    from retention.db import connect
    from retention.outreach.models import PlannedMessage
    from retention.outreach.outbox import DeliveryError, default_planned_on, enqueue, send_batch

    day = default_planned_on()
    team = to.split("@", 1)[0]
    message = PlannedMessage(
        campaign_id="team_digest",
        step="digest",
        customer_id=f"team:{team}",
        email=to,
        template="team_digest",
        category="transactional",
        send_at=datetime.now(UTC),
        batch_key=f"team_digest.{day.isoformat()}",
        priority=0.0,
        cycle=hashlib.sha256(f"{to}\n{subject}".encode()).hexdigest()[:16],
        context={"subject": subject, "markdown": markdown, "team": team},
    )
    with connect(url) as conn:
        enqueue(conn, [message], day)
    result = send_batch(url, message.batch_key, client=client)
    if not result.ok:
        raise DeliveryError(f"team digest to {to} not delivered: {result.summary()}; {result.errors}")
    return result
