"""The data tests that read the catalog instead of scanning (tests/generic/enforced_*.sql).

A handful of raw rows is built once per module (staging views plus the intermediate tables whose
keys the build enforces); every test that breaks a constraint works on a template clone.

What is proven here:
* with the loader's raw tables (primary key, NOT NULL) and the post-hook indexes, every
  enforced_* test takes the catalog path: its SQL names the enforcing constraint and never reads
  the model;
* without the constraint (raw key dropped or widened, NOT NULL dropped, model index dropped) the
  same test scans and FAILS on a duplicate / null, and dbt's error names the column;
* the unique post-hook index treats nulls as equal (a repeated key with a null is refused);
* usage events of an unknown customer loaded after the first build are reported (warning) by the
  relationships test of int_usage_customers after an incremental run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import clone_database

from retention.db import url_with_database

MODELS = [
    "path:models/staging",
    "int_usage_daily",  # int_usage_customers reads each new customer's newest day from it
    "int_usage_customers",
    "int_orders_daily",
    "int_order_categories_daily",
]
# only the tests of the selected models (not e.g. the marts' relationships tests to staging)
CAUTIOUS = ["--indirect-selection", "cautious"]
T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def write_rows(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    from retention.contract import load_contract
    from retention.loader import ensure_raw_tables

    contract = load_contract()
    with psycopg.connect(url) as conn:
        ensure_raw_tables(conn, "raw")
        for table, table_rows in rows.items():
            cols = ", ".join(f'"{c}"' for c in contract[table].column_names)
            with conn.cursor().copy(f"copy raw.{table} ({cols}) from stdin") as copy:
                for row in table_rows:
                    copy.write_row(row)
        conn.commit()


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def dbt(args: list[str], url: str, target: Path) -> list[dict[str, Any]]:
    """Run dbt with its artefacts in ``target``; the run's results (run_results.json)."""
    from retention.dbt_runner import run_dbt

    run_dbt([*args, "--target-path", str(target)], url=url)
    return results(target)


def results(target: Path) -> list[dict[str, Any]]:
    return json.loads((target / "run_results.json").read_text())["results"]


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["unique_id"].split(".")[2]: r for r in rows}


@pytest.fixture(scope="module")
def built(warehouse_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list]]:
    name = f"t_dbttests_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = url_with_database(warehouse_server, name)
    try:
        write_rows(
            url,
            {
                "customers": [
                    ("c1", T0, "a@example.com", "de", "Europe/Berlin", True, "organic"),
                    ("c2", T0, None, None, "UTC", False, None),
                ],
                "orders": [("o1", "c1", T0, 10, 0), ("o2", "c2", T0, 20, 5)],
                "order_lines": [("l1", "o1", "Books", 1, 10, 0), ("l2", "o2", "games", 2, 20, 5)],
                "usage_events": [
                    (1, "c1", T0, "Login", None),
                    (2, "c1", T0, "error", "E-1"),
                    (3, "c2", T0, "play", None),
                ],
            },
        )
        rows = dbt(["build", "--select", *MODELS, *CAUTIOUS], url, tmp_path_factory.mktemp("dbt_target"))
        yield url, rows
    finally:
        with psycopg.connect(warehouse_server, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def clone(built: tuple[str, list], warehouse_server: str) -> Iterator[str]:
    source = urlsplit(built[0]).path.lstrip("/")
    name = f"{source}_c{uuid.uuid4().hex[:6]}"
    yield clone_database(warehouse_server, source, name)
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_enforced_tests_read_the_catalog_and_not_the_model(built: tuple[str, list]) -> None:
    tests = {k: v for k, v in by_name(built[1]).items() if k.startswith("enforced_")}
    assert len(tests) >= 50, sorted(tests)
    for name, result in tests.items():
        assert result["status"] == "pass", (name, result["message"])
        code = result["compiled_code"]
        assert "/* enforced: " in code, (name, code)
        assert "from" not in code.lower(), (name, code)  # no relation is read at all
    expected = {
        "enforced_unique_stg_raw__usage_events_event_id": "primary key usage_events_pkey of raw.usage_events (event_id)",
        "enforced_not_null_stg_raw__usage_events_event_type": "not null on raw.usage_events.event_type",
        "enforced_unique_stg_raw__customers_customer_id": "primary key customers_pkey of raw.customers (customer_id)",
        "enforced_unique_combination_int_orders_daily_customer_id__order_date": "unique index (nulls not distinct) ",
        "enforced_unique_int_usage_customers_customer_id": "unique index ",
        "enforced_not_null_int_usage_customers_customer_id": "not null on analytics.int_usage_customers.customer_id",
    }
    for name, enforced_by in expected.items():
        assert f"/* enforced: {enforced_by}" in tests[name]["compiled_code"], (
            name,
            tests[name]["compiled_code"],
        )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("alter table raw.usage_events drop constraint usage_events_pkey", id="no-key"),
        pytest.param(
            "alter table raw.usage_events drop constraint usage_events_pkey, "
            "add primary key (event_id, customer_id)",
            id="wider-key",
        ),
    ],
)
def test_unique_scans_and_fails_without_the_raw_key(clone: str, tmp_path: Path, change: str) -> None:
    from retention.dbt_runner import DbtError

    execute(
        clone,
        change,
        "insert into raw.usage_events (event_id, customer_id, occurred_at, event_type) "
        "values (1, 'c2', '2026-05-02 00:00+00', 'login')",
    )
    test = "enforced_unique_stg_raw__usage_events_event_id"
    with pytest.raises(DbtError, match=f"{test}.*Got 1 result"):
        dbt(["test", "--select", test], clone, tmp_path)
    result = by_name(results(tmp_path))[test]
    assert result["status"] == "fail" and result["failures"] == 1
    assert "not enforced by the database: full scan" in result["compiled_code"]
    assert "stg_raw__usage_events" in result["compiled_code"]


