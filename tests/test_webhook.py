"""SendGrid Event Webhook: signature, staleness, validation, dedupe, suppressions."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_sendgrid import FakeSendGrid

from retention.outreach import webhook
from retention.outreach.models import PlannedMessage
from retention.outreach.outbox import enqueue, send_batch

PATH = webhook.PATH


@pytest.fixture(scope="module")
def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


@pytest.fixture
def client(use_db: str, keypair, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from retention.settings import get_settings

    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", keypair[1])
    get_settings.cache_clear()
    with TestClient(webhook.create_app(use_db)) as c:
        yield c


def signed(private: ec.EllipticCurvePrivateKey, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    sig = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        webhook.SIGNATURE_HEADER: base64.b64encode(sig).decode(),
        webhook.TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
    }


def event(i: int, kind: str = "delivered", email: str = "a@example.com", **extra: object) -> dict:
    return {
        "sg_event_id": f"evt-{i}",
        "event": kind,
        "email": email,
        "timestamp": 1_763_900_000 + i,
        "sg_message_id": f"msg-{i}.filter",
        "outbox_key": "renewal_sequence:t-7:2026-11-30:0123456789abcdef",
        **extra,
    }


def post(client: TestClient, private, events: object, *, ts: int | None = None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(events).encode()
    return client.post(PATH, content=body, headers=signed(private, body, ts))


def counts(url: str) -> tuple[int, dict[str, str]]:
    with psycopg.connect(url) as conn:
        n = 0
        if conn.execute("select to_regclass('raw.email_events')").fetchone()[0]:
            n = conn.execute("select count(*) from raw.email_events").fetchone()[0]
        sup = {}
        if conn.execute("select to_regclass('ops.suppressions')").fetchone()[0]:
            sup = dict(conn.execute("select email, reason from ops.suppressions").fetchall())
    return n, sup


def test_good_signature_is_accepted_and_suppressions_applied(
    client: TestClient, keypair, use_db: str
) -> None:
    events = [
        event(1, "processed"),
        event(2, "delivered"),
        event(3, "unsubscribe", "Unsub@Example.com"),
        event(4, "bounce", "dead@example.com", reason="550 no such user", type="bounce"),
        event(5, "bounce", "blocked@example.com", type="blocked"),
        event(6, "spamreport", "angry@example.com"),
        event(7, "group_unsubscribe", "group@example.com", asm_group_id=1),
    ]
    resp = post(client, keypair[0], events)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 7, "new": 7, "suppressions": 4}
    n, sup = counts(use_db)
    assert n == 7
    assert sup == {
        "unsub@example.com": "unsubscribed",
        "dead@example.com": "bounced",
        "angry@example.com": "spamreport",
        "group@example.com": "unsubscribed",
    }
    with psycopg.connect(use_db) as conn:
        row = conn.execute(
            "select event, outbox_key, sg_message_id, reason, occurred_at from raw.email_events "
            "where sg_event_id = 'evt-4'"
        ).fetchone()
    assert row[:4] == ("bounce", events[3]["outbox_key"], "msg-4.filter", "550 no such user")
    assert row[4] == datetime.fromtimestamp(1_763_900_004, UTC)


def test_bad_signature_is_rejected_and_nothing_written(client: TestClient, keypair, use_db: str) -> None:
    body = json.dumps([event(1, "unsubscribe")]).encode()
    headers = signed(keypair[0], body)
    tampered = body.replace(b"a@example.com", b"b@example.com")
    assert client.post(PATH, content=tampered, headers=headers).status_code == 403
    other = ec.generate_private_key(ec.SECP256R1())
    resp = client.post(PATH, content=body, headers=signed(other, body))
    assert resp.status_code == 403 and "signature" in resp.json()["error"]
    headers[webhook.SIGNATURE_HEADER] = "not base64!!"
    assert client.post(PATH, content=body, headers=headers).status_code == 403
    assert client.post(PATH, content=body).status_code == 401  # no signature headers at all
    assert counts(use_db) == (0, {})


def test_stale_timestamp_is_rejected(client: TestClient, keypair, use_db: str) -> None:
    old = int(time.time()) - 3600
    resp = post(client, keypair[0], [event(1, "unsubscribe")], ts=old)
    assert resp.status_code == 403 and "stale" in resp.json()["error"]
    future = int(time.time()) + 3600
    assert post(client, keypair[0], [event(1, "unsubscribe")], ts=future).status_code == 403
    assert counts(use_db) == (0, {})


def test_duplicate_events_are_applied_once(client: TestClient, keypair, use_db: str) -> None:
    events = [event(1, "unsubscribe"), event(2, "open"), event(1, "unsubscribe")]  # dup inside, too
    first = post(client, keypair[0], events).json()
    assert first == {"received": 3, "new": 2, "suppressions": 1}
    again = post(client, keypair[0], events[:2]).json()
    assert again == {"received": 2, "new": 0, "suppressions": 0}
    assert counts(use_db) == (2, {"a@example.com": "unsubscribed"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b'{"event": "open"}', "must be a JSON list"),
        (b'["x"]', "event 0 is not an object"),
        (json.dumps([{"event": "open", "email": "a@example.com", "timestamp": 1}]).encode(), "sg_event_id"),
        (json.dumps([event(1), {**event(2), "timestamp": "yesterday"}]).encode(), "event 1: timestamp"),
        (json.dumps([{**event(1), "email": "nobody"}]).encode(), "not an e-mail address"),
        (json.dumps([{**event(1), "event": 5}]).encode(), "field 'event' must be a string"),
    ],
)
def test_bad_payloads_are_400_and_nothing_written(
    client: TestClient, keypair, use_db: str, raw: bytes, message: str
) -> None:
    resp = post(client, keypair[0], None, raw=raw)
    assert resp.status_code == 400
    assert message in resp.json()["error"]
    assert counts(use_db) == (0, {})


def test_without_a_public_key_every_request_is_refused(use_db: str, keypair, monkeypatch) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "")
    get_settings.cache_clear()
    with TestClient(webhook.create_app(use_db)) as c:
        resp = post(c, keypair[0], [event(1)])
    assert resp.status_code == 503 and "SENDGRID_WEBHOOK_PUBLIC_KEY" in resp.json()["error"]
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    get_settings.cache_clear()
    with TestClient(webhook.create_app(use_db)) as c:
        assert post(c, keypair[0], [event(1)]).status_code == 503


def test_pem_public_key_is_accepted(keypair) -> None:
    pem = (
        keypair[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    body = b"[]"
    headers = signed(keypair[0], body)
    key = webhook.load_public_key(pem)
    assert webhook.verify_signature(
        key, headers[webhook.SIGNATURE_HEADER], headers[webhook.TIMESTAMP_HEADER], body
    )


def test_an_unsubscribe_event_makes_the_next_send_skip_the_customer(
    client: TestClient, keypair, use_db: str
) -> None:
    def planned(i: int) -> PlannedMessage:
        return PlannedMessage(
            campaign_id="save_offers", step="discount", customer_id=f"C{i}", email=f"c{i}@example.com",
            template="save_discount", category="marketing", send_at=datetime.now(UTC) - timedelta(minutes=1),
            batch_key="save_offers.price.0000", priority=1.0, offer_code="SAVE-20",
            context={"reason_category": "price"},
        )  # fmt: skip

    msgs = [planned(i) for i in range(3)]
    with psycopg.connect(use_db) as conn:
        enqueue(conn, msgs, date(2026, 11, 23))
        conn.commit()
    resp = post(client, keypair[0], [event(1, "unsubscribe", "C1@example.com", outbox_key=msgs[1].key)])
    assert resp.status_code == 200
    with FakeSendGrid() as sg:
        result = send_batch(use_db, "save_offers.price.0000", client=sg.client(), sleep=lambda s: None)
        assert {a.email for a in sg.accepted} == {"c0@example.com", "c2@example.com"}
        assert sg.invalid == []
    assert result.sent == 2 and result.cancelled == 1


def test_serve_command_parses_and_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        webhook.main(["serve", "--port", "not-a-port"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        webhook.main([])


def test_serve_runs_uvicorn_on_loopback(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root / 'plugins'}:{root}", "SENDGRID_WEBHOOK_PUBLIC_KEY": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.cli", "webhook", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                    assert json.loads(resp.read()) == {"status": "ok"}
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_airflow_plugin_mounts_the_webhook_app() -> None:
    """The Airflow plugin file exposes the same FastAPI app under /retention."""
    import importlib.util

    from retention.settings import PROJECT_ROOT

    path = PROJECT_ROOT / "plugins" / "airflow_plugins" / "retention_webhook.py"
    spec = importlib.util.spec_from_file_location("retention_webhook_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (entry,) = module.RetentionWebhookPlugin.fastapi_apps
    assert entry["url_prefix"] == "/retention"
    assert any(getattr(r, "path", "") == "/sendgrid/events" for r in entry["app"].routes)
