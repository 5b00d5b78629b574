"""The Great Expectations quality gate (retention.quality.gate).

Every test gets an isolated database (``use_db``) holding a small, clean, hand-made company written
with SQL: the raw contract tables (``retention.loader.ensure_raw_tables``) and minimal stand-ins for
the marts the gate reads (analytics.dim_customers, fct_customer_signals, churn_scores; created by
the test, not by dbt, so the gate is tested without a dbt build). The clean company passes; then
each bad-input class is injected in its own test, which asserts ``GateFailed`` with that class's
own message, a recorded ``ops.gate_results`` row, and an empty ``ops.outbox`` (the gate never
queues outreach; the DAG runs it upstream of scoring and sending).

Great Expectations is imported once per process (the first gate run pays it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from retention.contract import load_contract
from retention.quality.gate import GateError, GateFailed, GateResult, data_docs_index, main, run_gate
from retention.quality.suites import SuiteError, load_suite, load_suites

ROOT = Path(__file__).resolve().parents[1]
N_CUSTOMERS = 40

pytestmark = [pytest.mark.integration]


# --- the clean company -------------------------------------------------------------------------

CLEAN_RAW_SQL = """
insert into raw.customers (customer_id, signup_at, email, country, time_zone, marketing_consent,
                           acquisition_channel, _loaded_at)
select 'c' || lpad(g::text, 3, '0'), now() - (100 + g) * interval '1 day', 'user' || g || '@example.com',
       'DE', case when g % 2 = 0 then 'Europe/Berlin' else 'America/New_York' end, g % 3 <> 0, 'organic',
       now() - interval '1 day'
from generate_series(1, 40) g;

insert into raw.subscriptions (subscription_id, customer_id, plan, price, billing_period, started_at,
                               renewal_date, cancelled_at, cancel_reason, _loaded_at)
select 's' || g, 'c' || lpad(g::text, 3, '0'), 'basic', 9.99, 'month', now() - interval '90 days',
       current_date + 10, case when g <= 2 then now() - interval '5 days' end,
       case when g = 1 then 'payment_failed' end, now() - interval '1 day'
from generate_series(1, 20) g;

insert into raw.orders (order_id, customer_id, ordered_at, amount, discount_amount, _loaded_at)
select 'o' || g, 'c' || lpad((1 + g % 40)::text, 3, '0'), now() - interval '1 day' - (g % 30) * interval '1 day',
       20 + g, 0, now() - interval '1 day'
from generate_series(1, 60) g;

insert into raw.order_lines (order_line_id, order_id, category, quantity, amount, discount_amount, _loaded_at)
select 'ol' || g, 'o' || (1 + g % 60), 'books', 1, 10, 0, now() - interval '1 day'
from generate_series(1, 80) g;

insert into raw.payments (payment_id, customer_id, subscription_id, due_at, attempted_at, attempt_number,
                          amount, status, failure_code, _loaded_at)
select 'p' || g, 'c' || lpad((1 + g % 20)::text, 3, '0'), 's' || (1 + g % 20),
       now() - interval '1 day' - g * interval '1 day', now() - interval '1 day' - g * interval '1 day', 1,
       9.99, case when g % 10 = 0 then 'failed' else 'succeeded' end,
       case when g % 10 = 0 then 'card_expired' end, now() - interval '1 day'
from generate_series(1, 40) g;

insert into raw.usage_events (event_id, customer_id, occurred_at, event_type, error_code, _loaded_at)
select g, 'c' || lpad((1 + g % 40)::text, 3, '0'), now() - interval '1 day' - (g % 28) * interval '1 day',
       case when g % 50 = 0 then 'error' else 'login' end, case when g % 50 = 0 then 'E-PLAYBACK-502' end,
       now() - interval '1 day'
from generate_series(1, 400) g;

insert into raw.support_tickets (ticket_id, customer_id, opened_at, resolved_at, category, error_code,
                                 satisfaction, _loaded_at)
