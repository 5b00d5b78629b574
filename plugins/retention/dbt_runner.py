"""Run dbt in-process against the configured warehouse (outside Airflow).

Inside Airflow, Cosmos runs dbt with a profile built from the warehouse connection; from the
command line, the benchmarks and the tests, this module fills the profile's environment
variables from ``WAREHOUSE_URL`` or the embedded server and calls ``dbtRunner``.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from retention.settings import get_settings


class DbtError(RuntimeError):
    """A dbt command failed; the message lists the failing nodes."""


def profile_env(url: str) -> dict[str, str]:
    s = get_settings()
    parts = urlsplit(url)
    return {
        "RETENTION_DBT_HOST": parts.hostname or "127.0.0.1",
        "RETENTION_DBT_PORT": str(parts.port or 5432),
        "RETENTION_DBT_USER": unquote(parts.username or ""),
        "RETENTION_DBT_PASSWORD": unquote(parts.password or ""),
        "RETENTION_DBT_DBNAME": parts.path.lstrip("/"),
        "RETENTION_RAW_SCHEMA": s.raw_schema,
        "RETENTION_ANALYTICS_SCHEMA": s.analytics_schema,
        "RETENTION_DBT_THREADS": str(s.dbt_threads),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def run_dbt(args: list[str], url: str | None = None, extra_env: dict[str, str] | None = None) -> object:
    """Run ``dbt <args>`` in the project; raise :class:`DbtError` naming failed nodes."""
    from dbt.cli.main import dbtRunner

    from retention.db import default_url

    s = get_settings()
    env = profile_env(url or default_url())
    env.update(extra_env or {})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cwd = os.getcwd()
    try:
        os.chdir(s.dbt_project_dir)
        full = [*args]
        if (args and args[0] not in {"parse", "deps", "clean"}) or (args and args[0] == "parse"):
            full += ["--profiles-dir", str(s.dbt_project_dir)]
        result = dbtRunner().invoke(full)
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not result.success:
        failed = []
        res = getattr(result, "result", None)
        for r in getattr(res, "results", None) or []:
            status = str(getattr(r, "status", ""))
            if status.lower() in {"error", "fail", "runtimeerror"}:
                failed.append(f"{r.node.unique_id}: {getattr(r, 'message', '')}")
        detail = "; ".join(failed) or str(result.exception)
        raise DbtError(f"dbt {' '.join(args)} failed: {detail}")
    return result.result
