"""A fake SendGrid v3 API on a local threading HTTP server (the ``sendgrid`` client speaks urllib, so
it has to be a real socket). Reusable by tests and the delivery benchmark.

Implements what delivery uses:

* ``POST /v3/mail/batch`` → 201 ``{"batch_id"}``; ``GET /v3/mail/batch/{id}`` → 200 / 400
* ``POST /v3/mail/send`` → 202 with ``X-Message-Id``. Every body is validated against the
  ``PostMailSend`` request schema of ``../shared/specs/sendgrid-mail-v3.openapi.json`` (400 with
  SendGrid-style ``errors`` when invalid, and recorded in :attr:`FakeSendGrid.invalid`), plus the
  rules the schema cannot express (batch id must exist, send_at at most 72 h ahead, bearer key).
* ``GET /v3/messages?query=unique_args['<arg>']="<value>"&limit=N`` (Email Activity)
* ``POST /v3/user/scheduled_sends`` (cancel/pause a batch), ``GET /v3/user/scheduled_sends/{id}``

Faults for ``/v3/mail/send`` are scripted with :meth:`FakeSendGrid.script`, one per request, in
order: ``"429"`` (with ``X-RateLimit-Reset``), ``"500"``, ``"timeout"`` (answers late, message not
accepted), ``"accept_then_timeout"`` (accepts and records, then answers late: the client cannot know),
``("400", message)``, ``"400_not_json"``, ``"401"``.

``validate="background"`` (benchmarks): every Mail Send body is still validated against the schema,
but in a separate process after the ``202`` (real SendGrid answers in milliseconds; the jsonschema
validation of a 1000-personalization body costs ~0.3 s of Python), so the sender's time and the
fake's validation time are measured apart; :meth:`FakeSendGrid.validation_report` waits for every
body and reports the invalid ones. :attr:`FakeState.server_cpu_s` is the CPU time the server's
threads spent answering requests.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SPEC_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "sendgrid-mail-v3.openapi.json"
_SCHEMA_POINTER = "#/components/requestBodies/PostMailSend/content/application~1json/schema"


def load_spec(path: Path = SPEC_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"SendGrid OpenAPI spec not found at {path} (the repo expects ../shared/specs beside it)"
        )
    return json.loads(path.read_text())


class MailSendValidator:
    """jsonschema validator of the PostMailSend request body, $refs resolved in the OpenAPI doc."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        spec = spec or load_spec()
        uri = "urn:sendgrid-mail-v3"
        registry = Registry().with_resource(
            uri, Resource.from_contents(spec, default_specification=DRAFT202012)
        )
        self._validator = Draft202012Validator(
            {"$ref": uri + _SCHEMA_POINTER},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def errors(self, body: Any) -> list[str]:
        out = []
        for err in sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in err.absolute_path) or "(body)"
            out.append(f"{where}: {err.message}")
        return out


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Accepted:
    batch_id: str | None
    outbox_key: str | None
    email: str
    send_at: int | None
    personalization: dict[str, Any]
    body: dict[str, Any]
    message_id: str


@dataclass
class FakeState:
    api_key: str
    validate: bool
    clock: Any = time.time
    requests: list[Recorded] = field(default_factory=list)
    batches: set[str] = field(default_factory=set)
    accepted: list[Accepted] = field(default_factory=list)
    cancelled: dict[str, str] = field(default_factory=dict)
    invalid: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    faults: deque[Any] = field(default_factory=deque)
    slow_s: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    validator: MailSendValidator | None = None
    background: Any = None  # multiprocessing queue of raw Mail Send bodies (validate="background")
    server_cpu_s: float = 0.0  # CPU time of the server threads answering requests


