"""Score every customer with the champion and write ``analytics.churn_scores``.  DAG entry point: :func:`score`.

Risk tiers (calibrated probability, ml/config.py ``RISK_TIERS``): high >= 0.40, medium >= 0.15, else low.
priority_score = churn_probability * customer_value * expected_save_rate - offer_cost, with the save rate
and offer cost of the customer's reason category (ml/config.py).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ml import config
from ml.errors import FeatureMismatchError, NoChampionError, ScoringInputError
from ml.features import check_not_all_null, feature_list_hash, to_matrix
from ml.modeling import kind_features, predict_proba, thread_limit
from ml.reasons import top_reasons

#: below this many rows the model and the reason codes run one after the other (a thread costs more)
OVERLAP_MIN_ROWS = 50_000


def risk_tier_codes(p: np.ndarray) -> np.ndarray:
    """Index into config.RISK_TIERS of each probability's tier."""
    out = np.full(p.shape, len(config.RISK_TIERS) - 1, dtype=np.int8)
    for i in range(len(config.RISK_TIERS) - 2, -1, -1):
        out[p >= config.RISK_TIERS[i][1]] = i
    return out


def risk_tiers(p: np.ndarray) -> np.ndarray:
    return np.array([t for t, _ in config.RISK_TIERS], dtype=object)[risk_tier_codes(p)]


def score_frame(artefact: dict[str, Any], frame: pd.DataFrame, version: str) -> pd.DataFrame:
    """Scores of a frame holding customer_id, as_of_date, the model's features, customer_value and
    (optionally) top_dropped_category / recent_error_codes.  Vectorised end to end.

    The model (compiled code that releases the GIL, OpenMP threads per RETENTION_ML_THREADS) runs in a
    worker thread while this thread builds the reason codes, which need only the features: with
    ``ml_threads`` = 1 everything runs one after the other on one core, otherwise the two overlap."""
    features = list(artefact["features"])
    X = to_matrix(frame, features)
    from retention.settings import get_settings

    if int(get_settings().ml_threads) == 1 or len(frame) < OVERLAP_MIN_ROWS:
        p = predict_proba(artefact, X)
        rc = top_reasons(X, features, artefact["reference"], context=frame)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-predict") as pool:
            future = pool.submit(predict_proba, artefact, X)
            rc = top_reasons(X, features, artefact["reference"], context=frame)
            p = future.result()
    save = np.array([config.EXPECTED_SAVE_RATE[r] for r in config.REASONS])[rc.category_code]
    cost = np.array([config.OFFER_COST[r] for r in config.REASONS])[rc.category_code]
    value = (
        np.nan_to_num(frame["customer_value"].to_numpy(dtype=float, na_value=0.0))
        if "customer_value" in frame
        else np.zeros(len(frame))
    )
    reasons = pd.Categorical.from_codes(rc.category_code, categories=list(config.REASONS))
    tiers = pd.Categorical.from_codes(risk_tier_codes(p), categories=[t for t, _ in config.RISK_TIERS])
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "as_of_date": frame["as_of_date"].to_numpy(),
            "churn_probability": p,
            "risk_tier": tiers,
            "reason_codes": pd.Series(pd.arrays.ArrowExtensionArray(rc.json_arrow), copy=False),
            "reason_category": reasons,
            "model_version": version,
            "customer_value": value,
            "expected_save_rate": save,
            "offer_cost": cost,
            "priority_score": p * value * save - cost,
        }
    )


def check_champion_features(version: str, kind: str, features: list[str], registered_hash: str) -> None:
    """The champion must have been trained on this code's feature set for its kind."""
    expected = list(kind_features(kind))
    if feature_list_hash(features) != registered_hash or features != expected:
        added = sorted(set(expected) - set(features))
        dropped = sorted(set(features) - set(expected))
        raise FeatureMismatchError(
            f"champion {version} was trained on a different feature set than the scorer offers "
            f"(new: {', '.join(added) or '-'}; gone: {', '.join(dropped) or '-'}; "
            f"order/hash differ: {feature_list_hash(features) != feature_list_hash(expected)}): retrain first"
        )


def score(url: str | None = None, as_of: date | None = None) -> dict[str, Any]:
    """Score fct_customer_signals with the champion; replace that as-of date's rows in one transaction."""
    from ml import data, registry
    from retention.db import connect

    started = time.perf_counter()
    with connect(url) as conn:
        champion = registry.get_champion(conn)
        if champion is None:
            raise NoChampionError("the registry has no champion model: run `retention train` first")
        check_champion_features(
            champion.version, champion.model_kind, list(champion.feature_list), champion.feature_list_hash
        )
        artefact = champion.load()
        frame = data.load_scoring_rows(conn, champion.feature_list, as_of)
    if frame.empty:
        where = f" for as-of date {as_of}" if as_of else ""
        raise ScoringInputError(f"table {config.SCORING_TABLE} has no rows{where}: nothing to score")
    dates = sorted(set(frame["as_of_date"]))
    if len(dates) != 1:
        raise ScoringInputError(
            f"table {config.SCORING_TABLE} holds {len(dates)} as-of dates ({dates[0]}..{dates[-1]}); "
            "pass as_of to pick one"
        )
    if frame["customer_id"].duplicated().any():
        raise ScoringInputError(f"table {config.SCORING_TABLE} has duplicate customer_id rows for {dates[0]}")
    check_not_all_null(frame, champion.feature_list, f"table {config.SCORING_TABLE}")
    loaded = time.perf_counter()
    with thread_limit():
        scores = score_frame(artefact, frame, champion.version)
    scored = time.perf_counter()
    with connect(url) as conn:
        n = data.write_scores(conn, scores, dates[0])
    done = time.perf_counter()
    return {
        "as_of_date": str(dates[0]),
        "model_version": champion.version,
        "rows": n,
        "risk_tiers": dict(Counter(scores["risk_tier"])),
        "reason_categories": dict(Counter(scores["reason_category"])),
        "seconds": {
            "load": round(loaded - started, 2),
            "score": round(scored - loaded, 2),
            "write": round(done - scored, 2),
        },
    }
