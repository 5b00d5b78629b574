"""A synthetic customer base with planted churn signal, in the documented feature columns.

Used by the unit tests, the benchmark (1M customers) and as a stand-in for the dbt marts when they are
not built.  Each customer has a hidden state per as-of date: most are healthy; some carry one of the five
churn reasons, which shows in that reason's signals and raises the churn probability.  The planted
reason of every row is returned (column ``planted_reason``) for evaluating reason codes only.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg

from ml import config

REASONS5 = ("price", "quality_fit", "service_failure", "involuntary", "moved_no_need")


def make_features(
    customers: int = 2000,
    dates: int = 30,
    *,
    seed: int = 0,
    end: date = date(2026, 11, 23),
    horizon_days: int = 60,
    risk_share: float = 0.18,
) -> pd.DataFrame:
    """fct_customer_features_asof-like frame: customers x weekly as-of dates ending at ``end``."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:07d}" for i in range(customers)], dtype=object)
    as_of = [end - timedelta(days=7 * k) for k in range(dates)][::-1]
    n = customers * len(as_of)
    frame = pd.DataFrame(
        {
            "customer_id": np.tile(ids, len(as_of)),
            "as_of_date": np.repeat(np.array(as_of, dtype=object), customers),
        }
    )
    sub = np.tile(rng.random(customers) < 0.6, len(as_of))
    tenure0 = np.tile(rng.integers(30, 1500, customers), len(as_of))
    engagement = np.tile(rng.gamma(2.0, 0.5, customers), len(as_of))
    risky = rng.random(n) < risk_share
    reason = np.where(risky, rng.integers(0, 5, n), -1)
    reason = np.where((reason == 3) & ~sub, 4, reason)  # only subscribers pay by card

    week = np.repeat(np.arange(len(as_of)), customers)
    f: dict[str, np.ndarray] = {}
    f["tenure_days"] = tenure0 + 7 * week
    f["is_subscriber"] = sub.astype(float)
    f["plan_price_monthly"] = np.where(sub, rng.choice([7.99, 12.99, 17.99], n), np.nan)
    f["days_to_renewal"] = np.where(sub, rng.integers(0, 31, n), np.nan)
    prior_use = rng.poisson(20 * engagement) / 1.0
    use_30 = rng.poisson(np.maximum(prior_use, 0.1)).astype(float)
    f["usage_events_prior_90d_per30"] = prior_use
    f["recency_days"] = rng.exponential(40, n).round()
    f["frequency_orders_365d"] = rng.poisson(4 * engagement).astype(float)
    f["monetary_365d"] = (f["frequency_orders_365d"] * rng.gamma(3, 12, n)).round(2)
    f["discount_share_365d"] = np.clip(rng.beta(1.2, 6, n), 0, 1)
    f["orders_prior_270d_per90"] = f["frequency_orders_365d"] / 4
    orders_90 = rng.poisson(np.maximum(f["orders_prior_270d_per90"], 0.05)).astype(float)
    f["categories_dropped_count"] = rng.poisson(0.2, n).astype(float)
    f["inquiries_without_order_30d"] = rng.poisson(0.05, n).astype(float)
    f["late_payments_90d"] = np.where(sub, rng.poisson(0.05, n), 0).astype(float)
    f["failed_payments_90d"] = np.where(sub, rng.poisson(0.03, n), 0).astype(float)
    f["payment_failed_unrecovered"] = np.zeros(n)
    f["open_tickets"] = rng.poisson(0.1, n).astype(float)
    f["unresolved_tickets"] = np.minimum(f["open_tickets"], rng.poisson(0.05, n)).astype(float)
    f["low_satisfaction_90d"] = rng.poisson(0.05, n).astype(float)
    f["error_events_30d"] = rng.poisson(0.3, n).astype(float)

    m = reason == 0  # price
    f["discount_share_365d"][m] = np.clip(rng.beta(6, 3, m.sum()), 0, 1)
    f["inquiries_without_order_30d"][m] += rng.integers(1, 4, m.sum())
    m = reason == 1  # quality/fit: usage and purchases fall
    use_30[m] = np.round(prior_use[m] * rng.uniform(0.1, 0.5, m.sum()))
    orders_90[m] = 0
    f["categories_dropped_count"][m] += rng.integers(1, 3, m.sum())
    m = reason == 2  # service failure
    f["unresolved_tickets"][m] += rng.integers(1, 4, m.sum())
    f["open_tickets"][m] = np.maximum(f["open_tickets"][m], f["unresolved_tickets"][m])
    f["error_events_30d"][m] += rng.integers(3, 15, m.sum())
    f["low_satisfaction_90d"][m] += rng.integers(0, 2, m.sum())
    m = reason == 3  # involuntary: failed payment not recovered
    f["failed_payments_90d"][m] += rng.integers(1, 4, m.sum())
    f["payment_failed_unrecovered"][m] = 1
    m = reason == 4  # moved / no need: abrupt stop
    use_30[m] = 0
    f["recency_days"][m] += rng.integers(60, 150, m.sum())
    orders_90[m] = 0
    f["usage_events_30d"] = use_30
    f["orders_90d"] = orders_90
    with np.errstate(divide="ignore", invalid="ignore"):
        f["usage_trend_pct"] = np.where(prior_use > 0, (use_30 / prior_use - 1) * 100, np.nan).round(1)
        f["purchase_freq_drop_pct"] = np.where(
            f["orders_prior_270d_per90"] > 0, (1 - orders_90 / f["orders_prior_270d_per90"]) * 100, np.nan
        ).round(1)
    for name in config.FEATURES:
        frame[name] = f[name]

    logit = (
        -3.6 + np.where(reason >= 0, 2.6, 0.0) + np.where(reason == 3, 1.0, 0.0) - 0.0004 * f["tenure_days"]
    )
    logit += np.where(reason == 4, 0.4, 0.0) + 0.1 * np.log1p(f["recency_days"])
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    known = np.array([d + timedelta(days=horizon_days) <= end for d in frame["as_of_date"]])
    frame[config.LABEL] = pd.array(np.where(known, churn, False), dtype="boolean")
    frame.loc[~known, config.LABEL] = pd.NA
    frame[config.LABEL_KNOWN] = known
    frame["customer_value"] = np.round(rng.gamma(2.0, 80.0, n), 2)
    frame["planted_reason"] = np.where(
        churn & (reason >= 0), np.array(REASONS5, dtype=object)[np.clip(reason, 0, 4)], "none"
    )
    return frame


