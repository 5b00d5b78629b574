"""Model monitoring after scoring.  DAG entry point: :func:`monitor`.

Writes one row per run to ``ops.model_monitoring`` (score deciles, score PSI vs the validation scores,
the largest feature PSI, realised AUC of past scores) and one row per feature to
``ops.model_feature_drift`` (PSI of today's fct_customer_signals vs the champion's training window,
null shares, status ok | watch | drift; thresholds in ml/config.py).

Realised AUC: past ``churn_scores`` whose horizon is over are joined to the churn that happened in
(as_of_date, as_of_date + horizon]: ``analytics.fct_churn_events`` when it exists, else
``dim_customers.churned_at``.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import numpy as np
import psycopg

from ml import config
from ml.errors import NoChampionError, ScoringInputError

MONITOR_DDL = """
create schema if not exists {ops};
create table if not exists {ops}.model_monitoring (
    run_id             bigserial primary key,
    monitored_at       timestamptz not null default now(),
    model_version      text not null,
    as_of_date         date not null,
    rows_scored        integer not null,
    mean_probability   double precision,
    score_deciles      jsonb not null,
    score_psi          double precision,
    max_feature_psi    double precision,
    drifted_features   jsonb not null,
    realised           jsonb not null,
    risk_tiers         jsonb not null
);
create table if not exists {ops}.model_feature_drift (
    run_id          bigint not null references {ops}.model_monitoring (run_id) on delete cascade,
    model_version   text not null,
    as_of_date      date not null,
    feature         text not null,
    psi             double precision,
    null_share      double precision,
    ref_null_share  double precision,
    status          text not null check (status in ('ok', 'watch', 'drift', 'missing')),
    primary key (run_id, feature)
);
"""


def psi_status(value: float | None) -> str:
    if value is None:
        return "missing"
    if value > config.PSI_DRIFT:
        return "drift"
    return "watch" if value > config.PSI_WATCH else "ok"


def feature_psi(profile: dict[str, Any], X: np.ndarray, features: list[str]) -> dict[str, dict[str, Any]]:
    """PSI of each feature's current distribution against the training profile's buckets."""
    from ml.metrics import psi
    from ml.modeling import bucket_shares

    out: dict[str, dict[str, Any]] = {}
    for name, ref in profile.get("features", {}).items():
        if name not in features or X.shape[0] == 0:
            out[name] = {
                "psi": None,
                "null_share": None,
                "ref_null_share": ref["null_share"],
                "status": "missing",
            }
            continue
        col = X[:, features.index(name)]
        shares = bucket_shares(col, ref["edges"])
        value = psi(np.asarray(ref["shares"]), shares)
        out[name] = {
            "psi": round(value, 5),
            "null_share": round(float(np.isnan(col).mean()), 5) if col.size else None,
            "ref_null_share": ref["null_share"],
            "status": psi_status(value),
        }
    return out


def score_psi(ref_deciles: list[float], p: np.ndarray) -> float | None:
    from ml.metrics import psi

    if not ref_deciles or p.size == 0:
        return None
    ref = np.full(len(ref_deciles) + 1, 1.0 / (len(ref_deciles) + 1))
    counts = np.bincount(np.searchsorted(np.asarray(ref_deciles), p, side="left"), minlength=ref.size)
    return round(psi(ref, counts / counts.sum()), 5)


def realised_auc(conn: psycopg.Connection, latest: date, horizon: int) -> list[dict[str, Any]]:
    """AUC of past scores whose horizon ended by ``latest`` (churn events, else dim_customers.churned_at)."""
    from sklearn.metrics import roc_auc_score

    from ml import data

    analytics, _, _ = data._schemas()
    scores = data.qualified(analytics, config.SCORES_TABLE)
    cutoff = latest - timedelta(days=horizon)
    past = [
        r[0]
        for r in conn.execute(
            f"select distinct as_of_date from {scores} where as_of_date <= %s order by 1 desc limit %s",
            (cutoff, config.REALISED_MAX_DATES),
        ).fetchall()
    ]
    if not past:
        return []
    if data.table_columns(conn, analytics, "fct_churn_events"):
        source = "fct_churn_events"
        churn = f"select customer_id, churned_at from {data.qualified(analytics, 'fct_churn_events')}"
    elif data.table_columns(conn, analytics, config.CUSTOMERS_TABLE).get("churned_at"):
        source = "dim_customers.churned_at"
        churn = (
            f"select customer_id, churned_at from {data.qualified(analytics, config.CUSTOMERS_TABLE)} "
            "where churned_at is not null"
        )
    else:
        return [{"as_of_date": str(d), "auc": None, "note": "no churn outcome table"} for d in past]
    out = []
    for d in sorted(past):
        rows = conn.execute(
            f"""select s.churn_probability, s.model_version,
                       exists (select 1 from ({churn}) c where c.customer_id = s.customer_id
                               and c.churned_at::date > s.as_of_date
                               and c.churned_at::date <= s.as_of_date + %s) as churned
                from {scores} s where s.as_of_date = %s""",
            (horizon, d),
        ).fetchall()
        p = np.array([r[0] for r in rows], dtype=float)
        y = np.array([bool(r[2]) for r in rows], dtype=int)
        versions = sorted({r[1] for r in rows})
        auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
        out.append(
            {
                "as_of_date": str(d),
                "rows": len(rows),
                "churners": int(y.sum()),
                "auc": round(auc, 5) if auc is not None else None,
                "model_versions": versions,
                "outcome_source": source,
            }
        )
    return out


def monitor(url: str | None = None, as_of: date | None = None) -> dict[str, Any]:
    """Drift and realised-performance report of the latest scores; returns the summary it wrote."""
    from ml import data, registry
    from ml.features import to_matrix
    from retention.db import connect
    from retention.settings import get_settings

    s = get_settings()
    ops = f'"{s.ops_schema}"'
    with connect(url) as conn:
        champion = registry.get_champion(conn)
        if champion is None:
            raise NoChampionError("the registry has no champion model: nothing to monitor")
        data.ensure_scores_table(conn)
        scores_t = data.qualified(s.analytics_schema, config.SCORES_TABLE)
        if as_of is None:
            row = conn.execute(f"select max(as_of_date) from {scores_t}").fetchone()
            as_of = row[0] if row else None
        if as_of is None:
            raise ScoringInputError("analytics.churn_scores is empty: score before monitoring")
        p = np.array(
            [
                r[0]
                for r in conn.execute(
                    f"select churn_probability from {scores_t} where as_of_date = %s", (as_of,)
                ).fetchall()
            ],
            dtype=float,
        )
        tiers = dict(
            conn.execute(
                f"select risk_tier, count(*) from {scores_t} where as_of_date = %s group by 1", (as_of,)
            ).fetchall()
        )
        cols = data.table_columns(conn, s.analytics_schema, config.SCORING_TABLE)
        present = [f for f in config.FEATURES if f in cols]
        frame = data.load_scoring_rows(conn, present, as_of)
        if frame.empty:  # the signals were rebuilt for a later day since scoring: compare today's
            frame = data.load_scoring_rows(conn, present, None)
        X = to_matrix(frame, present)
        drift = feature_psi(champion.training_profile, X, present)
        realised = realised_auc(conn, as_of, s.churn_horizon_days)
        deciles = np.quantile(p, np.linspace(0.1, 0.9, 9)).round(5).tolist() if p.size else []
        s_psi = score_psi(champion.training_profile.get("score_deciles", []), p)
        psis = [v["psi"] for v in drift.values() if v["psi"] is not None]
        drifted = sorted(k for k, v in drift.items() if v["status"] in ("drift", "missing"))
        conn.execute(MONITOR_DDL.format(ops=ops))
        run_id = conn.execute(
            f"""insert into {ops}.model_monitoring (model_version, as_of_date, rows_scored, mean_probability,
                score_deciles, score_psi, max_feature_psi, drifted_features, realised, risk_tiers)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning run_id""",
            (
                champion.version,
                as_of,
                int(p.size),
                float(p.mean()) if p.size else None,
                json.dumps(deciles),
                s_psi,
                max(psis) if psis else None,
                json.dumps(drifted),
                json.dumps(realised),
                json.dumps(tiers),
            ),
        ).fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany(
                f"""insert into {ops}.model_feature_drift
                    (run_id, model_version, as_of_date, feature, psi, null_share, ref_null_share, status)
                    values (%s, %s, %s, %s, %s, %s, %s, %s)""",
                [
                    (
                        run_id,
                        champion.version,
                        as_of,
                        k,
                        v["psi"],
                        v["null_share"],
                        v["ref_null_share"],
                        v["status"],
                    )
                    for k, v in drift.items()
                ],
            )
    return {
        "run_id": run_id,
        "model_version": champion.version,
        "as_of_date": str(as_of),
        "rows_scored": int(p.size),
        "score_deciles": deciles,
        "score_psi": s_psi,
        "max_feature_psi": max(psis) if psis else None,
        "drifted_features": drifted,
        "realised": realised,
    }
