"""Operational alerts, reusable by every part of the pipeline.

:func:`send_alert` always writes the alert to the state folder (``<state_dir>/alerts/``: one JSON
file for machines and one Markdown file for people, same stem) and, when
``RETENTION_ALERT_WEBHOOK_URL`` is set, also POSTs a Slack-compatible ``{"text": ...}`` body to it.
A webhook that is down never hides the alert: the files are written first, the delivery error is
logged and returned in :class:`AlertRecord`, and nothing is raised (the caller is usually about to
raise its own, more important error).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from retention.settings import get_settings

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning", "info"]
_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
WEBHOOK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AlertRecord:
    """Where an alert went: the files written and whether the webhook accepted it."""

    json_path: Path
    markdown_path: Path
    webhook_delivered: bool | None  # None: no webhook configured
    webhook_error: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def alerts_dir() -> Path:
    return Path(get_settings().state_dir) / "alerts"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "alert"


def render_text(title: str, lines: list[str], severity: Severity, link: str | None = None) -> str:
    """The Slack ``text`` (mrkdwn): a bold title, then one bullet per line, then the link."""
    out = [f"{_EMOJI.get(severity, '')} *{title}*".strip()]
    out += [f"• {line}" for line in lines]
    if link:
        out.append(f"Details: {link}")
    return "\n".join(out)


def post_webhook(url: str, payload: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_S) -> None:
    """POST JSON to a Slack-compatible incoming webhook; raises on a non-2xx answer or network error."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = response.status
    if not 200 <= status < 300:
        raise OSError(f"webhook answered HTTP {status}")


def send_alert(
    title: str,
    lines: list[str],
    *,
    severity: Severity = "critical",
    source: str = "pipeline",
    details: dict[str, Any] | None = None,
    link: str | None = None,
    webhook_url: str | None = None,
    directory: Path | None = None,
) -> AlertRecord:
    """Record an alert in ``<state_dir>/alerts`` and post it to the webhook when one is configured.

    ``lines`` are the human-readable findings (one per failing check); ``details`` is any extra
    JSON-serialisable context kept in the JSON file only; ``link`` (e.g. the Data Docs index) is
    added to both.
    """
    created = datetime.now(UTC)
    target = directory or alerts_dir()
    target.mkdir(parents=True, exist_ok=True)
    stem = f"{created:%Y%m%dT%H%M%S%fZ}-{_slug(source)}-{severity}"
    text = render_text(title, lines, severity, link)
    payload = {"text": text}
    record = {
        "created_at": created.isoformat(),
        "source": source,
        "severity": severity,
        "title": title,
        "lines": lines,
        "link": link,
        "details": details or {},
    }
    json_path = target / f"{stem}.json"
    md_path = target / f"{stem}.md"
    md = [
        f"# {title}",
        "",
        f"- severity: **{severity}**",
        f"- source: `{source}`",
        f"- at: {created.isoformat()}",
    ]
    if link:
        md.append(f"- details: {link}")
    md += ["", *[f"- {line}" for line in lines], ""]
    # write-then-rename: a reader never sees half an alert
    for path, content in ((json_path, json.dumps(record, indent=2, default=str)), (md_path, "\n".join(md))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)

    url = get_settings().alert_webhook_url if webhook_url is None else webhook_url
    delivered: bool | None = None
    error: str | None = None
    if url:
        try:
            post_webhook(url, payload)
            delivered = True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            delivered = False
            error = f"{type(exc).__name__}: {exc}"
            log.error("alert webhook failed (%s); the alert is in %s", error, json_path)
    log.log(
        logging.ERROR if severity == "critical" else logging.WARNING,
        "alert [%s] %s (%d finding(s)) -> %s",
        severity,
        title,
        len(lines),
        json_path,
    )
    return AlertRecord(json_path, md_path, delivered, error, payload)
