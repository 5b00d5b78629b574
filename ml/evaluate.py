"""Evaluation against the generator's planted truth (``ground_truth.churn_truth``).

Evaluation only: no model, score or mart reads the ground truth.  For the champion's validation window
(rows of fct_customer_features_asof with a known label), every row whose customer really churned within
the horizon has its top-driver reason category compared with the planted ``true_reason``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ml import config


def reason_match(url: str | None = None, version: str | None = None) -> dict[str, Any]:
    """Share of actual churners (validation window) whose reason_category equals the planted reason."""
    from ml import data, registry
    from ml.errors import NoChampionError
    from ml.features import to_matrix
    from ml.reasons import top_reasons
    from retention.db import connect
    from retention.settings import get_settings

    s = get_settings()
    with connect(url) as conn:
        row = registry.get_model(conn, version) if version else registry.get_champion(conn)
        if row is None:
            raise NoChampionError(f"model {version or 'champion'} is not in the registry")
        artefact = row.load()
        valid_dates = [
            d
            for (d,) in conn.execute(
                f"select distinct as_of_date from {data.qualified(s.analytics_schema, config.TRAINING_TABLE)} "
                "where as_of_date between %s and %s order by 1",
                (row.validation_window_start, row.validation_window_end),
            ).fetchall()
        ]
        frame = data.load_training_rows(conn, valid_dates, 10**9, 0)
        truth = conn.execute(
            f'select customer_id, churned_at::date, true_reason from "{s.truth_schema}".churn_truth'
        ).fetchall()
    churned = frame[frame[config.LABEL].astype(bool)].reset_index(drop=True)
    planted = planted_reasons(churned, truth, s.churn_horizon_days)
    X = to_matrix(churned, artefact["features"])
    cats = top_reasons(X, artefact["features"], artefact["reference"], with_json=False).category
    return {
        "model_version": row.version,
        "validation_window": f"{row.validation_window_start}..{row.validation_window_end}",
        **match_summary(cats, planted),
    }


def planted_reasons(churned: Any, truth: list[tuple], horizon_days: int) -> np.ndarray:
    """Planted reason of each churned row (customer_id, as_of_date), None when the truth has no churn of
    that customer inside the row's horizon."""
    by_customer = {r[0]: (r[1], r[2]) for r in truth}
    out = []
    for cid, as_of in zip(churned["customer_id"], churned["as_of_date"], strict=True):
        hit = by_customer.get(cid)
        ok = hit is not None and 0 <= (hit[0] - as_of).days <= horizon_days
        out.append(hit[1] if ok else None)
    return np.array(out, dtype=object)


def match_summary(categories: np.ndarray, planted: np.ndarray) -> dict[str, Any]:
    """Match rate of predicted reason categories vs planted reasons (rows without a planted reason are
    left out), overall and per planted reason."""
    keep = np.array([p is not None and p != "none" for p in planted], dtype=bool)
    cats, truth = np.asarray(categories, dtype=object)[keep], np.asarray(planted, dtype=object)[keep]
    per_reason = {}
    for reason in sorted(set(truth)):
        m = truth == reason
        per_reason[reason] = {
            "churners": int(m.sum()),
            "matched": round(float(np.mean(cats[m] == reason)), 4),
            "predicted": dict(Counter(cats[m]).most_common(3)),
        }
    return {
        "churners_with_truth": int(keep.sum()),
        "match_rate": round(float(np.mean(cats == truth)), 4) if keep.any() else None,
        "per_reason": per_reason,
    }
