"""The DAG tasks' callables import their logic lazily; prove every such import resolves.

A misspelt module or function in ``retention.pipeline`` would only surface when the task runs;
this test finds each ``from X import Y`` inside the functions and checks that it exists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from datetime import date

import pytest

from retention import pipeline


def _lazy_imports() -> list[tuple[str, str, str]]:
    tree = ast.parse(inspect.getsource(pipeline))
    found = []
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and node.module:
                found += [(func.name, node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize(("function", "module", "name"), _lazy_imports())
def test_lazy_import_resolves(function: str, module: str, name: str) -> None:
    if module.startswith("airflow"):
        pytest.skip("airflow is imported only inside a task")
    assert hasattr(importlib.import_module(module), name), f"{function}: {module}.{name} does not exist"


def test_there_are_lazy_imports_to_check() -> None:
    assert len(_lazy_imports()) >= 10


def test_as_of_comes_from_the_setting_or_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.settings import get_settings

    monkeypatch.delenv("RETENTION_AS_OF", raising=False)
    get_settings.cache_clear()
    assert pipeline.resolve_as_of("2026-03-01") == date(2026, 3, 1)
    assert pipeline.dbt_vars_template() == {"as_of_date": "{{ ds }}"}
    with pytest.raises(ValueError, match="no logical date"):
        pipeline.resolve_as_of(None)
    monkeypatch.setenv("RETENTION_AS_OF", "2026-06-30")
    get_settings.cache_clear()
    assert pipeline.resolve_as_of("2026-03-01") == date(2026, 6, 30)
    assert pipeline.dbt_vars_template() == {"as_of_date": "2026-06-30"}


def test_bad_data_fails_without_retries() -> None:
    exc = pipeline.fail_fast(ValueError("raw.orders.amount is negative"))
    assert "raw.orders.amount is negative" in str(exc)
    assert type(exc).__name__ in {"AirflowFailException", "DataProblem"}


def test_prepare_raw_refuses_an_empty_warehouse(use_db: str) -> None:
    with pytest.raises(Exception, match=r"raw.customers is empty"):
        pipeline.prepare_raw()
