"""Feature checks, the time split and the metrics (pure functions, synthetic frames, no database)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml import config
from ml.errors import AllNullFeatureError, EmptyTrainingWindowError, MissingFeatureError, SingleClassError
from ml.features import (
    check_not_all_null,
    check_two_classes,
    customer_sample_mask,
    feature_list_hash,
    plan_split,
    to_matrix,
)
from ml.metrics import calibration_bins, evaluate, profit_at_budget, psi, top_decile_lift, top_share_mask
from ml.synthetic import make_features
from ml.train import check_frames


def _weekly(n: int, end: date = date(2026, 11, 23)) -> list[date]:
    return [end - timedelta(days=7 * k) for k in range(n)][::-1]


def test_feature_list_is_the_interface_list() -> None:
    assert len(config.FEATURES) == 23 and len(set(config.FEATURES)) == 23
    assert set(config.RFM_FEATURES) <= set(config.FEATURES)
    assert feature_list_hash(config.FEATURES) != feature_list_hash(config.FEATURES[::-1])


def test_split_is_by_time_and_purged() -> None:
    dates = _weekly(17)
    plan = plan_split(dates, horizon_days=60)
    assert plan.valid_dates == tuple(dates[-2:])
    assert max(plan.train_dates) < min(plan.calib_dates) < min(plan.valid_dates)
    # no training/calibration label window (as_of, as_of + 60] reaches into validation
    assert max(plan.calib_dates) + timedelta(days=60) <= min(plan.valid_dates)
    assert set(plan.train_dates) | set(plan.calib_dates) | set(plan.valid_dates) <= set(dates)
    assert plan.as_dict()["purge_days"] == 60


def test_split_keeps_only_the_latest_training_dates() -> None:
    plan = plan_split(_weekly(60), horizon_days=60, max_train_dates=5)
    assert len(plan.train_dates) == 5
    assert plan.train_dates == tuple(sorted(plan.train_dates))


@pytest.mark.parametrize("n", [0, 3, 10])
def test_split_too_few_dates_is_a_clear_error(n: int) -> None:
    with pytest.raises(EmptyTrainingWindowError, match="as-of date"):
        plan_split(_weekly(n), horizon_days=60)


def test_to_matrix_handles_booleans_and_nulls() -> None:
    frame = pd.DataFrame({"a": [True, False, None], "b": [1, None, 3], "c": ["t", "f", None]})
    X = to_matrix(frame, ["a", "b", "c"])
    np.testing.assert_array_equal(X[:, 0][:2], [1.0, 0.0])
    assert np.isnan(X[2, 0]) and np.isnan(X[1, 1]) and np.isnan(X[2, 2])
    assert X[0, 2] == 1.0
    with pytest.raises(MissingFeatureError, match="not numeric"):
        to_matrix(pd.DataFrame({"a": ["x", "y"]}), ["a"])


def _frames() -> dict[str, pd.DataFrame]:
    frame = make_features(300, 26, seed=3)
    labelled = frame[frame[config.LABEL_KNOWN]]
    plan = plan_split(sorted(set(labelled["as_of_date"])), 60)
    return {
        name: labelled[labelled["as_of_date"].isin(getattr(plan, f"{name}_dates"))]
        for name in ("train", "calib", "valid")
    }


def test_missing_feature_columns_are_named() -> None:
    frames = _frames()
    frames["train"] = frames["train"].drop(columns=["usage_trend_pct", "open_tickets"])
    with pytest.raises(MissingFeatureError, match="usage_trend_pct, open_tickets"):
        check_frames(frames)


def test_all_null_feature_is_named() -> None:
    frames = _frames()
    frames["train"] = frames["train"].assign(error_events_30d=np.nan)
    with pytest.raises(AllNullFeatureError, match="error_events_30d"):
        check_frames(frames)
    check_not_all_null(frames["valid"], config.FEATURES, "ok")  # the other windows are fine


def test_empty_window_is_a_clear_error() -> None:
    frames = _frames()
    frames["calib"] = frames["calib"].iloc[:0]
    with pytest.raises(EmptyTrainingWindowError, match="calib window has 0"):
        check_frames(frames)


def test_single_class_is_a_clear_error() -> None:
    with pytest.raises(SingleClassError, match="only non-churners"):
        check_two_classes(np.zeros(100), "the training window")
    with pytest.raises(SingleClassError, match="only churners"):
        check_two_classes(np.ones(10), "the training window")


def test_customer_sample_is_deterministic_and_sized() -> None:
    ids = pd.Series([f"c{i}" for i in range(20000)])
    m1, m2 = customer_sample_mask(ids, 0.25), customer_sample_mask(ids, 0.25)
    assert (m1 == m2).all()
    assert 0.22 < m1.mean() < 0.28
    assert customer_sample_mask(ids, 1.0).all()


def test_metrics_on_hand_made_numbers() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    assert top_share_mask(p, 0.1).tolist() == [True] + [False] * 9
    assert top_decile_lift(y, p) == pytest.approx(1.0 / 0.2)
    out = profit_at_budget(y, p, np.full(10, 100.0), np.array(["price"] * 10), budgets=(0.2,))
    # top 2 contacted: one churner saved at 30% of 100, two offers at 15
    assert out[0]["expected_saved_value"] == pytest.approx(30.0)
    assert out[0]["profit"] == pytest.approx(30.0 - 30.0)
    bins = calibration_bins(y, p, bins=10)
    assert sum(b["count"] for b in bins) == 10
    m = evaluate(y, p)
    assert m["roc_auc"] == pytest.approx(0.9375)
    assert 0 < m["brier"] < 1 and "profit" not in m
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0.0)
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) > 0.25
