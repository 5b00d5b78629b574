"""The raw contract YAML is the single source of truth; check it parses and is complete."""

from __future__ import annotations

import pytest

from retention.contract import ContractError, load_contract
from retention.settings import PROJECT_ROOT

EXPECTED = {
    "customers",
    "subscriptions",
    "orders",
    "order_lines",
    "payments",
    "usage_events",
    "support_tickets",
    "cancellation_feedback",
    "email_events",
}


def test_contract_has_every_raw_table_with_keys_and_docs() -> None:
    contract = load_contract()
    assert set(contract) == EXPECTED
    assert {t for t, table in contract.items() if table.required} == {"customers"}
    for table in contract.values():
        assert table.description
        assert set(table.primary_key) <= set(table.column_names)
        for column in table.columns:
            assert column.description, f"{table.name}.{column.name} has no description"
            assert column.kind in {"text", "timestamp", "date", "integer", "numeric", "boolean"}
        for key in table.primary_key:
            assert not table.column(key).nullable


def test_ddl_adds_loader_columns_and_primary_key() -> None:
    ddl = load_contract()["orders"].ddl("raw")
    assert '"_loaded_at" timestamptz not null default now()' in ddl
    assert 'primary key ("order_id")' in ddl


def test_malformed_contract_is_named(tmp_path) -> None:
    bad = tmp_path / "sources.yml"
    bad.write_text(
        "sources:\n  - name: raw\n    tables:\n      - name: t\n        columns:\n          - name: a\n"
    )
    with pytest.raises(ContractError, match=r"raw.t.a has no data_type"):
        load_contract(bad)
    bad.write_text("not: [valid")
    with pytest.raises(ContractError, match="cannot read the raw contract"):
        load_contract(bad)


def test_readme_renders_the_contract() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in EXPECTED:
        assert f"`raw.{name}`" in readme, f"README.md lacks the contract of raw.{name}"


def test_readme_generated_sections_are_current() -> None:
    from retention.docs import README, render

    assert render(README.read_text()) == README.read_text(), "run `python -m retention.docs`"
