"""Delivery: outbox, templates, exactly-once sending through a fake SendGrid, file outbox."""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import SHARED_SPECS
from fake_sendgrid import SPEC_FILE, FakeSendGrid, MailSendValidator

from retention.outreach import outbox, render
from retention.outreach.models import PlannedMessage
from retention.outreach.outbox import (
    DeliveryBusy,
    enqueue,
    send_batch,
)
from retention.outreach.render import RenderError
from retention.outreach.sendgrid_client import SendGridTransport, error_text

DAY = date(2026, 11, 23)
BATCH = "renewal_sequence.t-7.0000"


def _msg(i: int, *, template: str = "renewal_reminder", category: str = "marketing", send_at: datetime | None = None,
         batch_key: str = BATCH, campaign: str = "renewal_sequence", step: str = "t-7", email: str | None = None,
         context: dict | None = None) -> PlannedMessage:  # fmt: skip
    return PlannedMessage(
        campaign_id=campaign,
        step=step,
        customer_id=f"C{i:05d}",
        email=email or f"customer{i}@example.com",
        template=template,
        category=category,  # type: ignore[arg-type]
        send_at=send_at or datetime.now(UTC) - timedelta(minutes=1),
        batch_key=batch_key,
        priority=1.0,
        cycle="2026-11-30",
        context=context
        if context is not None
        else {
            "plan": f"Plan <{i % 3}>",
            "price": 10 + i % 4,
            "renewal_date": "2026-11-30",
            "subscription_id": f"S{i}",
        },
    )


def _enqueue(url: str, messages: list[PlannedMessage]) -> int:
    with psycopg.connect(url) as conn:
        n = enqueue(conn, messages, DAY)
        conn.commit()
    return n


def _states(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select outbox_key, state from ops.outbox").fetchall())


def _rows(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return {r["outbox_key"]: r for r in cur.execute("select * from ops.outbox").fetchall()}


@pytest.fixture
def sg():
    # a scripted timeout answers after 2 s against the client's 1 s; a normal answer gets the
    # whole second, so a machine loaded by the background DAG runs cannot turn it into a timeout
    with FakeSendGrid(slow_s=2.0) as fake:
        yield fake


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, use_db: str) -> list[float]:
    """Small timeouts and a recorded, instant sleep."""
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_TIMEOUT_S", "1")
    get_settings.cache_clear()
    return []


def _send(url: str, sg: FakeSendGrid, sleeps: list[float], **kw: object) -> outbox.BatchResult:
    kw.setdefault("reconcile_grace_s", 0)
    return send_batch(url, BATCH, client=sg.client(), sleep=sleeps.append, **kw)  # type: ignore[arg-type]


# --- spec ---------------------------------------------------------------------------------------


def test_spec_is_loaded_from_shared_specs_relative_to_repo_root() -> None:
    assert SPEC_FILE == SHARED_SPECS / "sendgrid-mail-v3.openapi.json"
    v = MailSendValidator()
    assert v.errors({"personalizations": [{"to": [{"email": "nope"}]}], "from": {"email": "a@b.co"}})


# --- enqueue -------------------------------------------------------------------------------------


def test_enqueue_inserts_pending_rows_and_never_a_key_twice(use_db: str) -> None:
    msgs = [_msg(i) for i in range(3)]
    assert _enqueue(use_db, msgs) == 3
    assert _enqueue(use_db, [*msgs, _msg(3)]) == 1
    with psycopg.connect(use_db) as conn:
        conn.execute("update ops.outbox set state = 'sent' where outbox_key = %s", (msgs[0].key,))
        conn.commit()
    assert _enqueue(use_db, msgs) == 0
    states = _states(use_db)
    assert states[msgs[0].key] == "sent" and states[msgs[1].key] == "pending" and len(states) == 4
    row = _rows(use_db)[msgs[1].key]
    assert row["planned_on"] == DAY and row["context"]["renewal_date"] == "2026-11-30"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"template": "no_such_template"}, "no template 'no_such_template'"),
        ({"category": "spam"}, "category 'spam'"),
        ({"send_at": datetime(2026, 11, 23, 9)}, "timezone-aware"),
        ({"email": " "}, "empty recipient address"),
        ({"context": {"x": object()}}, "not JSON-serialisable"),
    ],
)
def test_enqueue_bad_message_writes_nothing(use_db: str, bad: dict, message: str) -> None:
    good = _msg(1)
    base = {k: getattr(good, k) for k in good.__dataclass_fields__}
    broken = PlannedMessage(**{**base, "customer_id": "C99999", **bad})
    with pytest.raises(ValueError, match=message):
        _enqueue(use_db, [good, broken])
    with psycopg.connect(use_db) as conn:
        if conn.execute("select to_regclass('ops.outbox')").fetchone()[0] is not None:
            assert conn.execute("select count(*) from ops.outbox").fetchone()[0] == 0