def signals_from(features: pd.DataFrame) -> pd.DataFrame:
    """fct_customer_signals-like frame: the latest as-of date's rows, without labels, with the texts."""
    latest = features["as_of_date"].max()
    out = features.loc[features["as_of_date"] == latest].drop(
        columns=[config.LABEL, config.LABEL_KNOWN, "planted_reason"], errors="ignore"
    )
    out = out.reset_index(drop=True)
    out["top_dropped_category"] = np.where(out["categories_dropped_count"] > 0, "accessories", None)
    out["recent_error_codes"] = np.where(out["error_events_30d"] > 2, "E-PLAYBACK-502", None)
    return out


_PG_TYPES = {"b": "boolean", "i": "double precision", "f": "double precision", "O": "text", "U": "text"}


def _copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame, types: dict[str, str]) -> None:
    cols = ", ".join(f'"{c}" {types[c]}' for c in frame.columns)
    conn.execute(f"drop table if exists {table} cascade")
    conn.execute(f"create table {table} ({cols})")
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    with conn.cursor().copy(f"copy {table} from stdin with (format csv)") as copy:
        copy.write(buf.getvalue())


def write_tables(conn: psycopg.Connection, features: pd.DataFrame, schema: str = "analytics") -> None:
    """Create analytics.fct_customer_features_asof, fct_customer_signals and a minimal dim_customers."""
    conn.execute(f'create schema if not exists "{schema}"')
    bool_cols = {"is_subscriber", "payment_failed_unrecovered", config.LABEL, config.LABEL_KNOWN}
    types = {c: "double precision" for c in config.FEATURES}
    types.update(
        {"customer_id": "text", "as_of_date": "date", config.LABEL: "boolean", config.LABEL_KNOWN: "boolean"}
    )
    types.update({"top_dropped_category": "text", "recent_error_codes": "text"})
    feat = features.drop(columns=["customer_value", "planted_reason"], errors="ignore").copy()
    for c in bool_cols & set(feat.columns) - {config.LABEL, config.LABEL_KNOWN}:
        feat[c] = feat[c].map({1.0: True, 0.0: False})
        types[c] = "boolean"
    _copy_frame(conn, f'"{schema}"."fct_customer_features_asof"', feat, types)
    sig = signals_from(features).drop(columns=["customer_value"])
    for c in ("is_subscriber", "payment_failed_unrecovered"):
        sig[c] = sig[c].map({1.0: True, 0.0: False})
    _copy_frame(conn, f'"{schema}"."fct_customer_signals"', sig, types)
    latest = features.loc[
        features["as_of_date"] == features["as_of_date"].max(), ["customer_id", "customer_value"]
    ]
    dim = latest.assign(churned_at=None)
    _copy_frame(
        conn,
        f'"{schema}"."dim_customers"',
        dim,
        {"customer_id": "text", "customer_value": "double precision", "churned_at": "timestamptz"},
    )
