"""Run dbt in-process against the configured warehouse (outside Airflow).

Inside Airflow, Cosmos runs dbt with a profile built from the warehouse connection; from the
command line, the benchmarks and the tests, this module fills the profile's environment
variables from ``WAREHOUSE_URL`` or the embedded server and calls ``dbtRunner``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
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


def _error_collector(into: list[str]) -> Callable[[Any], None]:
    """A dbtRunner callback that keeps the text of every error-level event dbt logs."""

    def collect(event: Any) -> None:
        if event.info.level == "error":
            into.append(str(event.info.msg).strip())

    return collect


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
    logged_errors: list[str] = []
    try:
        os.chdir(s.dbt_project_dir)
        full = [*args]
        if (args and args[0] not in {"parse", "deps", "clean"}) or (args and args[0] == "parse"):
            full += ["--profiles-dir", str(s.dbt_project_dir)]
        result = dbtRunner(callbacks=[_error_collector(logged_errors)]).invoke(full)
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
                # a build's results carry the node; run-operation's (RunResultOutput) only its id
                node = getattr(r, "node", None)
                unique_id = node.unique_id if node is not None else getattr(r, "unique_id", "?")
                # run-operation leaves the message empty and only logs the error
                message = getattr(r, "message", None) or " ".join(logged_errors)
                failed.append(f"{unique_id}: {message}")
        detail = "; ".join(failed) or str(result.exception)
        raise DbtError(f"dbt {' '.join(args)} failed: {detail}")
    return result.result