select 't' || g, 'c' || lpad(g::text, 3, '0'), now() - interval '1 day' - g * interval '1 day',
       now() - g * interval '1 day', 'technical', null, 1 + g % 5, now() - interval '1 day'
from generate_series(1, 20) g;

insert into raw.cancellation_feedback (feedback_id, customer_id, subscription_id, submitted_at,
                                       reason_category, free_text, offer_shown, offer_accepted, _loaded_at)
values ('f1', 'c001', 's1', now() - interval '5 days', 'price', 'too expensive', 'discount_20', false,
        now() - interval '1 day');
"""

CLEAN_MARTS_SQL = """
create schema if not exists analytics;

create table analytics.dim_customers as
select c.customer_id, lower(c.email) as email, c.country, c.time_zone, c.marketing_consent,
       c.acquisition_channel, c.signup_at, 100 as tenure_days, null::text as subscription_id,
       null::text as plan, null::numeric as plan_price_monthly, null::text as billing_period,
       null::date as renewal_date, 'none'::text as subscription_status,
       case when right(c.customer_id, 1) = '0' then 'at_risk' else 'active' end as lifecycle_stage,
       null::timestamptz as churned_at, null::timestamptz as last_order_at, null::timestamptz as last_activity_at,
       2 as orders_count, 50.0::numeric as total_revenue, 3 as rfm_recency_score, 3 as rfm_frequency_score,
       3 as rfm_monetary_score, 'loyal'::text as rfm_segment, 120.0::numeric as clv_12m,
       30.0::numeric as second_lifetime_value, 120.0::numeric as customer_value, current_date as as_of_date
from raw.customers c;

create table analytics.fct_customer_signals as
select customer_id, current_date as as_of_date, 100 as tenure_days, false as is_subscriber,
       null::numeric as plan_price_monthly, null::integer as days_to_renewal, 5 as recency_days,
       2 as frequency_orders_365d, 50.0 as monetary_365d, 0.0 as discount_share_365d, 10 as usage_events_30d,
       9.0 as usage_events_prior_90d_per30, 0.1 as usage_trend_pct, 1 as orders_90d,
       1.0 as orders_prior_270d_per90, 0.0 as purchase_freq_drop_pct, 0 as categories_dropped_count,
       0 as inquiries_without_order_30d, 0 as late_payments_90d, 0 as failed_payments_90d,
       false as payment_failed_unrecovered, 0 as open_tickets, 0 as unresolved_tickets,
       0 as low_satisfaction_90d, 0 as error_events_30d, null::text as top_dropped_category,
       null::text as recent_error_codes
from analytics.dim_customers;

create table analytics.churn_scores as
select customer_id, d.as_of_date, 0.05 + (row_number() over (order by customer_id)) / 100.0 as churn_probability,
       'low'::text as risk_tier, '[]'::jsonb as reason_codes, 'unknown'::text as reason_category,
       'v1'::text as model_version, 120.0 as customer_value, 0.2 as expected_save_rate, 0.0 as offer_cost,
       1.0 as priority_score
from analytics.dim_customers d
union all  -- an older scoring day: only the latest day is validated
select customer_id, d.as_of_date - 1, 5.0, 'bogus', '[]'::jsonb, 'bogus', 'v0', -1, 2, -1, null
from analytics.dim_customers d;
"""


def _execute(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params) if params else conn.execute(sql)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
    return rows


def _build_clean(url: str, *, marts: bool = True) -> None:
    from retention.loader import ensure_raw_tables
    from retention.outreach.models import ensure_outreach_tables

    with psycopg.connect(url) as conn:
        ensure_raw_tables(conn)
        ensure_outreach_tables(conn)
        conn.execute(CLEAN_RAW_SQL)
        if marts:
            conn.execute(CLEAN_MARTS_SQL)
        conn.commit()


@pytest.fixture
def company(use_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean small company in an isolated database; state (Data Docs, alerts) in tmp_path."""
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RETENTION_AS_OF", raising=False)
    monkeypatch.delenv("RETENTION_ALERT_WEBHOOK_URL", raising=False)
    get_settings.cache_clear()
    _build_clean(use_db)
    yield use_db


