"""Environment for running Airflow, dbt and GX in-process from this checkout.

``configure()`` fills in (never overrides) the variables Airflow reads at import time, from
the one configuration module: Airflow home and metadata DB in the state folder, the DAGs and
plugins folders, no examples, telemetry off, and the warehouse connection ``AIRFLOW_CONN_*``
built from ``WAREHOUSE_URL`` or the embedded server. Call it before importing airflow.
Production sets the same variables in docker-compose.yml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from retention.settings import PROJECT_ROOT, Settings, get_settings

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "GX_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "SCARF_ANALYTICS": "false",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
}


def connection_json(url: str, schema: str) -> str:
    """An Airflow connection (JSON form) for a Postgres URL.

    Cosmos' ``PostgresUserPasswordProfileMapping`` takes the connection's *schema* field as
    the dbname, so the database goes there; dbt's schema is set in ``profile_args``.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+psycopg"} or not parts.hostname:
        raise ValueError(f"not a postgresql:// URL with a host: {parts.scheme}://{parts.hostname}")
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "login": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "schema": parts.path.lstrip("/") or "postgres",
            "extra": {"application_name": "retention-pipeline"},
        }
    )


def configure(settings: Settings | None = None) -> dict[str, str]:
    """Set Airflow's variables (setdefault) and return what was set."""
    from retention.warehouse import warehouse_url

    s = settings or get_settings()
    home = Path(s.state_dir) / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    wanted = {
        **TELEMETRY_OFF,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins" / "airflow_plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "120",
        f"AIRFLOW_CONN_{s.airflow_conn_id.upper()}": connection_json(warehouse_url(s), s.analytics_schema),
        "DBT_PROFILES_DIR": str(Path(s.dbt_project_dir)),
    }
    applied = {}
    for key, value in wanted.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
