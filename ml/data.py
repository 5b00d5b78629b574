"""Warehouse I/O of the churn model: read the feature tables, write analytics.churn_scores.

Reads go through ``COPY (select ...) TO STDOUT`` (CSV) into pandas: a million rows in seconds.
Booleans are cast to integers in SQL, so every feature arrives numeric.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from ml import config
from ml.errors import MissingFeatureError
from ml.features import check_columns


def _schemas() -> tuple[str, str, str]:
    from retention.settings import get_settings

    s = get_settings()
    return s.analytics_schema, s.ops_schema, s.truth_schema


def qualified(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Column name -> data type ({} when the table does not exist)."""
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def require_table(
    conn: psycopg.Connection, schema: str, table: str, required: Sequence[str]
) -> dict[str, str]:
    cols = table_columns(conn, schema, table)
    if not cols:
        raise MissingFeatureError(f"table {schema}.{table} does not exist (build the dbt models first)")
    check_columns(list(cols), required, f"table {schema}.{table}")
    return cols


def _select_list(cols: dict[str, str], names: Sequence[str], alias: str = "t") -> str:
    parts = []
    for name in names:
        ref = f'{alias}."{name}"'
        parts.append(f'({ref})::int as "{name}"' if cols.get(name) == "boolean" else f'{ref} as "{name}"')
    return ", ".join(parts)