# --- sending -------------------------------------------------------------------------------------


def _simulate_sendgrid(body: dict, personalization: dict) -> tuple[str, str, str]:
    subs = personalization.get("substitutions", {})
    content = {c["type"]: c["value"] for c in body["content"]}
    return (
        render.apply_substitutions(personalization.get("subject", body["subject"]), subs),
        render.apply_substitutions(content["text/plain"], subs),
        render.apply_substitutions(content["text/html"], subs),
    )


def test_batches_personalizations_into_few_valid_requests(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_BATCH", "10")
    get_settings.cache_clear()
    msgs = [_msg(i) for i in range(25)]
    _enqueue(use_db, msgs)
    result = _send(use_db, sg, fast)
    assert result.ok and result.sent == 25
    assert len(sg.mail_sends()) == 3 == result.accepted_requests  # 10 + 10 + 5, not 25
    assert sg.invalid == []
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}
    assert set(_states(use_db).values()) == {"sent"}
    s = get_settings()
    by_key = {m.key: m for m in msgs}
    for acc in sg.delivered():
        m = by_key[acc.outbox_key]
        # custom_args: our key and request id, never personal data
        assert acc.personalization["custom_args"] == {"outbox_key": m.key, "retention_batch": acc.batch_id}
        assert m.email not in json.dumps(acc.personalization["custom_args"])
        assert m.customer_id not in json.dumps(acc.personalization["custom_args"])
        # what SendGrid makes of skeleton + substitutions is exactly our rendering of the message
        ctx = render.full_context(
            m.context, outbox_key=m.key, category=m.category, offer_code=None, sender_name=s.sender_name,
            unsubscribe_base=s.unsubscribe_url, account_url=s.account_url,
        )  # fmt: skip
        want = render.render(m.template, ctx)
        assert _simulate_sendgrid(acc.body, acc.personalization) == (want.subject, want.text, want.html)
        assert "&lt;" in want.html and "<" in want.subject  # HTML escaped, subject/text not


def test_unsubscribe_headers_on_marketing_only(fast: list[float], use_db: str, sg: FakeSendGrid) -> None:
    marketing = _msg(1)
    transactional = _msg(2, template="dunning_update_card", category="transactional", campaign="dunning",
                         step="dunning-1", context={"failed_since": "2026-11-20"})  # fmt: skip
    _enqueue(use_db, [marketing, transactional])
    assert _send(use_db, sg, fast).sent == 2
    by_key = {a.outbox_key: a for a in sg.delivered()}
    headers = by_key[marketing.key].personalization["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<mailto:unsubscribe@example.com?subject=")
    assert "<https://example.com/unsubscribe/renewal_sequence%3At-7%3A" in headers["List-Unsubscribe"]
    assert "headers" not in by_key[transactional.key].personalization
    assert sg.invalid == []


def test_send_at_respected_and_beyond_72h_deferred(fast: list[float], use_db: str, sg: FakeSendGrid) -> None:
    now = datetime.now(UTC)
    later = _msg(1, send_at=now + timedelta(hours=3))
    too_late = _msg(2, send_at=now + timedelta(hours=80))
    immediate = _msg(3)
    _enqueue(use_db, [later, too_late, immediate])
    result = _send(use_db, sg, fast)
    assert result.sent == 2 and result.deferred == 1
    by_key = {a.outbox_key: a for a in sg.delivered()}
    assert by_key[later.key].send_at == int(later.send_at.timestamp())
    assert "send_at" not in by_key[immediate.key].personalization
    assert too_late.key not in by_key and _states(use_db)[too_late.key] == "pending"


