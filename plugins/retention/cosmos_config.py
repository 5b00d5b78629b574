"""Cosmos configuration objects, built once and imported by the DAG files.

No database access and no ``dbt ls`` at parse time: the project is loaded from the manifest
that the build step compiles (``retention dbt-parse`` / ``make``), and the profile is built
from the warehouse Airflow connection at execution time.
"""

from __future__ import annotations

from pathlib import Path

from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior, TestIndirectSelection
from cosmos.profiles import PostgresUserPasswordProfileMapping

from retention.settings import get_settings

_s = get_settings()
DBT_PROJECT_DIR = Path(_s.dbt_project_dir)
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

PROJECT_CONFIG = ProjectConfig(
    dbt_project_path=DBT_PROJECT_DIR,
    manifest_path=MANIFEST_PATH,
    project_name="retention",
    env_vars={
        "RETENTION_RAW_SCHEMA": _s.raw_schema,
        "RETENTION_ANALYTICS_SCHEMA": _s.analytics_schema,
        "RETENTION_CHURN_HORIZON_DAYS": str(_s.churn_horizon_days),
    },
)

PROFILE_CONFIG = ProfileConfig(
    profile_name="retention",
    target_name="default",
    profile_mapping=PostgresUserPasswordProfileMapping(
        conn_id=_s.airflow_conn_id,
        profile_args={"schema": _s.analytics_schema, "threads": _s.dbt_threads},
    ),
)

# Cautious indirect selection: a model's test task runs only the tests whose parents are all
# built by then; tests spanning several models (relationships) get their own task after all of
# their parents (should_detach_multiple_parents_tests). With dbt's default (eager), the test task
# of stg_raw__customers would run relationship tests of marts that do not exist yet.
EXECUTION_CONFIG = ExecutionConfig(
    execution_mode=ExecutionMode.LOCAL,
    invocation_mode=InvocationMode.DBT_RUNNER,
    test_indirect_selection=TestIndirectSelection.CAUTIOUS,
)


def render_config(select: list[str] | None = None, exclude: list[str] | None = None) -> RenderConfig:
    """Manifest load mode; tests run after each model (``after_each``)."""
    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        select=select or [],
        exclude=exclude or [],
        test_behavior=TestBehavior.AFTER_EACH,
        should_detach_multiple_parents_tests=True,
        emit_datasets=False,
    )
