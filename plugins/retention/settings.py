"""The one configuration module.

Every setting the project reads is declared here once, with its environment variable,
its default and what it means. Nothing else in the project reads ``os.environ`` for
project settings: it calls :func:`get_settings`.  ``python -m retention.cli settings``
prints the table; the README renders the same list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting has a value the project cannot use; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str
    kind: str = "str"  # str | int | float | bool | path | tz


_SETTINGS: list[Setting] = [
    # --- warehouse -------------------------------------------------------------------
    Setting(
        "warehouse_url",
        "WAREHOUSE_URL",
        "",
        "Postgres URL (postgresql://user:pass@host:port/db) of an existing warehouse. "
        "Empty: the project starts its own embedded PostgreSQL 16.",
    ),
    Setting(
        "state_dir",
        "RETENTION_STATE_DIR",
        ".state",
        "Git-ignored folder for the embedded database, Airflow home, outboxes, artefacts "
        "and reports (relative paths are taken from the project root).",
        "path",
    ),
    Setting(
        "embedded_port", "RETENTION_PG_PORT", "54329", "Loopback TCP port of the embedded PostgreSQL.", "int"
    ),
    Setting("embedded_db", "RETENTION_PG_DB", "retention", "Database name inside the embedded PostgreSQL."),
    Setting("raw_schema", "RETENTION_RAW_SCHEMA", "raw", "Schema of the raw data contract."),
    Setting(
        "analytics_schema",
        "RETENTION_ANALYTICS_SCHEMA",
        "analytics",
        "Schema dbt builds the marts (and staging views) in.",
    ),
    Setting(
        "ops_schema",
        "RETENTION_OPS_SCHEMA",
        "ops",
        "Schema of operational tables: model registry, outbox, decision log, suppressions, gate results.",
    ),
    Setting(
        "truth_schema",
        "RETENTION_TRUTH_SCHEMA",
        "ground_truth",
        "Schema of the generator's planted churn reasons. No model or mart reads it.",
    ),
    # --- time --------------------------------------------------------------------------
    Setting(
        "business_tz",
        "RETENTION_TIMEZONE",
        "Europe/Berlin",
        "IANA time zone of the business day (schedules, daily cut-off, reports).",
        "tz",
    ),
    Setting(
        "as_of_date",
        "RETENTION_AS_OF",
        "",
        "Freeze 'today' to this ISO date (demo data and tests). Empty: the DAG's logical date.",
    ),
    # --- demo data ---------------------------------------------------------------------
    Setting(
        "demo_customers",
        "RETENTION_DEMO_CUSTOMERS",
        "20000",
        "How many customers `make run` generates for the demo company.",
        "int",
    ),
    Setting("demo_seed", "RETENTION_DEMO_SEED", "42", "Seed of the demo company's generator.", "int"),
    # --- Airflow / dbt -----------------------------------------------------------------
    Setting(
        "airflow_conn_id",
        "RETENTION_AIRFLOW_CONN_ID",
        "warehouse",
        "Airflow connection id of the warehouse (built from WAREHOUSE_URL or the embedded server).",
    ),
    Setting("dbt_project_dir", "RETENTION_DBT_PROJECT_DIR", "dbt_project", "The dbt project.", "path"),
    Setting("dbt_threads", "RETENTION_DBT_THREADS", "2", "dbt threads.", "int"),
    Setting("dag_owner", "RETENTION_DAG_OWNER", "data-engineering", "Owner shown on every DAG."),
    Setting("dag_retries", "RETENTION_DAG_RETRIES", "2", "Task retries on every DAG.", "int"),
    Setting(
        "alert_webhook_url",
        "RETENTION_ALERT_WEBHOOK_URL",
        "",
        "Slack-compatible webhook for data-quality alerts and team digests. Empty: written "
        "to the state folder's alerts/ instead.",
    ),
    # --- quality gate ------------------------------------------------------------------
    Setting(
        "gate_volume_min_ratio",
        "RETENTION_GATE_VOLUME_MIN_RATIO",
        "0.5",
        "Quality gate: a table's row count below this share of its last accepted count is critical.",
        "float",
    ),
    Setting(
        "gate_freshness_warn_days",
        "RETENTION_GATE_FRESHNESS_WARN_DAYS",
        "2",
        "Quality gate: newest _loaded_at (or event time) older than this many days is a warning.",
        "int",
    ),
    Setting(
        "gate_freshness_error_days",
        "RETENTION_GATE_FRESHNESS_ERROR_DAYS",
        "7",
        "Quality gate: newest _loaded_at (or event time) older than this many days is critical.",
        "int",
    ),
    Setting(
        "gate_late_days",
        "RETENTION_GATE_LATE_DAYS",
        "3",
        "Quality gate: a newly loaded event older than the previous load's newest event by more "
        "than this many days arrived late.",
        "int",
    ),
    Setting(
        "gate_late_warn_share",
        "RETENTION_GATE_LATE_WARN_SHARE",
        "0.05",
        "Quality gate: share of late rows in the latest load that raises a warning.",
        "float",
    ),
    Setting(
        "gate_late_max_share",
        "RETENTION_GATE_LATE_MAX_SHARE",
        "0.25",
        "Quality gate: share of late rows in the latest load that stops the pipeline.",
        "float",
    ),
    Setting(
        "gate_future_tolerance_minutes",
        "RETENTION_GATE_FUTURE_TOLERANCE_MIN",
        "60",
        "Quality gate: clock skew allowed before a timestamp counts as in the future.",
        "int",
    ),
    # --- model -------------------------------------------------------------------------
    Setting(
        "churn_horizon_days",
        "RETENTION_CHURN_HORIZON_DAYS",
        "60",
        "Label: churned within the next N days of the as-of date.",
        "int",
    ),
    Setting(
        "promotion_margin",
        "RETENTION_PROMOTION_MARGIN",
        "0.005",
        "A challenger must beat the champion's validation PR AUC by this much.",
        "float",
    ),
    Setting(
        "quality_floor_auc",
        "RETENTION_QUALITY_FLOOR_AUC",
        "0.65",
        "A model whose validation ROC AUC is below this is never promoted.",
        "float",
    ),
    Setting(
        "ml_threads",
        "RETENTION_ML_THREADS",
        "0",
        "Threads of model training/scoring (OpenMP/BLAS). 0: all cores; 1 is faster on a busy machine.",
        "int",
    ),
    # --- outreach ----------------------------------------------------------------------
    Setting(
        "sendgrid_api_key",
        "SENDGRID_API_KEY",
        "",
        "SendGrid API key. Empty: request bodies go to the local file outbox instead.",
    ),
    Setting(
        "sendgrid_host",
        "SENDGRID_HOST",
        "https://api.sendgrid.com",
        "SendGrid API host (tests point it at a local fake).",
    ),
    Setting(
        "sendgrid_webhook_public_key",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "",
        "Base64 ECDSA public key that signs SendGrid's Event Webhook.",
    ),
    Setting("sender_email", "RETENTION_SENDER_EMAIL", "care@example.com", "From address of outreach."),
    Setting("sender_name", "RETENTION_SENDER_NAME", "Customer Care", "From name of outreach."),
    Setting(
        "unsubscribe_url",
        "RETENTION_UNSUBSCRIBE_URL",
        "https://example.com/unsubscribe",
        "Base of the one-click unsubscribe link (RFC 8058); the outbox key is appended.",
    ),
    Setting(
        "unsubscribe_mailto",
        "RETENTION_UNSUBSCRIBE_MAILTO",
        "unsubscribe@example.com",
        "Mailbox named in the List-Unsubscribe header.",
    ),
    Setting(
        "account_url",
        "RETENTION_ACCOUNT_URL",
        "https://example.com/account",
        "Customer account page linked from e-mails (e.g. to update a card after a failed payment).",
    ),
    Setting(
        "campaigns_file",
        "RETENTION_CAMPAIGNS_FILE",
        "plugins/retention/outreach/campaigns.yml",
        "Campaigns as code.",
        "path",
    ),
    Setting(
        "global_holdout_share",
        "RETENTION_GLOBAL_HOLDOUT",
        "0.05",
        "Share of customers never contacted by any campaign (global control group).",
        "float",
    ),
    Setting(
        "holdout_salt",
        "RETENTION_HOLDOUT_SALT",
        "retention-v1",
        "Salt of the deterministic holdout hash. Changing it reshuffles every control group.",
    ),
    Setting(
        "frequency_cap",
        "RETENTION_FREQUENCY_CAP",
        "3",
        "At most this many marketing messages per customer in the rolling window.",
        "int",
    ),
    Setting(
        "frequency_window_days",
        "RETENTION_FREQUENCY_WINDOW_DAYS",
        "7",
        "Rolling window of the frequency cap, in days.",
        "int",
    ),
    Setting(
        "quiet_hours_start",
        "RETENTION_QUIET_START",
        "21",
        "Quiet hours start (hour, customer's local time).",
        "int",
    ),
    Setting(
        "quiet_hours_end", "RETENTION_QUIET_END", "8", "Quiet hours end (hour, customer's local time).", "int"
    ),
    Setting(
        "sendgrid_batch_size",
        "RETENTION_SENDGRID_BATCH",
        "1000",
        "Personalizations per SendGrid request (SendGrid's maximum is 1000).",
        "int",
    ),
    Setting(
        "sendgrid_asm_group_id",
        "RETENTION_SENDGRID_ASM_GROUP",
        "0",
        "SendGrid unsubscribe group (ASM) of marketing mail; 0: none. Transactional mail (dunning) "
        "bypasses only the global unsubscribe list.",
        "int",
    ),
    Setting(
        "sendgrid_max_retries",
        "RETENTION_SENDGRID_MAX_RETRIES",
        "6",
        "Retries of a SendGrid request on 429, 5xx and timeouts.",
        "int",
    ),
    Setting(
        "sendgrid_timeout_s",
        "RETENTION_SENDGRID_TIMEOUT_S",
        "30",
        "Timeout of one SendGrid request, seconds.",
        "float",
    ),
    Setting(
        "sendgrid_max_rate_wait_s",
        "RETENTION_SENDGRID_MAX_RATE_WAIT_S",
        "120",
        "Longest wait for X-RateLimit-Reset after a SendGrid 429, seconds.",
        "float",
    ),
    Setting(
        "sendgrid_reconcile_grace_s",
        "RETENTION_SENDGRID_RECONCILE_GRACE_S",
        "900",
        "A request whose outcome is unknown (crash, timeout) and that Email Activity does not "
        "show is resent only after this many seconds (Email Activity lags behind Mail Send).",
        "float",
    ),
    Setting(
        "sendgrid_webhook_tolerance_s",
        "RETENTION_SENDGRID_WEBHOOK_TOLERANCE_S",
        "300",
        "Event Webhook requests whose signed timestamp is older (or newer) than this are rejected.",
        "float",
    ),
    Setting(
        "high_value_threshold",
        "RETENTION_HIGH_VALUE_THRESHOLD",
        "1000",
        "Customers at risk whose value exceeds this are also routed to a human team.",
        "float",
    ),
    Setting(
        "key_account_threshold",
        "RETENTION_KEY_ACCOUNT_THRESHOLD",
        "5000",
        "Value above which at-risk customers go to account managers.",
        "float",
    ),
    Setting(
        "team_emails",
        "RETENTION_TEAM_EMAILS",
        "support=support-team@example.com,billing=billing-team@example.com,"
        "account_managers=key-accounts@example.com",
        "Human teams' digest mailboxes, as team=address pairs.",
    ),
]

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in _SETTINGS}


def all_settings() -> list[Setting]:
    return list(_SETTINGS)


def _convert(setting: Setting, raw: str) -> Any:
    try:
        if setting.kind == "int":
            return int(raw)
        if setting.kind == "float":
            return float(raw)
        if setting.kind == "bool":
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if setting.kind == "path":
            path = Path(raw)
            return path if path.is_absolute() else PROJECT_ROOT / path
        if setting.kind == "tz":
            ZoneInfo(raw)
            return raw
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise SettingsError(f"setting {setting.env}={raw!r} is not a valid {setting.kind}: {exc}") from None
    return raw


@dataclass(frozen=True)
class Settings:
    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    @property
    def using_embedded_warehouse(self) -> bool:
        return not self.warehouse_url

    @property
    def team_email_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in self.team_emails.split(","))):
            team, sep, address = pair.partition("=")
            if not sep or "@" not in address:
                raise SettingsError(
                    f"setting RETENTION_TEAM_EMAILS has a bad pair {pair!r} (want team=address)"
                )
            out[team.strip()] = address.strip()
        return out


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values = {s.name: _convert(s, env.get(s.env, s.default)) for s in _SETTINGS}
    for name in ("quiet_hours_start", "quiet_hours_end"):
        if not 0 <= values[name] <= 23:
            raise SettingsError(f"setting {SETTINGS_BY_NAME[name].env}={values[name]} must be an hour 0-23")
    if not 1 <= values["sendgrid_batch_size"] <= 1000:
        raise SettingsError("setting RETENTION_SENDGRID_BATCH must be between 1 and 1000 (SendGrid's limit)")
    for name in ("global_holdout_share",):
        if not 0 <= values[name] < 1:
            raise SettingsError(f"setting {SETTINGS_BY_NAME[name].env}={values[name]} must be in [0, 1)")
    url = values["warehouse_url"]
    if url and not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise SettingsError(f"setting WAREHOUSE_URL must be a postgresql:// URL, got {url.split('@')[-1]!r}")
    return Settings(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Tests call ``get_settings.cache_clear()``."""
    return load_settings()


def settings_table_markdown() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in _SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