def _outbox_rows(url: str) -> int:
    return _execute(url, "select count(*) from ops.outbox")[0][0]


def _fails(url: str, suite: str, *fragments: str, data_docs: bool = False) -> GateFailed:
    """Run the gate on one suite, expect GateFailed whose message contains every fragment, a recorded
    failed run, and nothing queued. (GX is slow: only the clean-company test runs every suite, and
    Data Docs are checked in two tests.)"""
    with pytest.raises(GateFailed) as info:
        run_gate(stage="all", suites=[suite], data_docs=data_docs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    run_id = info.value.result.run_id
    status = _execute(url, "select status from ops.gate_runs where run_id = %s", (run_id,))
    assert status == [("failed",)]
    recorded = _execute(
        url,
        "select count(*) from ops.gate_results where run_id = %s and severity = 'critical' "
        "and outcome in ('failed', 'error')",
        (run_id,),
    )[0][0]
    assert recorded == len(info.value.result.failures) >= 1
    assert _outbox_rows(url) == 0, "the gate must never queue outreach"
    return info.value


# --- clean data ---------------------------------------------------------------------------------


def test_clean_company_passes_records_history_and_writes_data_docs(company: str, tmp_path: Path) -> None:
    result = run_gate()
    assert isinstance(result, GateResult)
    assert result.status == "passed", [f.line() for f in result.warnings]
    assert not result.failures
    assert result.row_counts["raw.customers"] == N_CUSTOMERS
    assert result.row_counts["analytics.churn_scores"] == N_CUSTOMERS  # the latest day only
    # every suite ran and passed (raw.email_events is empty and passes too)
    suites = {f.suite for f in result.findings if f.outcome == "passed"}
    assert suites == {s.name for s in load_suites()}
    assert not [f for f in result.findings if f.outcome != "passed"]
    runs = _execute(company, "select status, critical_failures, warnings from ops.gate_runs")
    assert runs == [("passed", 0, 0)]
    n_results = _execute(company, "select count(*) from ops.gate_results where run_id = %s", (result.run_id,))
    assert n_results[0][0] == len(result.findings) > 100
    index = data_docs_index()
    assert index == tmp_path / "state" / "gx" / "data_docs" / "index.html"
    assert index.exists() and "raw.customers" in index.read_text()
    assert not (tmp_path / "state" / "alerts").exists()
    summary = result.summary()
    assert json.loads(json.dumps(summary))["status"] == "passed"
    assert _outbox_rows(company) == 0


def test_missing_marts_are_skipped_with_a_recorded_warning(use_db: str, tmp_path: Path, monkeypatch) -> None:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RETENTION_AS_OF", raising=False)
    get_settings.cache_clear()
    _build_clean(use_db, marts=False)
    result = run_gate(stage="marts")
    assert result.status == "passed_with_warnings"
    assert {f.table for f in result.warnings} == {
        "analytics.dim_customers",
        "analytics.fct_customer_signals",
        "analytics.churn_scores",
    }
    assert all("does not exist" in f.message for f in result.warnings)
    rows = _execute(
        use_db,
        "select table_name, outcome, severity from ops.gate_results where run_id = %s",
        (result.run_id,),
    )
    assert sorted(rows) == sorted(
        (t, "skipped", "warning")
        for t in ("analytics.dim_customers", "analytics.fct_customer_signals", "analytics.churn_scores")
    )


def test_warnings_are_recorded_and_do_not_stop(company: str) -> None:
    _execute(company, "update raw.subscriptions set plan = 'enterprise' where subscription_id = 's3'")
    result = run_gate(suites=["raw.subscriptions"], data_docs=False)
    assert result.status == "passed_with_warnings"
    [warning] = result.warnings
    assert warning.suite == "raw.subscriptions" and warning.column == "plan"
    assert "enterprise" in warning.message
    rows = _execute(
        company,
        "select severity, outcome from ops.gate_results where run_id = %s and column_name = 'plan'",
        (result.run_id,),
    )
    assert sorted(rows) == [("critical", "passed"), ("warning", "failed")]  # not null passed, allowed warned
    assert _execute(company, "select status, warnings from ops.gate_runs") == [("passed_with_warnings", 1)]


def test_cli_exit_codes(company: str, capsys) -> None:
    assert main(["--suite", "raw.orders", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "passed"
    assert main(["--stage", "raw", "--suite", "analytics.dim_customers"]) == 2  # not a raw suite
    assert "no suite named analytics.dim_customers in stage raw" in capsys.readouterr().err
    assert main(["--as-of", "30.06.2026"]) == 2
    assert main(["--docs-path"]) == 0 and capsys.readouterr().out.strip().endswith("gx/data_docs/index.html")


# --- each bad-input class stops the pipeline with its own message -------------------------------


def test_duplicate_customer_ids_in_a_mart(company: str) -> None:
    # raw.customers has a primary key, so a fan-out is simulated where it really happens: in a mart
    _execute(company, "insert into analytics.dim_customers select * from analytics.dim_customers limit 1")
    exc = _fails(
        company,
        "analytics.dim_customers",
        "suite analytics.dim_customers: expect_column_values_to_be_unique column customer_id",
        "c001",
        "mart_rows=41, raw_customers=40",  # the one-row-per-customer check names both counts
    )
    assert {f.suite for f in exc.result.failures} == {"analytics.dim_customers"}


def test_duplicate_customer_ids_from_an_upstream_without_constraints(company: str) -> None:
    # an upstream without constraints: the test database drops raw's primary key to simulate it
    _execute(company, "alter table raw.customers drop constraint customers_pkey")
    _execute(company, "insert into raw.customers select * from raw.customers where customer_id = 'c007'")
    _fails(
        company,
        "raw.customers",
        "suite raw.customers: expect_column_values_to_be_unique column customer_id",
        "c007",
    )


def test_malformed_emails_stop_and_alert_through_the_webhook(company: str, httpserver, monkeypatch) -> None:
    from retention.settings import get_settings

    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_data("ok")
    monkeypatch.setenv("RETENTION_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/alerts"))
    get_settings.cache_clear()
    _execute(company, "update raw.customers set email = 'not-an-email' where customer_id = 'c005'")
    exc = _fails(
        company,
        "raw.customers",
        "suite raw.customers: expect_column_values_to_match_regex column email [format, critical]",
        "1 of 40 row(s) unexpected",
        "not-an-email",
        data_docs=True,
    )
    # Data Docs are written on failure too, and the message points at them
    assert exc.result.data_docs_index is not None and exc.result.data_docs_index.exists()
    assert f"Data Docs: {exc.result.data_docs_index}" in str(exc)
    # the alert: a JSON + Markdown file in the state folder and a Slack-compatible POST
    assert exc.result.alert_path is not None and exc.result.alert_path.exists()
    alert = json.loads(exc.result.alert_path.read_text())
    assert alert["severity"] == "critical" and any("not-an-email" in line for line in alert["lines"])
    assert exc.result.alert_path.with_suffix(".md").exists()
    [(request, _response)] = httpserver.log
    body = request.get_json()
    assert set(body) == {"text"} and "Quality gate failed" in body["text"] and "not-an-email" in body["text"]


def test_null_emails_stop(company: str) -> None:
    _execute(company, "update raw.customers set email = null where customer_id <= 'c020'")
    _fails(
        company,
        "raw.customers",
        "suite raw.customers: expect_column_values_to_not_be_null column email [nulls, critical]",
        "20 of 40 row(s) unexpected (50.00%)",
        "expected for at least 80% of rows",
    )


def test_negative_amounts_stop(company: str) -> None:
    _execute(company, "update raw.orders set amount = -5 where order_id = 'o7'")
    _fails(
        company,
        "raw.orders",
        "suite raw.orders: expect_column_values_to_be_between column amount [range, critical]",
        "1 of 60 row(s) unexpected",
        "-5",
        ">= 0",
    )


def test_timestamps_in_the_future_stop(company: str) -> None:
    _execute(
        company, "update raw.usage_events set occurred_at = now() + interval '10 days' where event_id = 3"
    )
    _fails(
        company,
        "raw.usage_events",
        "suite raw.usage_events: expect_column_values_to_be_between column occurred_at [future, critical]",
        "1 of 400 row(s) unexpected",
    )


def test_future_is_judged_against_the_as_of_date(company: str) -> None:
    # frozen as-of day long before the data: every recent event is "in the future" of that day
    with pytest.raises(GateFailed, match=r"raw.orders: expect_column_values_to_be_between column ordered_at"):
        from datetime import date, timedelta

        run_gate(suites=["raw.orders"], as_of=date.today() - timedelta(days=20), alert=False, data_docs=False)


def test_volume_drop_of_90_percent_against_the_previous_run_stops(company: str) -> None:
    first = run_gate(suites=["raw.usage_events"], data_docs=False)
    assert first.row_counts["raw.usage_events"] == 400
    _execute(company, "delete from raw.usage_events where event_id % 10 <> 0")
    exc = _fails(
        company,
        "raw.usage_events",
        "suite raw.usage_events: expect_table_row_count_to_be_between [volume, critical]",
        "row count 40; last accepted count 400",
        "minimum 200 = 50% of it",
    )
    assert [f.suite for f in exc.result.failures] == ["raw.usage_events"]
    # the failed run's count is not the new baseline: the next run still compares with 400
    with pytest.raises(GateFailed, match="last accepted count 400"):
        run_gate(suites=["raw.usage_events"], alert=False, data_docs=False)
    # a deliberate shrink is accepted by an operator (`retention gate --accept-volume`)
    assert main(["--accept-volume", "--stage", "raw"]) == 0
    after = run_gate(suites=["raw.usage_events"], data_docs=False)
    assert after.passed and "last accepted count 40 " in next(
        f.message for f in after.findings if f.check == "volume"
    )


def test_renamed_column_stops(company: str) -> None:
    _execute(company, "alter table raw.customers rename column email to email_address")
    _fails(
        company,
        "raw.customers",
        "suite raw.customers: expect_table_columns_to_match_set [schema, critical]",
        "missing ['email'], unexpected ['email_address'] (renamed column?)",
    )


def test_late_arriving_data_stops(company: str) -> None:
    # today's load of usage events: all of them happened weeks before yesterday's newest event
    _execute(
        company,
        """insert into raw.usage_events (event_id, customer_id, occurred_at, event_type, _loaded_at)
           select 1000 + g, 'c001', now() - interval '20 days', 'login', now() from generate_series(1, 50) g""",
    )
    exc = _fails(
        company,
        "raw.usage_events",
        "suite raw.usage_events: unexpected_rows_expectation [late, critical]",
        "load_rows=50, late_rows=50, late_share=1.0000",
    )
    assert {f.check for f in exc.result.failures} == {"late"}


def test_a_few_late_events_are_a_warning_only(company: str) -> None:
    _execute(
        company,
        """insert into raw.usage_events (event_id, customer_id, occurred_at, event_type, _loaded_at)
           select 2000 + g, 'c001', case when g <= 2 then now() - interval '20 days' else now() end, 'login', now()
           from generate_series(1, 20) g""",
    )
    result = run_gate(suites=["raw.usage_events"], data_docs=False)
    assert [(f.suite, f.check, f.severity) for f in result.warnings] == [
        ("raw.usage_events", "late", "warning")
    ]
    assert "late_rows=2" in result.warnings[0].message


def test_missing_required_table_is_critical(company: str, capsys) -> None:
    _execute(company, "drop table raw.customers cascade")
    assert main(["--suite", "raw.customers", "--no-alert"]) == 1  # the CLI's exit code for a failed gate
    assert "required table is missing" in capsys.readouterr().err
    _fails(company, "raw.customers", "suite raw.customers: table_exists", "required table is missing")


# --- suites and wiring (no database) ------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(load_contract()))
def test_every_contract_rule_has_a_critical_expectation(table: str) -> None:
    contract = load_contract()[table]
    suite = next(s for s in load_suites() if s.name == f"raw.{table}")
    critical = [(e.type, e.kwargs) for e in suite.expectations if e.severity == "critical"]

    def has(kind: str, column: str) -> bool:
        return any(t == kind and k.get("column") == column and k.get("mostly", 1) == 1 for t, k in critical)

    assert (
        "expect_table_columns_to_match_set",
        {"column_set": "${contract_columns}", "exact_match": True},
    ) in critical
    assert any(t == "expect_table_row_count_to_be_between" for t, _ in critical)
    for key in contract.primary_key:
        assert has("expect_column_values_to_be_unique", key), key
    for col in contract.columns:
        if not col.nullable:
            assert has("expect_column_values_to_not_be_null", col.name), col.name
        if col.min is not None:
            assert any(
                t == "expect_column_values_to_be_between"
                and k.get("column") == col.name
                and k.get("min_value") == col.min
                for t, k in critical
            ), col.name
        if col.allowed:
            assert any(
                t == "expect_column_values_to_be_in_set"
                and k.get("column") == col.name
                and k["value_set"] == list(col.allowed)
                for t, k in critical
            ), col.name
        if col.format == "email":
            assert has("expect_column_values_to_match_regex", col.name)


def test_every_suite_marks_every_expectation_and_covers_the_required_check_classes() -> None:
    suites = {s.name: s for s in load_suites()}
    for name, suite in suites.items():
        assert {"schema", "volume", "uniqueness"} <= suite.checks, name
        assert all(e.severity in ("critical", "warning") for e in suite.expectations)
    assert "distribution" in suites["analytics.dim_customers"].checks
    assert "distribution" in suites["analytics.churn_scores"].checks
    for table in ("orders", "payments", "usage_events", "support_tickets"):
        assert "late" in suites[f"raw.{table}"].checks, table


def test_alert_is_written_even_when_the_webhook_is_down(tmp_path: Path, httpserver) -> None:
    from retention.alerts import send_alert

    httpserver.expect_request("/hook").respond_with_data("boom", status=500)
    record = send_alert(
        "Quality gate failed",
        ["suite raw.orders: amount -5"],
        webhook_url=httpserver.url_for("/hook"),
        directory=tmp_path,
    )
    assert record.webhook_delivered is False and "500" in (record.webhook_error or "")
    assert json.loads(record.json_path.read_text())["lines"] == ["suite raw.orders: amount -5"]
    assert "- suite raw.orders: amount -5" in record.markdown_path.read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_a_malformed_suite_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "raw.customers.yml"
    bad.write_text(
        "name: raw.customers\nmeta: {stage: raw, schema: raw, table: customers}\nexpectations:\n"
        "  - type: expect_table_row_count_to_be_between\n    kwargs: {min_value: 0}\n"
        "    meta: {severity: fatal, check: volume}\n"
    )
    with pytest.raises(
        SuiteError, match=r"raw.customers.yml: expectation #1 .*severity must be critical or warning"
    ):
        load_suite(bad)


def test_unknown_stage_is_a_clear_error() -> None:
    with pytest.raises(GateError, match="stage must be raw, marts or all"):
        run_gate(url="postgresql://nobody@127.0.0.1:1/none", stage="everything")  # type: ignore[arg-type]


def test_importing_the_gate_does_not_import_great_expectations() -> None:
    code = (
        "import sys; import retention.pipeline, retention.quality.gate, retention.alerts; "
        "assert 'great_expectations' not in sys.modules, 'GX imported at module level'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
