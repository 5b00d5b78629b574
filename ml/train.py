"""Train the challengers (logistic RFM baseline + gradient boosting), register them, promote the best if it
beats the champion.  DAG entry point: :func:`train_and_maybe_promote`.

Any bad input raises a :class:`ml.errors.ModelError` subclass *before* the registry is touched, so the
champion stays in place.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ml import config
from ml.errors import ArtefactError, EmptyTrainingWindowError
from ml.features import SplitPlan, check_columns, check_not_all_null, feature_list_hash, plan_split, to_matrix
from ml.modeling import (
    Candidate,
    Window,
    fit_candidate,
    frame_window,
    predict_proba,
    thread_limit,
    training_profile,
)

log = logging.getLogger(__name__)


def check_frames(frames: dict[str, pd.DataFrame]) -> None:
    """Bad-input checks on the three windows (clear errors, nothing written)."""
    for name, frame in frames.items():
        check_columns(
            list(frame.columns), [*config.KEY_COLUMNS, *config.FEATURES, config.LABEL], f"the {name} window"
        )
        if len(frame) < config.MIN_WINDOW_ROWS:
            raise EmptyTrainingWindowError(
                f"the {name} window has {len(frame)} labelled rows (need >= {config.MIN_WINDOW_ROWS})"
            )
    check_not_all_null(frames["train"], config.FEATURES, "the training window")


def fit_all(frames: dict[str, pd.DataFrame], kinds: tuple[str, ...] = config.MODEL_KINDS) -> list[Candidate]:
    check_frames(frames)
    windows = {name: frame_window(frame, name) for name, frame in frames.items()}
    return [fit_candidate(kind, windows["train"], windows["calib"], windows["valid"]) for kind in kinds]


def load_frames(conn: Any, horizon_days: int) -> tuple[SplitPlan, dict[str, pd.DataFrame]]:
    from ml import data

    dated = data.labelled_dates(conn)
    if not dated:
        raise EmptyTrainingWindowError(
            f"table {config.TRAINING_TABLE} has no rows with a known label (label_known): nothing to train on"
        )
    counts = dict(dated)
    plan = plan_split(list(counts), horizon_days)
    caps = {"train": config.MAX_TRAIN_ROWS, "calib": config.MAX_CALIB_ROWS, "valid": config.MAX_VALID_ROWS}
    dates = {"train": plan.train_dates, "calib": plan.calib_dates, "valid": plan.valid_dates}
    frames = {
        name: data.load_training_rows(conn, dates[name], caps[name], sum(counts[d] for d in dates[name]))
        for name in ("train", "calib", "valid")
    }
    return plan, frames


def _champion_on_window(champion: Any, valid: Window) -> tuple[dict[str, Any] | None, str]:
    from ml.metrics import evaluate
    from ml.reasons import top_reasons

    try:
        artefact = champion.load()
        idx = [config.FEATURES.index(f) for f in artefact["features"]]
    except (ArtefactError, ValueError) as exc:
        return None, f"champion {champion.version} could not be evaluated ({exc})"
    X = valid.X[:, idx]
    p = predict_proba(artefact, X)
    cats = top_reasons(X, artefact["features"], artefact["reference"], with_json=False).category
    value = valid.customer_value if valid.customer_value is not None else np.ones(len(valid.y))
    return evaluate(valid.y, p, value, cats), ""


def new_version(kind: str, now: datetime) -> str:
    return f"{kind}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def train_and_maybe_promote(url: str | None = None) -> dict[str, Any]:
    """Train both model kinds on the time split of fct_customer_features_asof, register them, promote the
    best one if it passes the quality floor and beats the champion on the same validation window."""
    from ml import card, registry
    from retention.db import connect
    from retention.settings import get_settings

    s = get_settings()
    with connect(url) as conn:
        plan, frames = load_frames(conn, s.churn_horizon_days)
    with thread_limit():
        candidates = fit_all(frames)
    windows_valid = frame_window(frames["valid"], "valid")
    X_train_all = to_matrix(frames["train"], config.FEATURES)
    now = datetime.now(UTC)
    best = max(candidates, key=lambda c: (c.metrics[config.PROMOTION_METRIC], c.kind == "hgb"))
    summary: dict[str, Any] = {
        "window": plan.as_dict(),
        "rows": {k: len(f) for k, f in frames.items()},
        "models": {},
    }

    with connect(url) as conn:
        registry.ensure_registry(conn)
        registry.lock(conn)
        champion = registry.get_champion(conn)
        with thread_limit():
            champ_metrics, champ_note = (
                _champion_on_window(champion, windows_valid) if champion else (None, "")
            )
        decision = registry.decide(
            best.metrics, champ_metrics, margin=s.promotion_margin, floor_auc=s.quality_floor_auc
        )
        if champ_note:
            decision = registry.Decision(decision.promote, f"{decision.reason}; {champ_note}")
        cards = {}
        for cand in candidates:
            version = new_version(cand.kind, now)
            path, sha = registry.save_artefact(cand.artefact, version)
            features = list(cand.artefact["features"])
            registry.register(
                conn,
                {
                    "version": version,
                    "model_kind": cand.kind,
                    "trained_at": now,
                    "data_window_start": plan.train_dates[0],
                    "data_window_end": plan.train_dates[-1],
                    "calibration_window_start": plan.calib_dates[0],
                    "calibration_window_end": plan.calib_dates[-1],
                    "validation_window_start": plan.valid_dates[0],
                    "validation_window_end": plan.valid_dates[-1],
                    "feature_list_hash": feature_list_hash(features),
                    "feature_list": features,
                    "metrics": {**cand.metrics, "fit_seconds": round(cand.fit_seconds, 2)},
                    "training_profile": training_profile(
                        X_train_all, list(config.FEATURES), cand.valid_proba
                    ),
                    "artefact_path": str(path),
                    "artefact_sha256": sha,
                },
            )
            if cand is best:
                status = "champion" if decision.promote else "rejected"
                note = decision.reason
                if decision.promote:
                    registry.promote(conn, version, note)
                else:
                    registry.set_status(conn, version, "rejected", note)
            else:
                status, note = (
                    "rejected",
                    (
                        f"{config.PROMOTION_METRIC} {cand.metrics[config.PROMOTION_METRIC]:.4f} lost to "
                        f"{best.kind} ({best.metrics[config.PROMOTION_METRIC]:.4f}) of the same run"
                    ),
                )
                registry.set_status(conn, version, status, note)
            cards[version] = (cand, status, note, path.parent, features)
            summary["models"][version] = {
                "kind": cand.kind,
                "status": status,
                "note": note,
                **{k: cand.metrics[k] for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift")},
            }
        after = registry.get_champion(conn)
        summary["champion"] = after.version if after else None
        summary["promoted"] = decision.promote
        summary["decision"] = decision.reason
        summary["previous_champion"] = champion.version if champion else None

    rates = {k: round(float(f[config.LABEL].astype(float).mean()), 5) for k, f in frames.items()}
    for version, (cand, status, note, folder, features) in cards.items():
        card.write(
            folder,
            {
                "version": version,
                "model_kind": cand.kind,
                "trained_at": now.isoformat(timespec="seconds"),
                "window": plan.as_dict(),
                "rows": summary["rows"],
                "rates": rates,
                "features": features,
                "feature_list_hash": feature_list_hash(features),
                "metrics": cand.metrics,
                "champion_metrics": champ_metrics,
                "decision": note,
                "status": status,
                "settings": {
                    "churn_horizon_days": s.churn_horizon_days,
                    "quality_floor_auc": s.quality_floor_auc,
                    "promotion_margin": s.promotion_margin,
                },
            },
        )
    log.info("training done: %s", summary)
    return summary