def test_suppression_after_planning_receives_nothing(
    fast: list[float], use_db: str, sg: FakeSendGrid
) -> None:
    msgs = [_msg(i) for i in range(4)]
    _enqueue(use_db, msgs)
    with psycopg.connect(use_db) as conn:
        conn.execute(
            "insert into ops.suppressions (email, reason, source) values (%s, 'unsubscribed', 'test')",
            (msgs[1].email.upper(),),
        )
        conn.commit()
    result = _send(use_db, sg, fast)
    assert result.sent == 3 and result.cancelled == 1
    assert msgs[1].email not in {a.email for a in sg.accepted}
    row = _rows(use_db)[msgs[1].key]
    assert row["state"] == "cancelled" and row["last_error"].startswith("suppressed:unsubscribed")


def test_unsubscribed_still_get_transactional_but_bounced_get_nothing(
    fast: list[float], use_db: str, sg: FakeSendGrid
) -> None:
    def dunning(i: int, email: str) -> PlannedMessage:
        return _msg(i, template="dunning_update_card", category="transactional", campaign="dunning",
                    step="dunning-1", email=email, context={"failed_since": "2026-11-20"})  # fmt: skip

    unsub, bounced = dunning(1, "unsub@example.com"), dunning(2, "dead@example.com")
    marketing = _msg(3, email="unsub@example.com")
    _enqueue(use_db, [unsub, bounced, marketing])
    with psycopg.connect(use_db) as conn:
        conn.execute(
            "insert into ops.suppressions (email, reason, source) values "
            "('unsub@example.com', 'unsubscribed', 'test'), ('dead@example.com', 'bounced', 'test')"
        )
        conn.commit()
    result = _send(use_db, sg, fast)
    assert result.sent == 1 and result.cancelled == 2
    assert sg.delivered_keys() == {unsub.key: 1}
    rows = _rows(use_db)
    assert rows[bounced.key]["last_error"].startswith("suppressed:bounced")
    assert rows[marketing.key]["last_error"].startswith("suppressed:unsubscribed")


def test_invalid_address_fails_alone(fast: list[float], use_db: str, sg: FakeSendGrid) -> None:
    good, bad = _msg(1), _msg(2, email="not-an-address")
    _enqueue(use_db, [good, bad])
    result = _send(use_db, sg, fast)
    assert result.sent == 1 and result.failed == 1
    assert _rows(use_db)[bad.key]["last_error"] == "recipient address is not an e-mail address"
    assert sg.invalid == []


# --- exactly once under faults ---------------------------------------------------------------------


def _crash_once(monkeypatch: pytest.MonkeyPatch, name: str = "_mark_sent") -> None:
    real = getattr(outbox, name)
    calls = {"n": 0}

    def crashing(*args: object, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated crash after SendGrid accepted, before the commit")
        return real(*args, **kw)

    monkeypatch.setattr(outbox, name, crashing)


def test_crash_after_accept_then_rerun_sends_each_message_once(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(i) for i in range(5)]
    _enqueue(use_db, msgs)
    _crash_once(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _send(use_db, sg, fast)
    assert set(_states(use_db).values()) == {"sending"}
    assert len(sg.accepted) == 5  # SendGrid has them
    result = _send(use_db, sg, fast)
    assert result.reconciled_sent == 5 and result.ok
    assert len(sg.mail_sends()) == 1  # no resend
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}
    assert set(_states(use_db).values()) == {"sent"}


def test_crash_before_the_request_is_resent_after_the_grace_period(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [_msg(i) for i in range(3)]
    _enqueue(use_db, msgs)
    real = SendGridTransport.send
    calls = {"n": 0}

    def dies_before_http(self: SendGridTransport, body: dict) -> str | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated crash before the HTTP call")
        return real(self, body)

    monkeypatch.setattr(SendGridTransport, "send", dies_before_http)
    with pytest.raises(RuntimeError):
        _send(use_db, sg, fast)
    # within the grace period nobody can tell: nothing is resent, the rows stay 'sending'
    waiting = _send(use_db, sg, fast, reconcile_grace_s=3600)
    assert waiting.unresolved == 3 and not waiting.ok and sg.accepted == []
    # after it, Email Activity's silence is proof: resent once
    result = _send(use_db, sg, fast)
    assert result.reconciled_resent == 3 and result.sent == 3
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}


def test_crash_on_scheduled_request_cancels_batch_and_resends(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    msgs = [_msg(i, send_at=later) for i in range(3)]
    _enqueue(use_db, msgs)
    _crash_once(monkeypatch)
    with pytest.raises(RuntimeError):
        _send(use_db, sg, fast)
    # Email Activity does not know scheduled messages yet: cancel the batch, then resend
    monkeypatch.setattr(SendGridTransport, "batch_accepted", lambda self, batch_id: False)
    result = _send(use_db, sg, fast, reconcile_grace_s=3600)
    assert result.reconciled_resent == 3 and result.sent == 3
    assert len(sg.state.cancelled) == 1 and len(sg.accepted) == 6
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}


def test_429_storm_waits_for_rate_limit_reset(fast: list[float], use_db: str, sg: FakeSendGrid) -> None:
    msgs = [_msg(i) for i in range(4)]
    _enqueue(use_db, msgs)
    sg.script("429", "429", "429", "429")
    result = _send(use_db, sg, fast)
    assert result.ok and result.sent == 4
    assert len(fast) == 4 and all(0 < w <= 3 for w in fast)  # waited for X-RateLimit-Reset (now + 2 s)
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}