def test_not_null_scans_and_fails_without_raw_not_null(clone: str, tmp_path: Path) -> None:
    from retention.dbt_runner import DbtError

    execute(
        clone,
        "alter table raw.usage_events alter column event_type drop not null",
        "insert into raw.usage_events (event_id, customer_id, occurred_at, event_type) "
        "values (99, 'c2', '2026-05-02 00:00+00', null)",
    )
    test = "enforced_not_null_stg_raw__usage_events_event_type"
    with pytest.raises(DbtError, match=f"{test}.*Got 1 result"):
        dbt(
            ["test", "--select", test, "enforced_not_null_stg_raw__usage_events_customer_id"], clone, tmp_path
        )
    found = by_name(results(tmp_path))
    assert found[test]["status"] == "fail"
    assert "not enforced by the database: full scan" in found[test]["compiled_code"]
    # the other column keeps its NOT NULL: still the catalog path, still passing
    other = found["enforced_not_null_stg_raw__usage_events_customer_id"]
    assert (
        other["status"] == "pass"
        and "/* enforced: not null on raw.usage_events.customer_id" in other["compiled_code"]
    )


def test_unique_combination_scans_and_fails_without_the_index(clone: str, tmp_path: Path) -> None:
    from retention.dbt_runner import DbtError

    [(index,)] = fetch(
        clone,
        "select indexrelid::regclass::text from pg_index "
        "where indrelid = 'analytics.int_orders_daily'::regclass and indisunique",
    )
    execute(
        clone,
        f"drop index {index}",
        "insert into analytics.int_orders_daily select * from analytics.int_orders_daily where customer_id = 'c1'",
    )
    test = "enforced_unique_combination_int_orders_daily_customer_id__order_date"
    with pytest.raises(DbtError, match=f"{test}.*Got 1 result"):
        dbt(["test", "--select", test], clone, tmp_path)
    assert "not enforced by the database: full scan" in by_name(results(tmp_path))[test]["compiled_code"]


def test_unique_index_of_the_build_refuses_repeated_keys_with_nulls(built: tuple[str, list]) -> None:
    # int_order_categories_daily: the category of its key is nullable (customer_id, order_date are NOT NULL)
    url = built[0]
    insert = (
        "insert into analytics.int_order_categories_daily (customer_id, order_date, category) "
        "values ('c1', '2026-01-01', null)"
    )
    with psycopg.connect(url) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation, match="int_order_categories_daily"):
            conn.execute(insert)
        conn.rollback()


def test_orphan_usage_events_of_a_later_load_are_reported(clone: str, tmp_path: Path) -> None:
    write_rows(
        clone,
        {
            "usage_events": [
                (10, "c2", datetime(2026, 5, 3, tzinfo=UTC), "play", None),
                (11, "ghost", datetime(2026, 5, 3, tzinfo=UTC), "play", None),
            ]
        },
    )
    rows = dbt(["build", "--select", "int_usage_customers", "stg_raw__customers", *CAUTIOUS], clone, tmp_path)
    found = by_name(rows)
    assert found["int_usage_customers"]["status"] == "success"
    (orphans,) = [
        r for name, r in found.items() if name.startswith("relationships_int_usage_customers_customer_id")
    ]
    assert orphans["status"] == "warn" and orphans["failures"] == 1, orphans
    # selected without int_usage_daily (built, but without the ghost's day): the new events give
    # the ghost's last event, not null
    query = (
        "select customer_id, last_loaded_at, last_occurred_at from analytics.int_usage_customers order by 1"
    )
    incremental = fetch(clone, query)
    assert [r[0] for r in incremental] == ["c1", "c2", "ghost"]
    assert incremental[2][2] == datetime(2026, 5, 3, tzinfo=UTC)
    dbt(["run", "--full-refresh", "--select", "int_usage_customers"], clone, tmp_path)
    assert fetch(clone, query) == incremental, "incremental run differs from a full refresh"
