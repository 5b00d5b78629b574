"""Feature checks, the numeric matrix and the time-respecting split (pure functions on frames)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml import config
from ml.errors import (
    AllNullFeatureError,
    EmptyTrainingWindowError,
    MissingFeatureError,
    SingleClassError,
)


def feature_list_hash(features: Sequence[str]) -> str:
    """sha256 of the ordered feature names (one per line): equal hashes = same model input."""
    return hashlib.sha256("\n".join(features).encode()).hexdigest()


def check_columns(columns: Sequence[str], required: Sequence[str], where: str) -> None:
    missing = [c for c in required if c not in set(columns)]
    if missing:
        raise MissingFeatureError(f"{where} lacks column(s) {', '.join(missing)} (see INTERFACES.md)")


def check_not_all_null(frame: pd.DataFrame, features: Sequence[str], where: str) -> None:
    if frame.empty:
        return
    dead = [f for f in features if frame[f].isna().all()]
    if dead:
        raise AllNullFeatureError(
            f"{where}: feature(s) {', '.join(dead)} are null on all {len(frame)} rows "
            "(the upstream model is broken or the window is wrong)"
        )


def check_two_classes(y: np.ndarray, where: str) -> None:
    positives = int(np.sum(y))
    if positives == 0 or positives == len(y):
        only = "churners" if positives else "non-churners"
        raise SingleClassError(
            f"{where} has only {only} ({len(y)} rows): cannot train or evaluate a classifier"
        )


def to_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The float64 feature matrix (booleans -> 0/1, nulls -> NaN), C-ordered."""
    out = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        out[:, j] = _numeric(frame[name], name)
    return out


_BOOLISH = {True: 1.0, False: 0.0, "t": 1.0, "f": 0.0, "true": 1.0, "false": 0.0}


def _numeric(col: pd.Series, name: str) -> np.ndarray:
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        col = col.astype(object).map(lambda v: _BOOLISH.get(v, v) if isinstance(v, bool | str) else v)
        try:
            col = pd.to_numeric(col, errors="raise")
        except (TypeError, ValueError) as exc:
            raise MissingFeatureError(f"feature {name} is not numeric/boolean: {exc}") from None
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def label_vector(frame: pd.DataFrame) -> np.ndarray:
    col = frame[config.LABEL]
    if col.isna().any():
        raise SingleClassError(f"{int(col.isna().sum())} training rows have a null {config.LABEL} label")
    return col.astype(bool).to_numpy().astype(np.int8)


@dataclass(frozen=True)
class SplitPlan:
    """As-of dates of each window; each window ends (label horizon included) before the next starts."""

    train_dates: tuple[date, ...]
    calib_dates: tuple[date, ...]
    valid_dates: tuple[date, ...]
    purge_days: int

    def as_dict(self) -> dict[str, object]:
        return {
            "train_start": str(self.train_dates[0]),
            "train_end": str(self.train_dates[-1]),
            "train_dates": len(self.train_dates),
            "calib_start": str(self.calib_dates[0]),
            "calib_end": str(self.calib_dates[-1]),
            "valid_start": str(self.valid_dates[0]),
            "valid_end": str(self.valid_dates[-1]),
            "purge_days": self.purge_days,
        }


def plan_split(
    labelled_dates: Sequence[date],
    horizon_days: int,
    *,
    valid_dates: int = config.VALID_DATES,
    calib_dates: int = config.CALIB_DATES,
    max_train_dates: int = config.MAX_TRAIN_DATES,
    purge_days: int | None = config.PURGE_DAYS,
    calib_gap_days: int = config.CALIB_GAP_DAYS,
) -> SplitPlan:
    """Validation = the latest labelled as-of dates; calibration = the latest dates whose label window
    ends before validation starts; training = the dates before calibration (``calib_gap_days`` apart).
    Never a random split across time."""
    dates = sorted(set(labelled_dates))
    purge = horizon_days if purge_days is None else purge_days
    need = (
        f"{valid_dates} validation + {calib_dates} calibration + >=1 training as-of date(s), "
        f"validation {purge} days after the others"
    )
    if len(dates) < valid_dates + calib_dates + 1:
        raise EmptyTrainingWindowError(
            f"the training table has {len(dates)} labelled as-of date(s); the time split needs {need}"
        )
    valid = dates[-valid_dates:]
    calib_pool = [d for d in dates if d + timedelta(days=purge) <= valid[0]]
    if len(calib_pool) < calib_dates + 1:
        raise EmptyTrainingWindowError(
            f"only {len(calib_pool)} labelled as-of date(s) end before the validation window "
            f"({valid[0]}); the time split needs {need}"
        )
    calib = calib_pool[-calib_dates:]
    train_pool = [d for d in calib_pool if d + timedelta(days=calib_gap_days) < calib[0]]
    if not train_pool:
        raise EmptyTrainingWindowError(
            f"no labelled as-of date lies {calib_gap_days} days before the calibration window ({calib[0]}); "
            f"the table covers {dates[0]}..{dates[-1]}: the time split needs {need}"
        )
    return SplitPlan(tuple(train_pool[-max_train_dates:]), tuple(calib), tuple(valid), purge)


def customer_sample_mask(customer_ids: pd.Series, share: float) -> np.ndarray:
    """Deterministic sample of customers (the same customers on every as-of date)."""
    if share >= 1.0:
        return np.ones(len(customer_ids), dtype=bool)
    h = pd.util.hash_pandas_object(customer_ids.astype(str), index=False).to_numpy()
    return (h % np.uint64(1_000_000)) < np.uint64(int(share * 1_000_000))