_QUERY = re.compile(r"^unique_args\['(?P<arg>[A-Za-z0-9_]+)'\]=\"(?P<value>[^\"]*)\"$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- helpers
    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        try:
            self.send_response(status)
            ctype = "application/json" if body is not None and not isinstance(body, bytes) else "text/html"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): exactly what a slow SendGrid looks like

    def _error(self, status: int, message: str, field_: str | None = None) -> None:
        self._reply(status, {"errors": [{"message": message, "field": field_, "help": None}]})

    def _read(self) -> tuple[Recorded, Any]:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._raw = raw
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        rec = Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
        with self.server.state.lock:
            self.server.state.requests.append(rec)
        return rec, body

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.server.state.api_key}":
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            return False
        return True

    # --- routes
    def do_POST(self) -> None:
        started = time.thread_time()
        try:
            self._post()
        finally:
            with self.server.state.lock:
                self.server.state.server_cpu_s += time.thread_time() - started

    def do_GET(self) -> None:
        started = time.thread_time()
        try:
            self._get()
        finally:
            with self.server.state.lock:
                self.server.state.server_cpu_s += time.thread_time() - started

    def _post(self) -> None:
        rec, body = self._read()
        if not self._authorised():
            return
        if rec.path == "/v3/mail/batch":
            batch_id = uuid.uuid4().hex
            with self.server.state.lock:
                self.server.state.batches.add(batch_id)
            self._reply(201, {"batch_id": batch_id})
        elif rec.path == "/v3/mail/send":
            self._mail_send(body)
        elif rec.path == "/v3/user/scheduled_sends":
            self._cancel(body)
        else:
            self._error(404, f"no route POST {rec.path}")

    def _get(self) -> None:
        rec, _ = self._read()
        if not self._authorised():
            return
        state = self.server.state
        if m := re.fullmatch(r"/v3/mail/batch/([^/]+)", rec.path):
            if m.group(1) in state.batches:
                self._reply(200, {"batch_id": m.group(1)})
            else:
                self._error(400, "invalid batch id")
        elif rec.path == "/v3/messages":
            query = (rec.query.get("query") or [""])[0]
            limit = int((rec.query.get("limit") or ["10"])[0])
            qm = _QUERY.match(query)
            if not qm:
                self._error(400, f"unsupported query {query!r}")
                return
            arg, value = qm.group("arg"), qm.group("value")
            with state.lock:
                hits = [
                    a
                    for a in state.accepted
                    if str(a.personalization.get("custom_args", {}).get(arg)) == value
                ]
            messages = [
                {
                    "msg_id": a.message_id,
                    "to_email": a.email,
                    "status": "processed",
                    "subject": a.body.get("subject"),
                }
                for a in hits[:limit]
            ]
            self._reply(200, {"messages": messages})
        elif m := re.fullmatch(r"/v3/user/scheduled_sends/([^/]+)", rec.path):
            status = state.cancelled.get(m.group(1))
            if status is None:
                self._error(404, "batch id not found")
            else:
                self._reply(200, [{"batch_id": m.group(1), "status": status}])
        else:
            self._error(404, f"no route GET {rec.path}")

    def _cancel(self, body: Any) -> None:
        state = self.server.state
        if (
            not isinstance(body, dict)
            or body.get("status") not in {"cancel", "pause"}
            or "batch_id" not in body
        ):
            self._error(400, "batch_id and status (cancel|pause) are required")
            return
        batch_id = body["batch_id"]
        now = state.clock()
        with state.lock:
            if batch_id not in state.batches:
                self._error(400, "invalid batch id", "batch_id")
                return
            if len(state.cancelled) >= 10 and batch_id not in state.cancelled:
                self._error(400, "you can't pause or cancel more than 10 batches at one time")
                return
            for a in state.accepted:
                if a.batch_id == batch_id and (a.send_at is None or a.send_at < now + 600):
                    self._error(400, "cannot cancel a send less than 10 minutes before its send_at")
                    return
            state.cancelled[batch_id] = body["status"]
        self._reply(201, {"batch_id": batch_id, "status": body["status"]})

    def _mail_send(self, body: Any) -> None:
        state = self.server.state
        with state.lock:
            fault = state.faults.popleft() if state.faults else None
        if fault == "429":
            reset = int(state.clock()) + 2
            self._reply(
                429,
                {"errors": [{"message": "too many requests", "field": None}]},
                {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            )
            return
        if fault == "500":
            self._error(500, "internal error")
            return
        if fault == "timeout":
            time.sleep(state.slow_s)
            self._error(500, "too late anyway")
            return
        if fault == "401":
            self._error(401, "The provided authorization grant is invalid, expired, or revoked")
            return
        if fault == "400_not_json":
            self._reply(400, b"<html><body>Bad Gateway-ish proxy page</body></html>")
            return
        if isinstance(fault, tuple) and fault[0] == "400":
            self._error(400, fault[1], "personalizations.0.to")
            return
        if not isinstance(body, dict):
            self._error(400, "request body is not a JSON object")
            return
        if state.validate and state.validator is not None:
            errors = state.validator.errors(body)
            if errors:
                with state.lock:
                    state.invalid.append((body, errors))
                self._reply(400, {"errors": [{"message": e, "field": None} for e in errors[:20]]})
                return
        batch_id = body.get("batch_id")
        now = state.clock()
        with state.lock:
            if batch_id is not None and batch_id not in state.batches:
                self._error(400, "invalid batch id", "batch_id")
                return
            for p in body["personalizations"]:
                send_at = p.get("send_at", body.get("send_at"))
                if send_at is not None and send_at > now + 72 * 3600:
                    self._error(400, "send_at cannot be more than 72 hours in the future", "send_at")
                    return
            message_id = uuid.uuid4().hex[:22]
            for p in body["personalizations"]:
                state.accepted.append(
                    Accepted(
                        batch_id=batch_id,
                        outbox_key=(p.get("custom_args") or {}).get("outbox_key"),
                        email=p["to"][0]["email"],
                        send_at=p.get("send_at", body.get("send_at")),
                        personalization=p,
                        body=body,
                        message_id=message_id,
                    )
                )
        if state.background is not None:
            state.background.put(self._raw)
        if fault == "accept_then_timeout":
            time.sleep(state.slow_s)
        self._reply(202, None, {"X-Message-Id": message_id})


@dataclass
class ValidationReport:
    """What the background validator saw: every Mail Send body, validated against PostMailSend."""

    bodies: int = 0
    personalizations: int = 0
    invalid: list[list[str]] = field(default_factory=list)  # errors of each invalid body (first 20)
    cpu_s: float = 0.0  # CPU time of the validator process
    busy_s: float = 0.0  # wall time it spent validating
    waited_s: float = 0.0  # how long validation_report() waited for the last bodies


def _validate_worker(inbox: Any, outbox: Any, spec_path: Path) -> None:
    """Validator process: validates each raw body until ``None``, then sends a ValidationReport
    (or, when it cannot start, the error's text)."""
    try:
        validator = MailSendValidator(load_spec(spec_path))
    except Exception as exc:  # reported to validation_report(), which raises it
        outbox.put(f"{type(exc).__name__}: {exc}")
        return
    report = ValidationReport()
    cpu0 = time.process_time()
    while (raw := inbox.get()) is not None:
        t0 = time.perf_counter()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            report.invalid.append([f"(body): not JSON: {exc}"])
        else:
            report.personalizations += len(body.get("personalizations") or [])
            errors = validator.errors(body)
            if errors:
                report.invalid.append(errors[:20])
        report.bodies += 1
        report.busy_s += time.perf_counter() - t0
    report.cpu_s = time.process_time() - cpu0
    outbox.put(report)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: FakeState


class FakeSendGrid:
    """``with FakeSendGrid() as sg: SendGridAPIClient(sg.api_key, host=sg.url)``"""

    def __init__(
        self,
        *,
        api_key: str = "SG.fake-key",
        validate: bool | str = True,
        slow_s: float = 1.0,
        spec_path: Path = SPEC_FILE,
    ) -> None:
        if validate not in (True, False, "background"):
            raise ValueError(f"validate must be True, False or 'background', got {validate!r}")
        self.state = FakeState(api_key=api_key, validate=validate is True, slow_s=slow_s)
        if validate:
            # read here in every validating mode, so a missing or broken spec fails at once (the
            # background validator re-reads it in its own process)
            spec = load_spec(spec_path)
        if validate is True:
            self.state.validator = MailSendValidator(spec)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._worker: Any = None
        self._results: Any = None
        if validate == "background":
            ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
            self.state.background = ctx.Queue()
            self._results = ctx.Queue()
            self._worker = ctx.Process(
                target=_validate_worker,
                args=(self.state.background, self._results, spec_path),
                daemon=True,
            )

    # lifecycle
    def start(self) -> FakeSendGrid:
        if self._worker is not None:
            self._worker.start()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self.state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._worker is not None and self._worker.is_alive():
            self._worker.terminate()
            self._worker.join(5)

    def validation_report(self, timeout_s: float = 600) -> ValidationReport:
        """``validate="background"``: wait until every accepted Mail Send body is validated."""
        if self._worker is None:
            raise RuntimeError("validation_report() needs FakeSendGrid(validate='background')")
        started = time.perf_counter()
        self.state.background.put(None)
        while True:  # a dead validator never answers: check on it instead of waiting out timeout_s
            try:
                answer = self._results.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._worker.is_alive():
                    raise RuntimeError(
                        f"the background validator exited (code {self._worker.exitcode}) without a report"
                    ) from None
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"no validation report after {timeout_s:.0f} s") from None
        if isinstance(answer, str):
            raise RuntimeError(f"the background validator could not start: {answer}")
        report: ValidationReport = answer
        report.waited_s = time.perf_counter() - started
        self._worker.join(10)
        return report

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_key(self) -> str:
        return self.state.api_key

    def client(self) -> Any:
        from sendgrid import SendGridAPIClient

        return SendGridAPIClient(self.api_key, host=self.url)

    # faults
    def script(self, *faults: Any) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    # inspection
    @property
    def requests(self) -> list[Recorded]:
        return list(self.state.requests)

    def mail_sends(self) -> list[Recorded]:
        return [r for r in self.state.requests if r.path == "/v3/mail/send"]

    @property
    def invalid(self) -> list[tuple[dict[str, Any], list[str]]]:
        return list(self.state.invalid)

    @property
    def accepted(self) -> list[Accepted]:
        return list(self.state.accepted)

    def delivered(self) -> list[Accepted]:
        """Accepted messages that will actually go out (their batch was not cancelled)."""
        return [a for a in self.state.accepted if a.batch_id not in self.state.cancelled]

    def delivered_keys(self) -> Counter[str]:
        return Counter(a.outbox_key for a in self.delivered() if a.outbox_key)
