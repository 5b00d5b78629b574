"""Fitting, calibrating and applying the churn models (no database here: frames and arrays in, out).

A model *artefact* is a plain dict (saved with skops, never pickle):

    {"format": 1, "kind": "hgb" | "logreg_rfm", "features": [...], "base": estimator,
     "calibrator": IsotonicRegression | LogisticRegression, "calibration_method": "isotonic"|"sigmoid",
     "reference": {"medians", "grid", "curve"}  (reason-code curves, see ml.reasons)}
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml import config, reasons
from ml.errors import ModelError
from ml.features import check_two_classes
from ml.metrics import evaluate

ARTEFACT_FORMAT = 1


def thread_limit(threads: int | None = None) -> AbstractContextManager[Any]:
    """OpenMP/BLAS threads for fitting and scoring (``threads`` or setting RETENTION_ML_THREADS;
    0 = library default).  On a machine busy with other work one thread is often several times faster
    than all cores (OpenMP threads wait for each other)."""
    if threads is None:
        from retention.settings import get_settings

        threads = int(get_settings().ml_threads)
    if threads <= 0:
        return nullcontext()
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so the limit reaches it)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def kind_features(kind: str) -> tuple[str, ...]:
    if kind == "hgb":
        return config.FEATURES
    if kind == "logreg_rfm":
        return config.RFM_FEATURES
    raise ModelError(f"unknown model kind {kind!r} (known: {', '.join(config.MODEL_KINDS)})")


def make_estimator(kind: str) -> Any:
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(**config.HGB_PARAMS)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    kind_features(kind)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(**config.LOGREG_PARAMS)),
        ]
    )


def raw_score(artefact: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Uncalibrated log-odds of the base model (X has the artefact's feature columns)."""
    return np.asarray(artefact["base"].decision_function(X), dtype=np.float64).ravel()


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Any:
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e6, max_iter=1000).fit(raw[:, None], y)
    raise ModelError(
        f"unknown calibration method {method!r} (known: {', '.join(config.CALIBRATION_METHODS)})"
    )


def apply_calibrator(method: str, calibrator: Any, raw: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return np.clip(np.asarray(calibrator.predict(raw), dtype=np.float64), 0.0, 1.0)
    return np.asarray(calibrator.predict_proba(raw[:, None])[:, 1], dtype=np.float64)


def predict_proba(artefact: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Calibrated churn probability."""
    return apply_calibrator(artefact["calibration_method"], artefact["calibrator"], raw_score(artefact, X))


@dataclass
class Window:
    """One time window's matrix (all FEATURES columns), labels and per-row extras."""

    X: np.ndarray
    y: np.ndarray
    customer_value: np.ndarray | None = None
    name: str = ""

    def cols(self, kind: str) -> np.ndarray:
        idx = [config.FEATURES.index(f) for f in kind_features(kind)]
        return self.X[:, idx] if len(idx) != self.X.shape[1] else self.X


@dataclass
class Candidate:
    kind: str
    artefact: dict[str, Any]
    metrics: dict[str, Any]
    valid_proba: np.ndarray
    fit_seconds: float
    calibration_briers: dict[str, float] = field(default_factory=dict)


def fit_candidate(kind: str, train: Window, calib: Window, valid: Window) -> Candidate:
    """Fit the base model on ``train``, both calibrators on ``calib``; keep the calibrator with the
    lower Brier score on ``valid``; evaluate on ``valid``."""
    from sklearn.metrics import brier_score_loss

    for w in (train, calib, valid):
        check_two_classes(w.y, f"the {w.name or 'a'} window")
    started = time.perf_counter()
    features = list(kind_features(kind))
    Xt, Xc, Xv = train.cols(kind), calib.cols(kind), valid.cols(kind)
    base = make_estimator(kind).fit(Xt, train.y)
    artefact: dict[str, Any] = {"format": ARTEFACT_FORMAT, "kind": kind, "features": features, "base": base}
    raw_c, raw_v = raw_score(artefact, Xc), raw_score(artefact, Xv)
    briers: dict[str, float] = {}
    fitted: dict[str, Any] = {}
    for method in config.CALIBRATION_METHODS:
        fitted[method] = fit_calibrator(method, raw_c, calib.y)
        briers[method] = float(brier_score_loss(valid.y, apply_calibrator(method, fitted[method], raw_v)))
    method = min(briers, key=lambda m: (briers[m], m))
    artefact["calibration_method"] = method
    artefact["calibrator"] = fitted[method]
    artefact["reference"] = reasons.build_reference(lambda X: raw_score(artefact, X), Xt, features)
    seconds = time.perf_counter() - started
    p_valid = apply_calibrator(method, fitted[method], raw_v)
    rc = reasons.top_reasons(Xv, features, artefact["reference"], with_json=False)
    value = valid.customer_value if valid.customer_value is not None else np.ones(len(valid.y))
    metrics = evaluate(valid.y, p_valid, value, rc.category)
    metrics["calibration_method"] = method
    metrics["calibration_brier_by_method"] = {k: round(v, 5) for k, v in briers.items()}
    return Candidate(kind, artefact, metrics, p_valid, seconds, briers)


def training_profile(
    X: np.ndarray, features: list[str], valid_proba: np.ndarray | None = None
) -> dict[str, Any]:
    """Reference distributions for drift: per feature decile edges, bucket shares and null share of the
    training window; and the validation score deciles."""
    prof: dict[str, Any] = {"features": {}}
    for j, name in enumerate(features):
        col = X[:, j]
        ok = col[~np.isnan(col)]
        null_share = float(1 - ok.size / max(col.size, 1))
        if ok.size == 0:
            prof["features"][name] = {"edges": [], "shares": [], "null_share": null_share}
            continue
        edges = np.unique(np.quantile(ok, np.linspace(0.1, 0.9, 9)))
        shares = bucket_shares(col, edges)
        prof["features"][name] = {
            "edges": edges.tolist(),
            "shares": shares.tolist(),
            "null_share": null_share,
        }
    if valid_proba is not None and valid_proba.size:
        prof["score_deciles"] = np.quantile(valid_proba, np.linspace(0.1, 0.9, 9)).round(5).tolist()
        prof["score_mean"] = round(float(valid_proba.mean()), 5)
    return prof


def bucket_shares(col: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Shares of len(edges)+1 value buckets (right-closed) plus a last bucket for nulls."""
    edges = np.asarray(edges, dtype=float)
    nan = np.isnan(col)
    counts = np.bincount(np.searchsorted(edges, col[~nan], side="left"), minlength=edges.size + 1)
    allc = np.concatenate([counts, [nan.sum()]]).astype(float)
    return allc / max(allc.sum(), 1.0)


def frame_window(frame: pd.DataFrame, name: str) -> Window:
    """Window from a frame with FEATURES, the label and optionally customer_value."""
    from ml.features import label_vector, to_matrix

    value = frame["customer_value"].to_numpy(dtype=float, na_value=0.0) if "customer_value" in frame else None
    return Window(to_matrix(frame, config.FEATURES), label_vector(frame), value, name)
