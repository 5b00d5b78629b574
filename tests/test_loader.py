"""The raw loader: contract validation, all-or-nothing loads, idempotent re-deliveries."""

from __future__ import annotations

import gzip
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retention.contract import load_contract
from retention.loader import LoadError, ensure_raw_tables, load_directory, main

pytestmark = pytest.mark.integration

CUSTOMERS = """customer_id,signup_at,email,country,time_zone,marketing_consent,acquisition_channel
c1,2024-01-01T10:00:00Z,a@example.com,DE,Europe/Berlin,true,organic
c2,2024-01-02 10:00:00+02:00,not-an-email,NA,America/New_York,no,
c3,2024-01-03T10:00:00,,,UTC,1,paid_search
"""
ORDERS = """order_id,customer_id,ordered_at,amount,discount_amount
o1,c1,2024-02-01T00:00:00Z,10.50,0
o2,c2,2024-02-02T08:30:00+01:00,0.10,1
o3,c3,2024-02-03T00:00:00Z,99.99,0
"""
SUBSCRIPTIONS = """subscription_id,customer_id,plan,price,billing_period,started_at,renewal_date,cancelled_at,cancel_reason
s1,c1,basic,9.99,month,2024-01-01T10:00:00Z,2024-03-01,,
s2,c2,premium,99.00,year,2024-01-02T10:00:00Z,2025-01-02,2024-06-01T00:00:00Z,payment_failed
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def good_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder, "customers.csv", CUSTOMERS)
    write(folder, "orders.csv", ORDERS)
    return folder


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            )
        ]
        return {t: conn.execute(f'select count(*) from raw."{t}"').fetchone()[0] for t in tables}


def test_csv_happy_path_types_and_loader_columns(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "drop")
    write(folder, "subscriptions.csv.gz", SUBSCRIPTIONS)
    report = load_directory(folder, url=fresh_db)
    assert report.rows == {"customers": 3, "subscriptions": 2, "orders": 3}
    c = counts(fresh_db)
    assert c["customers"] == 3 and c["orders"] == 3 and c["subscriptions"] == 2
    assert c["usage_events"] == 0 and c["email_events"] == 0  # optional tables exist, empty
    with psycopg.connect(fresh_db) as conn:
        conn.execute("set timezone = 'UTC'")
        rows = conn.execute(
            "select customer_id, signup_at::text, email, country, marketing_consent, acquisition_channel, "
            "_source_file, _loaded_at is not null from raw.customers order by 1"
        ).fetchall()
        assert rows == [
            ("c1", "2024-01-01 10:00:00+00", "a@example.com", "DE", True, "organic", "customers.csv", True),
            ("c2", "2024-01-02 08:00:00+00", "not-an-email", "NA", False, None, "customers.csv", True),
            ("c3", "2024-01-03 10:00:00+00", None, None, True, "paid_search", "customers.csv", True),
        ]
        assert conn.execute("select amount::text from raw.orders where order_id = 'o2'").fetchone() == (
            "0.10",
        )
        sub = conn.execute(
            "select renewal_date::text, cancelled_at, cancel_reason from raw.subscriptions order by 1"
        ).fetchall()
        assert sub[0] == ("2024-03-01", None, None)
        assert sub[1][2] == "payment_failed"


def test_parquet_load_with_counts_and_native_types(fresh_db, tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c2"],
                "signup_at": pa.array([0, 86_400_000_000], pa.timestamp("us")),  # naive: UTC
                "time_zone": ["Europe/Paris", "Asia/Tokyo"],
                "marketing_consent": [True, False],
            }
        ),
        folder / "customers.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "subscription_id": ["s1"],
                "customer_id": ["c1"],
                "plan": ["basic"],
                "price": pa.array([9.99]),
                "billing_period": ["month"],
                "started_at": pa.array([0], pa.timestamp("ms", tz="Europe/Berlin")),
                "renewal_date": pa.array([31], pa.date32()),
            }
        ),
        folder / "subscriptions.parquet",
    )
    report = load_directory(folder, url=fresh_db)
    assert report.rows == {"customers": 2, "subscriptions": 1}
    with psycopg.connect(fresh_db) as conn:
        conn.execute("set timezone = 'UTC'")
        assert conn.execute(
            "select signup_at::text from raw.customers where customer_id = 'c2'"
        ).fetchone() == ("1970-01-02 00:00:00+00",)
        assert conn.execute("select price::text, renewal_date::text from raw.subscriptions").fetchone() == (
            "9.99",
            "1970-02-01",
        )


def test_parts_folder_mixed_formats_and_ground_truth_ignored(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "parts")
    header = "event_id,customer_id,occurred_at,event_type,error_code\n"
    write(
        folder,
        "usage_events/part-00000.csv",
        header + "1,c1,2024-03-01T00:00:00Z,login,\n2,c1,2024-03-01T01:00:00Z,error,E-1\n",
    )
    write(folder, "usage_events/part-00001.csv.gz", header + "3,c2,2024-03-02T00:00:00Z,play,\n")
    pq.write_table(
        pa.table(
            {
                "event_id": pa.array([4, 5], pa.int64()),
                "customer_id": ["c3", "c3"],
                "occurred_at": pa.array([1, 2], pa.timestamp("s", tz="UTC")),
                "event_type": ["search", "play"],
            }
        ),
        folder / "usage_events" / "part-00002.parquet",
    )
    write(folder, "ground_truth/churn_reasons.csv", "anything,goes\n1,2\n")
    report = load_directory(folder, url=fresh_db)
    assert report.rows["usage_events"] == 5
    with psycopg.connect(fresh_db) as conn:
        got = conn.execute(
            "select event_id, _source_file, error_code from raw.usage_events order by 1"
        ).fetchall()
    assert got == [
        (1, "usage_events/part-00000.csv", None),
        (2, "usage_events/part-00000.csv", "E-1"),
        (3, "usage_events/part-00001.csv.gz", None),
        (4, "usage_events/part-00002.parquet", None),
        (5, "usage_events/part-00002.parquet", None),
    ]


def test_double_load_is_idempotent_and_redelivery_wins(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "twice")
    load_directory(folder, url=fresh_db)
    before = counts(fresh_db)
    report = load_directory(folder, url=fresh_db)
    assert {t.mode for t in report.tables} == {"upsert"}
    assert counts(fresh_db) == before
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    write(
        corrected,
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,discount_amount\no2,c2,2024-02-02T08:30:00Z,12.00,0\no4,c1,2024-02-04T00:00:00Z,5,0\n",
    )
    load_directory(corrected, url=fresh_db)  # customers are already in the warehouse
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select count(*) from raw.orders").fetchone() == (4,)
        assert conn.execute(
            "select amount::text, _source_file from raw.orders where order_id = 'o2'"
        ).fetchone() == (
            "12.00",
            "orders.csv",
        )


def test_ensure_raw_tables_is_idempotent(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        ensure_raw_tables(conn, "raw")
        ensure_raw_tables(conn, "raw")
        conn.commit()
    assert set(counts(fresh_db)) >= {"customers", "orders", "subscriptions", "usage_events", "email_events"}


def test_every_raw_table_has_a_brin_index_on_loaded_at(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        ensure_raw_tables(conn, "raw")
        conn.execute("drop index raw.orders__loaded_at_brin")
        ensure_raw_tables(conn, "raw")  # puts the missing one back, leaves the others
        conn.commit()
        rows = conn.execute(
            "select t.relname, am.amname, pg_get_indexdef(i.indexrelid) from pg_index as i "
            "join pg_class as t on t.oid = i.indrelid join pg_class as c on c.oid = i.indexrelid "
            "join pg_am as am on am.oid = c.relam join pg_namespace as n on n.oid = t.relnamespace "
            "where n.nspname = 'raw' and c.relname like '%%__loaded_at_brin'"
        ).fetchall()
    tables = set(load_contract())
    assert {r[0] for r in rows} == tables and len(rows) == len(tables)
    assert all(r[1] == "brin" and "(_loaded_at)" in r[2] for r in rows)


def _payments_lookup_index(url: str) -> list[tuple[str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select indexdef from pg_indexes where schemaname = 'raw' and indexname = 'payments__lookup'"
        ).fetchall()


def test_payments_have_the_lookup_index_of_the_charge_key(fresh_db):
    """int_payment_charges probes raw.payments by (customer_id, due_at) for a retried charge's
    older attempts; the index is created with the tables and put back when missing."""
    with psycopg.connect(fresh_db) as conn:
        ensure_raw_tables(conn, "raw")
        conn.execute("drop index raw.payments__lookup")
        ensure_raw_tables(conn, "raw")
        conn.commit()
    assert _payments_lookup_index(fresh_db) == [
        ("CREATE INDEX payments__lookup ON raw.payments USING btree (customer_id, due_at)",)
    ]


def test_cli_prints_counts_and_rate(fresh_db, tmp_path, capsys):
    folder = good_folder(tmp_path / "cli")
    assert main([str(folder), "--url", fresh_db]) == 0
    out = capsys.readouterr().out
    assert "customers" in out and "rows/s" in out and "total" in out


# ------------------------------------------------------------------ bad input: nothing changes

BAD_CASES = {
    "missing_required_column": (
        "orders.csv",
        "order_id,customer_id,ordered_at,discount_amount\no9,c1,2024-02-01T00:00:00Z,0\n",
        ["orders.csv", "missing required column", "amount"],
    ),
    "unknown_column": (
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,discount_amount,colour\no9,c1,2024-02-01T00:00:00Z,1,0,red\n",
        ["orders.csv", "unknown column", "colour"],
    ),
    "bad_timestamp": (
        "orders.csv",
        ORDERS.splitlines()[0] + "\no8,c1,2024-02-01T00:00:00Z,1,0\no9,c1,2024-13-45 25:00,1,0\n",
        ["orders.csv", "row 2", "column ordered_at", "2024-13-45 25:00"],
    ),
    "bad_date": (
        "subscriptions.csv",
        SUBSCRIPTIONS.splitlines()[0] + "\ns9,c1,basic,9.99,month,2024-01-01T10:00:00Z,01/03/2024,,\n",
        ["subscriptions.csv", "row 1", "column renewal_date", "01/03/2024"],
    ),
    "bad_number": (
        "orders.csv",
        ORDERS.splitlines()[0]
        + "\no8,c1,2024-02-01T00:00:00Z,1,0\no9,c1,2024-02-01T00:00:00Z,1,0\no10,c1,2024-02-01T00:00:00Z,12,5O\n",
        ["orders.csv", "row 3", "column discount_amount", "5O"],
    ),
    "bad_boolean": (
        "customers.csv",
        CUSTOMERS.splitlines()[0] + "\nc9,2024-01-01T10:00:00Z,,,UTC,maybe,\n",
        ["customers.csv", "row 1", "column marketing_consent", "maybe"],
    ),
    "negative_amount": (
        "orders.csv",
        ORDERS.splitlines()[0] + "\no8,c1,2024-02-01T00:00:00Z,1,0\no9,c1,2024-02-01T00:00:00Z,-3.50,0\n",
        ["orders.csv", "row 2", "column amount", "minimum"],
    ),
    "value_not_allowed": (
        "subscriptions.csv",
        SUBSCRIPTIONS.splitlines()[0] + "\ns9,c1,basic,9.99,week,2024-01-01T10:00:00Z,2024-03-01,,\n",
        ["subscriptions.csv", "row 1", "column billing_period", "'week'", "month, year"],
    ),
    "unknown_time_zone": (
        "customers.csv",
        CUSTOMERS.splitlines()[0]
        + "\nc8,2024-01-01T10:00:00Z,,,UTC,true,\nc9,2024-01-01T10:00:00Z,,,Mars/Olympus_Mons,true,\n",
        ["customers.csv", "row 2", "column time_zone", "Mars/Olympus_Mons", "IANA"],
    ),
    "null_in_non_null_column": (
        "orders.csv",
        ORDERS.splitlines()[0] + "\no8,,2024-02-01T00:00:00Z,1,0\n",
        ["orders.csv", "row 1", "column customer_id", "null"],
    ),
    "duplicate_primary_key": (
        "orders.csv",
        ORDERS.splitlines()[0]
        + "\no7,c1,2024-02-01T00:00:00Z,1,0\no8,c1,2024-02-01T00:00:00Z,1,0\no7,c2,2024-02-01T00:00:00Z,2,0\n",
        ["orders.csv", "row 3", "column order_id", "duplicate", "'o7'", "first at row 1"],
    ),
    "wrong_field_count": (
        "orders.csv",
        ORDERS.splitlines()[0] + "\no7,c1,2024-02-01T00:00:00Z,1,0\no8,c1,2024-02-01T00:00:00Z,1\n",
        ["orders.csv", "row 2", "expected 5 fields"],
    ),
}


@pytest.fixture(scope="module")
def loaded_db(warehouse_server, tmp_path_factory):
    """One database for all bad-input cases, holding a good batch (each bad load must leave it alone)."""
    import uuid

    name = f"t_loader_bad_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = warehouse_server.rsplit("/", 1)[0] + "/" + name
    load_directory(good_folder(tmp_path_factory.mktemp("good")), url=url)
    yield url
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_row_column_and_changes_nothing(case, loaded_db, tmp_path, capsys):
    fresh_db = loaded_db
    before = counts(fresh_db)
    assert before["customers"] == 3 and before["orders"] == 3
    name, text, words = BAD_CASES[case]
    bad = tmp_path / "bad"
    bad.mkdir()
    # a good file of another table in the same folder must not be loaded either
    other = "subscriptions.csv" if name != "subscriptions.csv" else "orders.csv"
    write(
        bad,
        other,
        SUBSCRIPTIONS.replace("s1,", "s7,") if other == "subscriptions.csv" else ORDERS.replace("o1,", "o6,"),
    )
    write(bad, name, text)
    with pytest.raises(LoadError) as err:
        load_directory(bad, url=fresh_db)
    for word in words:
        assert word in str(err.value), (word, str(err.value))
    assert counts(fresh_db) == before
    if case == "bad_timestamp":  # the CLI: message on stderr, exit code 2, still nothing loaded
        assert main([str(bad), "--url", fresh_db]) == 2
        assert capsys.readouterr().err.startswith("error: orders.csv, row 2, column ordered_at")
        assert counts(fresh_db) == before


def test_duplicate_key_across_parts_names_the_part_file(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "dup")
    header = "event_id,customer_id,occurred_at,event_type\n"
    write(
        folder,
        "usage_events/part-0.csv",
        header + "1,c1,2024-03-01T00:00:00Z,login\n2,c1,2024-03-01T00:00:00Z,login\n",
    )
    write(
        folder,
        "usage_events/part-1.csv",
        header + "3,c1,2024-03-01T00:00:00Z,login\n2,c1,2024-03-01T00:00:00Z,play\n",
    )
    with pytest.raises(
        LoadError,
        match=r"usage_events/part-1\.csv, row 2, column event_id: duplicate primary key '2' "
        r"\(first at usage_events/part-0\.csv, row 2\)",
    ):
        load_directory(folder, url=fresh_db)
    assert counts(fresh_db).get("customers", 0) == 0


def test_bad_value_in_a_later_parquet_part_names_part_and_row(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "pqbad")
    for i, codes in enumerate([["technical", "billing"], ["inquiry", "refund_request"]]):
        pq.write_table(
            pa.table(
                {
                    "ticket_id": [f"t{i}a", f"t{i}b"],
                    "customer_id": ["c1", "c2"],
                    "opened_at": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                    "category": codes,
                    "satisfaction": pa.array([5, None], pa.int64()),
                }
            ),
            (folder / "support_tickets").mkdir(exist_ok=True) or folder / "support_tickets" / f"p{i}.parquet",
        )
    with pytest.raises(LoadError) as err:
        load_directory(folder, url=fresh_db)
    assert "support_tickets/p1.parquet, row 2, column category: 'refund_request' is not one of" in str(
        err.value
    )


def test_missing_required_tables(fresh_db, tmp_path):
    only_customers = tmp_path / "c"
    only_customers.mkdir()
    write(only_customers, "customers.csv", CUSTOMERS)
    with pytest.raises(LoadError, match="required data missing: orders or subscriptions"):
        load_directory(only_customers, url=fresh_db)
    no_customers = tmp_path / "o"
    no_customers.mkdir()
    write(no_customers, "orders.csv", ORDERS)
    with pytest.raises(LoadError, match="required data missing: customers"):
        load_directory(no_customers, url=fresh_db)
    assert sum(counts(fresh_db).values()) == 0


def test_unknown_files_are_named(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "unknown")
    write(folder, "custmers.csv", CUSTOMERS)
    write(folder, "notes.txt", "hello")
    with pytest.raises(LoadError) as err:
        load_directory(folder, url=fresh_db)
    assert "unknown file(s)" in str(err.value)
    assert "custmers.csv" in str(err.value) and "notes.txt" in str(err.value)
    parts = good_folder(tmp_path / "unknown_part")
    write(parts, "usage_events/readme.md", "x")
    with pytest.raises(LoadError, match=r"usage_events/readme\.md"):
        load_directory(parts, url=fresh_db)
    assert counts(fresh_db) == {}


def test_same_table_twice_and_missing_folder(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "twice")
    pq.write_table(pa.table({"order_id": ["x"]}), folder / "orders.parquet")
    with pytest.raises(LoadError, match="table orders is given twice"):
        load_directory(folder, url=fresh_db)
    with pytest.raises(LoadError, match="no such folder"):
        load_directory(tmp_path / "nope", url=fresh_db)


def test_binary_encoding_round_trips_every_type(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "types")
    amounts = ["0", "0.01", "0.1", "0.005", "19.99", "1234.5", "12345678.9", "9999999999.99", "7"]
    lines = [
        f"p{i},c1,{'s1' if i % 2 else ''},2024-03-01T00:00:00Z,2024-03-0{1 + i % 3}T12:00:00.123456+05:30,"
        f"{i + 1},{a},{'failed' if i % 3 else 'succeeded'},{'card_expired' if i % 3 else ''}"
        for i, a in enumerate(amounts)
    ]
    write(
        folder,
        "payments.csv",
        "payment_id,customer_id,subscription_id,due_at,attempted_at,attempt_number,amount,status,failure_code\n"
        + "\n".join(lines)
        + "\n",
    )
    write(
        folder,
        "cancellation_feedback.csv",
        "feedback_id,customer_id,submitted_at,reason_category,free_text,offer_accepted\n"
        'f1,c1,2024-03-01T00:00:00Z,price,"zu teuer, ärgerlich\nzweite Zeile ✓",YES\n'
        'f2,c2,2024-03-01T00:00:00Z,other,"",F\n',
    )
    load_directory(folder, url=fresh_db)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("set timezone = 'UTC'")
        got = conn.execute(
            "select amount::text, attempt_number, subscription_id, failure_code from raw.payments order by attempt_number"
        ).fetchall()
        assert [g[0] for g in got] == [
            "0.00",
            "0.01",
            "0.10",
            "0.01",
            "19.99",
            "1234.50",
            "12345678.90",
            "9999999999.99",
            "7.00",
        ]
        assert [g[1] for g in got] == list(range(1, 10))
        assert got[0][2:] == (None, None) and got[1][2:] == ("s1", "card_expired")
        assert conn.execute(
            "select attempted_at::text from raw.payments where payment_id = 'p0'"
        ).fetchone() == ("2024-03-01 06:30:00.123456+00",)
        fb = conn.execute(
            "select free_text, offer_accepted, subscription_id, offer_shown from raw.cancellation_feedback order by 1"
        )
        assert fb.fetchall() == [
            ("zu teuer, ärgerlich\nzweite Zeile ✓", True, None, None),
            (None, False, None, None),
        ]


def test_numeric_too_large_for_the_column_is_rejected(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "big")
    write(folder, "orders.csv", ORDERS + "o4,c1,2024-02-01T00:00:00Z,10000000000,0\n")
    with pytest.raises(
        LoadError, match=r"orders\.csv, row 4, column amount: .*too large for numeric\(12,2\)"
    ):
        load_directory(folder, url=fresh_db)


def test_big_first_load_rebuilds_the_key_and_still_catches_duplicates(fresh_db, tmp_path, monkeypatch):
    import retention.loader as loader

    monkeypatch.setattr(loader, "REBUILD_KEY_ROWS", 0)
    folder = good_folder(tmp_path / "rebuild")
    write(
        folder,
        "payments.csv",
        "payment_id,customer_id,due_at,attempted_at,attempt_number,amount,status\n"
        "p1,c1,2024-03-01T00:00:00Z,2024-03-01T00:00:00Z,1,10,succeeded\n",
    )
    load_directory(folder, url=fresh_db)
    before = counts(fresh_db)
    assert {t.mode for t in load_directory(folder, url=fresh_db).tables} == {"upsert"}  # re-delivery, rebuilt
    assert counts(fresh_db) == before
    redelivery = tmp_path / "redelivery"
    redelivery.mkdir()
    write(redelivery, "orders.csv", ORDERS + "o1,c3,2024-02-09T00:00:00Z,1,0\n")
    with pytest.raises(
        LoadError, match=r"orders\.csv, row 4, column order_id: duplicate primary key 'o1' \(first at row 1\)"
    ):
        load_directory(redelivery, url=fresh_db)
    assert counts(fresh_db) == before
    with psycopg.connect(fresh_db) as conn:
        pk = conn.execute(
            "select pg_get_constraintdef(oid) from pg_constraint where conrelid = 'raw.orders'::regclass "
            "and contype = 'p'"
        ).fetchone()
    assert pk == ("PRIMARY KEY (order_id)",)
    # the payments' lookup index was dropped for the COPY and built again after it
    assert _payments_lookup_index(fresh_db) == [
        ("CREATE INDEX payments__lookup ON raw.payments USING btree (customer_id, due_at)",)
    ]
    dup = tmp_path / "dup"
    dup.mkdir()
    write(
        dup,
        "usage_events.csv",
        "event_id,customer_id,occurred_at,event_type\n5,c1,2024-01-01T00:00:00Z,x\n5,c1,2024-01-01T00:00:00Z,y\n",
    )
    with pytest.raises(
        LoadError, match=r"usage_events\.csv, row 2, column event_id: duplicate primary key '5'"
    ):
        load_directory(dup, url=fresh_db)
    with psycopg.connect(fresh_db) as conn:  # the key survived the rolled-back load
        assert conn.execute(
            "select count(*) from pg_constraint where conrelid = 'raw.usage_events'::regclass and contype = 'p'"
        ).fetchone() == (1,)
    # a re-delivery of payments rebuilds the key and the lookup index; when the key fails, the
    # rollback brings the dropped lookup index back with the old rows
    dup_payments = tmp_path / "dup_payments"
    dup_payments.mkdir()
    write(
        dup_payments,
        "payments.csv",
        "payment_id,customer_id,due_at,attempted_at,attempt_number,amount,status\n"
        "p2,c1,2024-04-01T00:00:00Z,2024-04-01T00:00:00Z,1,10,succeeded\n"
        "p2,c1,2024-04-01T00:00:00Z,2024-04-02T00:00:00Z,2,10,succeeded\n",
    )
    with pytest.raises(
        LoadError, match=r"payments\.csv, row 2, column payment_id: duplicate primary key 'p2'"
    ):
        load_directory(dup_payments, url=fresh_db)
    assert counts(fresh_db)["payments"] == 1
    assert _payments_lookup_index(fresh_db) == [
        ("CREATE INDEX payments__lookup ON raw.payments USING btree (customer_id, due_at)",)
    ]


def test_ensure_raw_tables_adds_columns_new_in_the_contract(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        ensure_raw_tables(conn, "raw")
        conn.execute("alter table raw.orders drop column discount_amount, drop column _source_file")
        ensure_raw_tables(conn, "raw")
        cols = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' and table_name = 'orders'"
            )
        }
    assert {"discount_amount", "_source_file", "_loaded_at"} <= cols


def test_value_the_server_rejects_is_mapped_back_to_part_file_and_row(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "nul")
    header = "event_id,customer_id,occurred_at,event_type\n"
    write(folder, "usage_events/part-0.csv", header + "1,c1,2024-03-01T00:00:00Z,login\n")
    write(
        folder,
        "usage_events/part-1.csv",
        header + "2,c1,2024-03-01T00:00:00Z,login\n3,c\x001,2024-03-01T00:00:00Z,x\n",
    )
    with pytest.raises(LoadError, match=r"usage_events/part-1\.csv, row 2, column customer_id: .*0x00"):
        load_directory(folder, url=fresh_db)
    assert counts(fresh_db).get("customers", 0) == 0


def test_timestamps_with_nanoseconds_and_offsets(fresh_db, tmp_path):
    folder = good_folder(tmp_path / "ns")
    write(
        folder,
        "usage_events.csv",
        "event_id,customer_id,occurred_at,event_type\n1,c1,2024-03-01T10:00:00.123456789+01:00,x\n",
    )
    load_directory(folder, url=fresh_db)
    with psycopg.connect(fresh_db) as conn:
        conn.execute("set timezone = 'UTC'")
        assert conn.execute("select occurred_at::text from raw.usage_events").fetchone() == (
            "2024-03-01 09:00:00.123456+00",
        )


def test_bom_crlf_header_only_and_empty_files(fresh_db, tmp_path):
    folder = tmp_path / "bom"
    folder.mkdir()
    (folder / "customers.csv").write_bytes(b"\xef\xbb\xbf" + CUSTOMERS.replace("\n", "\r\n").encode())
    write(folder, "orders.csv", ORDERS)
    write(folder, "payments.csv", "payment_id,customer_id,due_at,attempted_at,attempt_number,amount,status\n")
    report = load_directory(folder, url=fresh_db)
    assert report.rows == {"customers": 3, "orders": 3, "payments": 0}
    write(folder, "support_tickets.csv", "")
    with pytest.raises(LoadError, match=r"support_tickets\.csv: file is empty \(no header row\)"):
        load_directory(folder, url=fresh_db)
    (folder / "support_tickets.csv").unlink()
    (folder / "usage_events.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LoadError, match=r"usage_events\.csv\.gz: cannot read the header"):
        load_directory(folder, url=fresh_db)
