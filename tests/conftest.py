"""Shared fixtures.

The suite runs against a real PostgreSQL: the embedded one (started on demand, in the
state folder) or the server named by ``WAREHOUSE_URL``.  It never touches the demo
database: every test session works in databases of its own, dropped at the end.

* ``warehouse_server`` (session): the server is up; yields an admin URL.
* ``fresh_db`` (function): the URL of a brand-new empty database for this test.
* ``use_db`` (function): like ``fresh_db`` and also points the settings (``WAREHOUSE_URL``)
  at it, for code that reads the default warehouse.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "plugins", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")

from retention.db import url_with_database  # noqa: E402  (plugins/ is on the path from here)

SHARED_SPECS = ROOT.parent / "shared" / "specs"
_SESSION_TAG = uuid.uuid4().hex[:8]
_EXTERNAL_URL = os.environ.get("WAREHOUSE_URL", "")


@pytest.fixture(scope="session")
def warehouse_server() -> Iterator[str]:
    from retention.settings import get_settings
    from retention.warehouse import ensure_warehouse

    get_settings.cache_clear()
    url = ensure_warehouse()
    yield url_with_database(url, "postgres")


_created: list[str] = []


@pytest.fixture
def fresh_db(warehouse_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    import psycopg

    name = f"t_{_SESSION_TAG}_{len(_created)}_{request.node.name[:30]}".lower()
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    _created.append(name)
    yield url_with_database(warehouse_server, name)
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def use_db(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from retention.settings import get_settings

    monkeypatch.setenv("WAREHOUSE_URL", fresh_db)
    get_settings.cache_clear()
    yield fresh_db
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    from retention.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- a small generated company, loaded and built once per session ---------------------------------

COMPANY_AS_OF = "2026-06-30"
COMPANY_CUSTOMERS = 1500
COMPANY_SEED = 7


@pytest.fixture(scope="session")
def built_company(warehouse_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database holding a generated company (1,500 customers, seed 7, as of 2026-06-30):
    loaded into raw, ground truth loaded, and ``dbt build`` run. Shared by the whole session:
    treat it as read-only, or take a private copy with ``company_copy``."""
    import psycopg

    from retention.dbt_runner import run_dbt
    from retention.generator import generate, load_truth
    from retention.loader import load_directory

    name = f"t_{_SESSION_TAG}_company"
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = url_with_database(warehouse_server, name)
    out = tmp_path_factory.mktemp("company") / "data"
    from datetime import date

    generate(out, customers=COMPANY_CUSTOMERS, seed=COMPANY_SEED, end_date=date.fromisoformat(COMPANY_AS_OF))
    load_directory(out, url=url)
    with psycopg.connect(url) as conn:
        load_truth(out, conn)
        conn.commit()
    run_dbt(["build", "--quiet"], url=url, extra_env={"RETENTION_AS_OF": COMPANY_AS_OF})
    yield url
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def clone_database(admin_url: str, source: str, name: str) -> str:
    """Create database ``name`` as a template clone of ``source``; return its URL. Sessions still
    connected to the source are ended first (Postgres copies only an unused template)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (source,),
        )
        conn.execute(f'create database "{name}" template "{source}"')
    return url_with_database(admin_url, name)


@pytest.fixture
def company_copy(built_company: str, warehouse_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private copy of ``built_company`` (Postgres template clone), with the settings pointed at
    it and the as-of date frozen to the company's date. Free to modify."""
    import psycopg

    from retention.settings import get_settings

    source = built_company.rsplit("/", 1)[1]
    name = f"{source}_{len(_created)}"
    url = clone_database(warehouse_server, source, name)
    _created.append(name)
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("RETENTION_AS_OF", COMPANY_AS_OF)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    with psycopg.connect(warehouse_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session", autouse=True)
def dag_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The DAG runs (tests/dag_runs.py) the selected tests name with ``@pytest.mark.dag_run``,
    started in the background before the first test; None when no selected test needs one."""
    wanted = list(
        dict.fromkeys(m.args[0] for item in request.session.items for m in item.iter_markers("dag_run"))
    )
    if not wanted:
        yield None
        return
    from dag_runs import BackgroundDagRuns, UnstartedDagRuns

    runs = None
    try:
        company = request.getfixturevalue("built_company")
        server = request.getfixturevalue("warehouse_server")
        runs = BackgroundDagRuns(server, company, COMPANY_AS_OF, tmp_path_factory.mktemp("dag_runs"))
        runs.start(wanted)
    except Exception as exc:  # the DAG tests fail with this; the rest of the suite runs on
        if runs is not None:
            with contextlib.suppress(Exception):  # drop the copies made before the failure
                runs.close()
        yield UnstartedDagRuns(exc)
        return
    try:
        yield runs
    finally:
        runs.close()