def read_sql_frame(conn: psycopg.Connection, sql: str, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Run ``sql`` (no parameters: literals only) through COPY and parse the CSV with pandas."""
    buf = io.BytesIO()
    with conn.cursor().copy(f"copy ({sql}) to stdout with (format csv, header true)") as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    dtypes = dict.fromkeys(text_columns, "string")
    frame = pd.read_csv(buf, dtype=dtypes, keep_default_na=False, na_values=[""])
    if "as_of_date" in frame.columns:
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame


def _date_list(dates: Sequence[date]) -> str:
    return ", ".join(f"date '{d.isoformat()}'" for d in dates)


def labelled_dates(conn: psycopg.Connection) -> list[tuple[date, int]]:
    """(as_of_date, rows) of the training table with known labels, oldest first."""
    analytics, _, _ = _schemas()
    require_table(
        conn,
        analytics,
        config.TRAINING_TABLE,
        [*config.KEY_COLUMNS, *config.FEATURES, config.LABEL, config.LABEL_KNOWN],
    )
    rows = conn.execute(
        f"select as_of_date, count(*) from {qualified(analytics, config.TRAINING_TABLE)} "
        f'where "{config.LABEL_KNOWN}" and "{config.LABEL}" is not null group by 1 order by 1'
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def load_training_rows(
    conn: psycopg.Connection, dates: Sequence[date], max_rows: int, rows_hint: int
) -> pd.DataFrame:
    """Labelled rows of these as-of dates (a deterministic customer sample when more than ``max_rows``),
    with today's customer_value from dim_customers (0 when unknown)."""
    analytics, _, _ = _schemas()
    cols = table_columns(conn, analytics, config.TRAINING_TABLE)
    has_dim = bool(table_columns(conn, analytics, config.CUSTOMERS_TABLE).get("customer_value"))
    sample = ""
    if rows_hint > max_rows:
        keep = max(1, int(10_000 * max_rows / rows_hint))
        sample = f" and mod(hashtext(t.customer_id::text)::bigint + 2147483648, 10000) < {keep}"
    value = "coalesce(d.customer_value, 0)::float8" if has_dim else "0::float8"
    join = (
        f" left join {qualified(analytics, config.CUSTOMERS_TABLE)} d on d.customer_id = t.customer_id"
        if has_dim
        else ""
    )
    sql = (
        f"select t.customer_id::text as customer_id, t.as_of_date, "
        f'{_select_list(cols, config.FEATURES)}, (t."{config.LABEL}")::int as "{config.LABEL}", '
        f"{value} as customer_value "
        f"from {qualified(analytics, config.TRAINING_TABLE)} t{join} "
        f'where t."{config.LABEL_KNOWN}" and t."{config.LABEL}" is not null '
        f"and t.as_of_date in ({_date_list(dates)}){sample}"
    )
    return read_sql_frame(conn, sql, text_columns=["customer_id"])


def load_scoring_rows(conn: psycopg.Connection, features: Sequence[str], as_of: date | None) -> pd.DataFrame:
    """Current signals (one row per customer) with customer_value and the texts reason codes quote."""
    analytics, _, _ = _schemas()
    cols = require_table(conn, analytics, config.SCORING_TABLE, [*config.KEY_COLUMNS])
    missing = [f for f in features if f not in cols]
    if missing:
        from ml.errors import FeatureMismatchError

        raise FeatureMismatchError(
            f"the champion needs feature(s) {', '.join(missing)} that table "
            f"{analytics}.{config.SCORING_TABLE} does not have: retrain on the current feature set"
        )
    dim = table_columns(conn, analytics, config.CUSTOMERS_TABLE)
    extras = [c for c in ("top_dropped_category", "recent_error_codes") if c in cols]
    extra_sql = "".join(f', t."{c}"::text as "{c}"' for c in extras)
    value = "coalesce(d.customer_value, 0)::float8" if "customer_value" in dim else "0::float8"
    join = (
        f" left join {qualified(analytics, config.CUSTOMERS_TABLE)} d on d.customer_id = t.customer_id"
        if "customer_value" in dim
        else ""
    )
    where = f" where t.as_of_date = date '{as_of.isoformat()}'" if as_of else ""
    sql = (
        f"select t.customer_id::text as customer_id, t.as_of_date, {_select_list(cols, features)}{extra_sql}, "
        f"{value} as customer_value from {qualified(analytics, config.SCORING_TABLE)} t{join}{where}"
    )
    return read_sql_frame(conn, sql, text_columns=["customer_id", *extras])


SCORES_DDL = """
create schema if not exists {schema};
create table if not exists {table} (
    customer_id        text not null,
    as_of_date         date not null,
    churn_probability  double precision not null check (churn_probability between 0 and 1),
    risk_tier          text not null check (risk_tier in ('high', 'medium', 'low')),
    reason_codes       jsonb not null,
    reason_category    text not null check (reason_category in
                         ('price', 'quality_fit', 'service_failure', 'involuntary', 'moved_no_need', 'unknown')),
    model_version      text not null,
    customer_value     double precision not null,
    expected_save_rate double precision not null,
    offer_cost         double precision not null,
    priority_score     double precision not null,
    scored_at          timestamptz not null default now(),
    primary key (customer_id, as_of_date)
);
create index if not exists churn_scores_asof_priority_idx on {table} (as_of_date, priority_score desc);
"""

SCORE_COLUMNS = (
    "customer_id",
    "as_of_date",
    "churn_probability",
    "risk_tier",
    "reason_codes",
    "reason_category",
    "model_version",
    "customer_value",
    "expected_save_rate",
    "offer_cost",
    "priority_score",
)


def ensure_scores_table(conn: psycopg.Connection) -> str:
    analytics, _, _ = _schemas()
    table = qualified(analytics, config.SCORES_TABLE)
    conn.execute(SCORES_DDL.format(schema=f'"{analytics}"', table=table))
    return table


def write_scores(conn: psycopg.Connection, frame: pd.DataFrame, as_of: date) -> int:
    """Replace the scores of ``as_of`` (delete + COPY) inside the caller's transaction."""
    table = ensure_scores_table(conn)
    conn.execute(f"delete from {table} where as_of_date = %s", (as_of,))
    buf = io.StringIO()
    frame.loc[:, list(SCORE_COLUMNS)].to_csv(buf, index=False, header=False, float_format="%.10g")
    cols = ", ".join(SCORE_COLUMNS)
    with conn.cursor().copy(f"copy {table} ({cols}) from stdin with (format csv)") as copy:
        copy.write(buf.getvalue())
    return len(frame)


def as_float(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
