"""``retention`` command line: one entry point, each command implemented in its own module.

    python -m retention.cli <command> [args]      (or the console script ``retention``)

Every command module exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "settings": ("retention.cli", "_settings"),
    "warehouse": ("retention.warehouse", "main"),
    "generate": ("retention.generator", "main"),
    "load": ("retention.loader", "main"),
    "dbt": ("retention.cli", "_dbt"),
    "dbt-parse": ("retention.cli", "_dbt_parse"),
    "sqlfluff-lint": ("retention.cli", "_sqlfluff_lint"),
    "gate": ("retention.quality.gate", "main"),
    "train": ("ml.cli", "train_main"),
    "score": ("ml.cli", "score_main"),
    "models": ("ml.cli", "models_main"),
    "outreach": ("retention.outreach.cli", "main"),
    "webhook": ("retention.outreach.webhook", "main"),
    "run-demo": ("retention.demo", "main"),
}

HELP = {
    "settings": "print every setting with its variable, default and current value",
    "warehouse": "start|stop|status|url of the embedded PostgreSQL",
    "generate": "write a seeded demo company as CSV/Parquet files",
    "load": "load contract files from a folder into schema raw",
    "dbt": "run a dbt command against the configured warehouse",
    "dbt-parse": "compile dbt_project/target/manifest.json (Cosmos reads it)",
    "sqlfluff-lint": "lint the dbt SQL with the project's .sqlfluff",
    "gate": "run the Great Expectations quality gate",
    "train": "train a challenger churn model and promote it if better",
    "score": "score every customer with the champion model",
    "models": "list the model registry, or roll back the champion",
    "outreach": "plan, preview and send campaigns",
    "webhook": "serve the SendGrid Event Webhook receiver",
    "run-demo": "start the warehouse, make the demo company and run every DAG end to end",
}


def _settings(argv: list[str]) -> int:
    from retention.settings import all_settings, get_settings

    s = get_settings()
    for setting in all_settings():
        value = s.values[setting.name]
        shown = "***" if "key" in setting.name and value else value
        print(f"{setting.env:36} = {shown!s:40}  (default {setting.default!r})")
    return 0


def _dbt(argv: list[str]) -> int:
    from retention.dbt_runner import DbtError, run_dbt
    from retention.warehouse import ensure_warehouse

    ensure_warehouse()
    try:
        run_dbt(argv)
    except DbtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _dbt_parse(argv: list[str]) -> int:
    """Parse needs no database: the profile's variables are filled from the settings."""
    from retention.dbt_runner import DbtError, run_dbt
    from retention.warehouse import warehouse_url

    try:
        run_dbt(["parse", "--no-partial-parse", "--quiet"], url=warehouse_url())
    except DbtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _sqlfluff_lint(argv: list[str]) -> int:
    """sqlfluff (dbt templater, the project's .sqlfluff) on every model, snapshot, test and macro."""
    import os
    import subprocess

    from retention.dbt_runner import profile_env
    from retention.settings import get_settings
    from retention.warehouse import ensure_warehouse, warehouse_url

    # dbt's templater opens a connection for models that introspect (is_incremental())
    ensure_warehouse()
    project = get_settings().dbt_project_dir
    paths = argv or [p for p in ("models", "snapshots", "tests", "analyses") if (project / p).exists()]
    env = {**os.environ, **profile_env(warehouse_url())}
    return subprocess.call(
        [sys.executable, "-m", "sqlfluff", "lint", *paths, "--disable-progress-bar", "--processes", "2"],
        cwd=project,
        env=env,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"} or argv[0] not in COMMANDS:
        print(__doc__)
        for name in COMMANDS:
            print(f"  {name:15} {HELP[name]}")
        return 0 if not argv or argv[0] in {"-h", "--help", "help"} else 2
    module, func = COMMANDS[argv[0]]
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