def test_rate_limit_wait_is_capped(fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_MAX_RATE_WAIT_S", "0.5")
    get_settings.cache_clear()
    _enqueue(use_db, [_msg(1)])
    sg.script("429")
    assert _send(use_db, sg, fast).ok
    assert fast == [0.5]


def test_5xx_and_timeouts_deliver_every_message_once(fast: list[float], use_db: str, sg: FakeSendGrid,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_BATCH", "3")
    get_settings.cache_clear()
    msgs = [_msg(i) for i in range(9)]
    _enqueue(use_db, msgs)
    # request 1: 500 then accepted; request 2: times out unanswered, then 500, then accepted;
    # request 3: accepted but the answer times out (the client cannot know) -> reconciled, not resent
    sg.script("500", None, "timeout", "500", None, "accept_then_timeout")
    result = _send(use_db, sg, fast)
    assert result.ok, result.errors
    assert result.sent == 9
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}
    assert set(_states(use_db).values()) == {"sent"}
    assert sg.invalid == []


def test_retries_exhausted_leave_rows_pending_for_the_next_run(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_SENDGRID_MAX_RETRIES", "2")
    get_settings.cache_clear()
    msgs = [_msg(i) for i in range(2)]
    _enqueue(use_db, msgs)
    sg.script("500", "500", "500")
    result = _send(use_db, sg, fast)
    assert not result.ok and result.retry_later == 2 and sg.accepted == []
    assert set(_states(use_db).values()) == {"pending"}
    assert "not accepted after 2 retries" in _rows(use_db)[msgs[0].key]["last_error"]
    assert _send(use_db, sg, fast).sent == 2
    assert sg.delivered_keys() == {m.key: 1 for m in msgs}


def test_4xx_marks_the_request_failed_with_sendgrid_error_text(
    fast: list[float], use_db: str, sg: FakeSendGrid
) -> None:
    msgs = [_msg(i) for i in range(2)]
    _enqueue(use_db, msgs)
    sg.script(("400", "The to email does not contain a valid address."))
    result = _send(use_db, sg, fast)
    assert result.failed == 2 and not result.ok
    rows = _rows(use_db)
    for m in msgs:
        assert rows[m.key]["state"] == "failed"
        assert "The to email does not contain a valid address." in rows[m.key]["last_error"]
    with pytest.raises(outbox.DeliveryError, match="The to email does not contain a valid address"):
        result.raise_for_incomplete()
    assert _send(use_db, sg, fast).sent == 0  # failed is final: never sent behind our back


def test_4xx_with_a_body_that_is_not_json_is_a_clear_error(
    fast: list[float], use_db: str, sg: FakeSendGrid
) -> None:
    _enqueue(use_db, [_msg(1)])
    sg.script("400_not_json")
    result = _send(use_db, sg, fast)
    assert result.failed == 1
    assert "not the expected JSON error object" in next(iter(_rows(use_db).values()))["last_error"]


def test_error_text_reads_sendgrid_errors() -> None:
    body = b'{"errors": [{"message": "bad from", "field": "from.email"}, {"message": "x", "field": null}]}'
    assert error_text(400, body) == "SendGrid 400: from.email: bad from; x"
    assert "not the expected JSON" in error_text(400, b'{"errors": "nope"}')


def test_second_sender_of_the_same_batch_is_refused(fast: list[float], use_db: str, sg: FakeSendGrid) -> None:
    _enqueue(use_db, [_msg(1)])
    with psycopg.connect(use_db, autocommit=True) as other:
        other.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (f"retention.outbox:{BATCH}",))
        with pytest.raises(DeliveryBusy, match="another process"):
            _send(use_db, sg, fast)
    assert _send(use_db, sg, fast).sent == 1


# --- templates ------------------------------------------------------------------------------------


@pytest.fixture
def evil_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES_DIR, folder)
    (folder / "evil.subject").write_text("Hello")
    (folder / "evil.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    (folder / "evil.html").write_text("<p>hi</p>")
    (folder / "broken.subject").write_text("{% if %}")
    (folder / "broken.txt").write_text("x")
    (folder / "broken.html").write_text("x")
    # templates that defeat naive skeletons: value-dependent branches, filters, inspecting the link
    (folder / "branchy.subject").write_text("Hi {{ plan }}{% if price > 20 %} (premium){% endif %}")
    (folder / "branchy.txt").write_text("{{ plan | upper }} {{ price | money }} {{ unsubscribe_url }}")
    (folder / "branchy.html").write_text(
        '{% if plan == "pro" %}PRO{% else %}{{ plan }}{% endif %} <a href="{{ unsubscribe_url }}">u</a>'
    )
    (folder / "linky.subject").write_text("Link")
    (folder / "linky.txt").write_text(
        '{% if unsubscribe_url.endswith("7") %}seven {% endif %}{{ unsubscribe_url }}'
    )
    (folder / "linky.html").write_text("<a href='{{ unsubscribe_url }}'>{{ plan }}</a>")
    monkeypatch.setattr(render, "TEMPLATES_DIR", folder)
    return folder


@pytest.mark.parametrize("name", ["branchy", "linky", "renewal_reminder"])
def test_shared_renders_and_skeletons_reproduce_every_message(evil_templates: Path, name: str) -> None:
    cache = render.SkeletonCache(evil_templates)
    groups = set()
    for i in range(40):
        ctx = render.full_context(
            {"plan": ("pro", "basic", "A&B <x>")[i % 3], "price": (9.5, 29, 30.0)[i % 3], "renewal_date": "2026-12-01"},
            outbox_key=f"c:s:{i:016d}", category="marketing", offer_code=None, sender_name="Care",
            unsubscribe_base="https://x.test/u", account_url="https://x.test/a",
        )  # fmt: skip
        prepared = render.prepare(name, ctx, cache)
        want = render.render(name, ctx, templates_dir=evil_templates)
        got = tuple(render.apply_substitutions(p, prepared.substitutions) for p in prepared.group)
        assert got == (want.subject, want.text, want.html), i
        groups.add(prepared.group)
    if name != "linky":  # the link inspected by the template: no sharing, still correct
        assert len(groups) <= 3  # 40 messages with their own links share at most one content per plan


def test_template_reaching_python_internals_is_refused_and_nothing_sent(
    fast: list[float], use_db: str, sg: FakeSendGrid, evil_templates: Path
) -> None:
    good = [_msg(i) for i in range(3)]
    evil = [_msg(10 + i, template="evil", context={}) for i in range(2)]
    _enqueue(use_db, good + evil)
    with pytest.raises(RenderError, match=r"template 'evil' \(evil.txt\).*SecurityError"):
        _send(use_db, sg, fast)
    assert sg.mail_sends() == [] and sg.accepted == []
    rows = _rows(use_db)
    assert {r["state"] for r in rows.values()} == {"pending"}
    assert "SecurityError" in rows[evil[0].key]["last_error"]


def test_template_errors_name_the_template(evil_templates: Path) -> None:
    with pytest.raises(RenderError, match=r"template 'broken' \(broken.subject\)"):
        render.render("broken", {}, templates_dir=evil_templates)
    with pytest.raises(RenderError, match=r"template 'renewal_t_minus_7'.*renewal_date.*undefined"):
        render.render("renewal_t_minus_7", {"sender_name": "x", "category": "transactional"})
    with pytest.raises(RenderError, match=r"template 'nope': file 'nope.subject' not found"):
        render.render("nope", {})


PLANNER_CONTEXT = {
    "campaign_id": "c", "step": "s", "subscription_id": "S1", "plan": "Pro", "price": 29.0,
    "renewal_date": "2026-12-01", "reason_category": "price", "risk_tier": "high",
    "failed_since": "2026-11-01", "lapsed_days": 90, "error_code": "E42",
}  # fmt: skip


@pytest.mark.parametrize("name", [*render.TEMPLATE_NAMES, *render.TEMPLATE_ALIASES, *render.EXTRA_TEMPLATES])
def test_every_template_renders_with_the_planners_context(name: str) -> None:
    extra = {"team": "billing", "digest_date": "2026-11-23", "customers": []} if name == "team_digest" else {}
    ctx = render.full_context(
        {**PLANNER_CONTEXT, **extra, "offer_code": "SAVE-20"}, outbox_key="c:s:0123456789abcdef",
        category="marketing", offer_code="SAVE-20", sender_name="Care", unsubscribe_base="https://x.test/u",
        account_url="https://x.test/account",
    )  # fmt: skip
    out = render.render(name, ctx)
    assert out.subject and out.text.strip() and out.html.lstrip().startswith("<!DOCTYPE html>")
    assert "https://x.test/u/c%3As%3A0123456789abcdef" in out.text  # marketing footer link
    # the substitution skeleton reproduces the rendering exactly
    prepared = render.prepare(name, ctx, render.SkeletonCache())
    subs = prepared.substitutions
    assert tuple(render.apply_substitutions(p, subs) for p in prepared.group) == (
        out.subject,
        out.text,
        out.html,
    )
    header = (render.TEMPLATES_DIR / f"{name}.html").read_text().lstrip()
    assert header.startswith("{#")  # documents its variables


def test_team_digest_markdown_is_escaped_in_html() -> None:
    ctx = {
        "markdown": "# Team\n- C1 <b>value</b>",
        "subject": "Digest",
        "sender_name": "x",
        "category": "transactional",
    }
    out = render.render("team_digest", ctx)
    assert out.subject == "Digest" and "&lt;b&gt;" in out.html and "<b>value</b>" in out.text


def test_preview_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        render.preview_main(
            ["renewal_reminder", "--context", '{"renewal_date": "2026-12-01", "plan": "Pro"}']
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Subject: Your Pro renews on 2026-12-01" in out and "text/html" in out
    assert render.preview_main(["renewal_reminder", "--context", "{nope"]) == 2
    assert render.preview_main(["renewal_reminder"]) == 1  # renewal_date missing
    assert "renewal_date" in capsys.readouterr().err


# --- file outbox --------------------------------------------------------------------------------------


def test_file_outbox_without_api_key(use_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SENDGRID_API_KEY", "")
    get_settings.cache_clear()
    msgs = [_msg(i) for i in range(3)]
    _enqueue(use_db, msgs)
    _crash_once(monkeypatch)
    with pytest.raises(RuntimeError):
        send_batch(use_db, BATCH)
    result = send_batch(use_db, BATCH)
    assert result.mode == "file" and result.reconciled_sent == 3 and result.requests == 0
    files = sorted((tmp_path / "outbox" / DAY.isoformat()).iterdir())
    assert [f.name for f in files] == ["renewal_sequence.t-7.0000-1.json"]  # written once, atomically
    body = json.loads(files[0].read_text())
    assert MailSendValidator().errors(body) == []
    assert {p["custom_args"]["outbox_key"] for p in body["personalizations"]} == {m.key for m in msgs}
    assert set(_states(use_db).values()) == {"sent"}
    _enqueue(use_db, [_msg(7)])
    assert outbox.send_main([BATCH]) == 0
    assert len(list((tmp_path / "outbox" / DAY.isoformat()).glob("*.json"))) == 2


def test_team_digest_hook_goes_through_the_outbox(use_db: str, tmp_path: Path, monkeypatch) -> None:
    from retention.outreach.sendgrid_client import send_team_digest
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("RETENTION_AS_OF", DAY.isoformat())
    get_settings.cache_clear()
    result = send_team_digest("billing-team@example.com", "High-value customers at risk", "# billing\n- C1")
    assert result.sent == 1
    again = send_team_digest("billing-team@example.com", "High-value customers at risk", "# billing\n- C1")
    assert again.sent == 0  # same mailbox and subject: never twice
    body = json.loads(next((tmp_path / "outbox" / DAY.isoformat()).glob("*.json")).read_text())
    assert "headers" not in body["personalizations"][0]
    subject, text, _ = _simulate_sendgrid(body, body["personalizations"][0])
    assert subject == "High-value customers at risk" and "# billing\n- C1" in text


class _StubHttp:
    """Stands in for python_http_client's fluent client: every call answers ``response``."""

    def __init__(self, response: object) -> None:
        self._response = response

    def __getattr__(self, name: str) -> object:
        if name in {"get", "post"}:
            return lambda **kw: self._response
        return self


def test_answers_that_are_not_the_documented_json_are_clear_errors() -> None:
    from types import SimpleNamespace

    from retention.outreach.sendgrid_client import BadResponse

    html = SimpleNamespace(status_code=201, body=b"<html>maintenance</html>", headers={})
    transport = SendGridTransport(SimpleNamespace(client=_StubHttp(html)), 1.0)
    with pytest.raises(BadResponse, match=r"POST /v3/mail/batch answered 201 without the documented"):
        transport.create_batch_id()
    with pytest.raises(BadResponse, match=r"GET /v3/messages answered without the documented"):
        transport.batch_accepted("b1")


def test_team_digest_from_team_alerts_is_sent_through_the_outbox(
    use_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decimal import Decimal

    from retention.outreach.team_alerts import digest_message
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    customers = [
        {"customer_id": "C1", "customer_value": Decimal("5400.50"), "churn_probability": 0.71,
         "reason_category": None, "reason_codes": [{"feature": "usage_trend_pct", "text": "usage fell by half"}]},
        {"customer_id": "C2", "customer_value": 1200.0, "churn_probability": None,
         "reason_category": "price", "reason_codes": []},
    ]  # fmt: skip
    message = digest_message("billing", "billing-team@example.com", DAY, customers)
    _enqueue(use_db, [message])
    result = send_batch(use_db, message.batch_key)
    assert result.ok and result.sent == 1
    body = json.loads(next((tmp_path / "outbox" / DAY.isoformat()).glob("*.json")).read_text())
    subject, text, html = _simulate_sendgrid(body, body["personalizations"][0])
    assert "2 high-value customers at risk for billing" in subject
    assert "- C1: value 5400, risk 71%: usage fell by half" in text and "None" not in text
    assert "price: " in html and "headers" not in body["personalizations"][0]


# --- enqueue_frame (the planner's vectorised path) ---------------------------------------------


def _frame(msgs: list[PlannedMessage]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "outbox_key": [m.key for m in msgs],
            "campaign_id": [m.campaign_id for m in msgs],
            "step": [m.step for m in msgs],
            "cycle": [m.cycle for m in msgs],
            "customer_id": [m.customer_id for m in msgs],
            "email": [m.email for m in msgs],
            "template": [m.template for m in msgs],
            "category": [m.category for m in msgs],
            "batch_key": [m.batch_key for m in msgs],
            "priority": [m.priority for m in msgs],
            "offer_code": [m.offer_code for m in msgs],
            "offer_cost": [m.offer_cost for m in msgs],
            "context": [json.dumps(m.context) for m in msgs],
            "send_at": [m.send_at for m in msgs],
        }
    )


def test_enqueue_frame_writes_the_same_rows_as_enqueue(use_db: str) -> None:
    msgs = [_msg(i) for i in range(3)]
    with psycopg.connect(use_db) as conn:
        assert outbox.enqueue_frame(conn, _frame(msgs), DAY) == 3
        assert outbox.enqueue_frame(conn, _frame([*msgs, _msg(3)]), DAY) == 1
        conn.commit()
    rows = _rows(use_db)
    row = rows[msgs[1].key]
    assert row["state"] == "pending" and row["planned_on"] == DAY and row["cycle"] == "2026-11-30"
    assert row["context"] == msgs[1].context and row["offer_code"] is None
    assert row["send_at"] == msgs[1].send_at.replace(microsecond=row["send_at"].microsecond)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"template": "no_such_template"}, "message 1 .*no template 'no_such_template'"),
        ({"category": "spam"}, "message 1 .*category 'spam'"),
        ({"send_at": datetime(2026, 11, 23, 9)}, "message 1 .*timezone-aware"),
        ({"email": " "}, "message 1 .*empty recipient address"),
        ({"batch_key": ""}, "message 1 .*empty batch_key"),
    ],
)
def test_enqueue_frame_bad_row_writes_nothing(use_db: str, bad: dict, message: str) -> None:
    good = _msg(1)
    base = {k: getattr(good, k) for k in good.__dataclass_fields__}
    frame = _frame([_msg(0), PlannedMessage(**{**base, **bad})])
    with psycopg.connect(use_db) as conn, pytest.raises(ValueError, match=message):
        outbox.enqueue_frame(conn, frame, DAY)
    with psycopg.connect(use_db) as conn:
        if conn.execute("select to_regclass('ops.outbox')").fetchone()[0] is not None:
            assert conn.execute("select count(*) from ops.outbox").fetchone()[0] == 0


def test_enqueue_frame_names_missing_columns(use_db: str) -> None:
    frame = _frame([_msg(0)]).drop(columns=["context", "template"])
    with (
        psycopg.connect(use_db) as conn,
        pytest.raises(ValueError, match="columns missing: template, context"),
    ):
        outbox.enqueue_frame(conn, frame, DAY)


def test_fake_validates_every_body_in_the_background_when_asked() -> None:
    with pytest.raises(ValueError, match="validate must be"):
        FakeSendGrid(validate="sometimes")
    with FakeSendGrid(validate="background") as fake:
        client = fake.client()
        good = {"personalizations": [{"to": [{"email": "a@example.com"}]}], "from": {"email": "s@example.com"},
                "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}  # fmt: skip
        bad = {**good, "personalizations": [{"to": [{"email": 5}]}]}
        for body in (good, bad):
            assert client.client.mail.send.post(request_body=body).status_code == 202
        report = fake.validation_report()
    assert report.bodies == 2 and report.personalizations == 2
    assert len(report.invalid) == 1 and "5 is not of type 'string'" in report.invalid[0][0]


def test_background_validation_without_the_spec_fails_at_once(tmp_path: Path) -> None:
    """A missing spec is named when the fake is made, in every validating mode (the background
    validator used to die in its process and leave validation_report() waiting for 600 s)."""
    for mode in (True, "background"):
        with pytest.raises(FileNotFoundError, match=r"SendGrid OpenAPI spec not found at .*missing\.json"):
            FakeSendGrid(validate=mode, spec_path=tmp_path / "missing.json")


def test_a_background_validator_that_cannot_start_or_dies_is_reported(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    shutil.copy(SHARED_SPECS / "sendgrid-mail-v3.openapi.json", spec)
    fake = FakeSendGrid(validate="background", spec_path=spec)
    spec.unlink()  # read by the fake, gone before its validator process starts
    with fake, pytest.raises(RuntimeError, match=r"could not start: FileNotFoundError: .*spec\.json"):
        fake.validation_report(timeout_s=60)
    with FakeSendGrid(validate="background") as fake:
        fake._worker.terminate()
        fake._worker.join(10)
        started = time.perf_counter()
        with pytest.raises(RuntimeError, match=r"background validator exited \(code -15\) without a report"):
            fake.validation_report(timeout_s=600)
        assert time.perf_counter() - started < 30


def test_asm_group_on_marketing_and_unsubscribe_bypass_on_transactional(
    fast: list[float], use_db: str, sg: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retention.settings import get_settings

    marketing = _msg(1)
    transactional = _msg(2, template="dunning_update_card", category="transactional", campaign="dunning",
                         step="dunning-1", context={"failed_since": "2026-11-20"})  # fmt: skip
    _enqueue(use_db, [marketing, transactional])
    monkeypatch.setenv("RETENTION_SENDGRID_ASM_GROUP", "4242")
    get_settings.cache_clear()
    assert _send(use_db, sg, fast).sent == 2
    by_key = {a.outbox_key: a.body for a in sg.delivered()}
    assert by_key[marketing.key]["asm"] == {"group_id": 4242} and "mail_settings" not in by_key[marketing.key]
    assert by_key[transactional.key]["mail_settings"] == {"bypass_unsubscribe_management": {"enable": True}}
    assert "asm" not in by_key[transactional.key]
    assert sg.invalid == []  # both bodies validate against PostMailSend


@pytest.mark.parametrize(
    ("value", "message"), [("-3", "must be a SendGrid unsubscribe group id"), ("x", "ASM")]
)
def test_bad_asm_group_is_a_clear_error(
    fast: list[float],
    use_db: str,
    sg: FakeSendGrid,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    message: str,
) -> None:
    from retention.settings import SettingsError, get_settings

    _enqueue(use_db, [_msg(1)])
    monkeypatch.setenv("RETENTION_SENDGRID_ASM_GROUP", value)
    get_settings.cache_clear()
    with pytest.raises((outbox.DeliveryError, SettingsError), match=message):
        _send(use_db, sg, fast)
    assert _states(use_db) == {_msg(1).key: "pending"}
    assert sg.mail_sends() == []
