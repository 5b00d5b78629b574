"""Training, calibration, reason codes and scoring on synthetic frames (no database)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml import config, reasons
from ml.features import plan_split, to_matrix
from ml.modeling import bucket_shares, predict_proba, raw_score, thread_limit, training_profile
from ml.score import risk_tiers, score_frame
from ml.synthetic import make_features, signals_from
from ml.train import fit_all


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with thread_limit(1):  # OpenMP threads crawl on a busy machine; one thread is steady
        yield


@pytest.fixture(scope="module", autouse=True)
def _small_model():
    with pytest.MonkeyPatch.context() as mp:  # smaller trees/reference sample: same code paths, faster
        mp.setattr(config, "HGB_PARAMS", {**config.HGB_PARAMS, "max_iter": 60})
        mp.setattr(config, "REASON_REFERENCE_ROWS", 200)
        yield


@pytest.fixture(scope="module")
def trained() -> dict:
    frame = make_features(1000, 26, seed=7)
    labelled = frame[frame[config.LABEL_KNOWN]]
    plan = plan_split(sorted(set(labelled["as_of_date"])), 60)
    frames = {
        name: labelled[labelled["as_of_date"].isin(getattr(plan, f"{name}_dates"))]
        for name in ("train", "calib", "valid")
    }
    cands = {c.kind: c for c in fit_all(frames)}
    return {"frame": frame, "frames": frames, "cands": cands}


def test_hgb_beats_the_rfm_baseline_on_later_data(trained: dict) -> None:
    lr, hgb = trained["cands"]["logreg_rfm"], trained["cands"]["hgb"]
    assert hgb.metrics["roc_auc"] > 0.7
    assert hgb.metrics["roc_auc"] > lr.metrics["roc_auc"] + 0.05
    assert hgb.metrics["pr_auc"] > lr.metrics["pr_auc"]
    assert hgb.metrics["top_decile_lift"] > 2.0
    assert lr.artefact["features"] == list(config.RFM_FEATURES)
    assert hgb.artefact["features"] == list(config.FEATURES)


def test_calibration_is_chosen_on_validation_and_calibrated(trained: dict) -> None:
    hgb = trained["cands"]["hgb"]
    m = hgb.metrics
    assert m["calibration_method"] in config.CALIBRATION_METHODS
    briers = m["calibration_brier_by_method"]
    assert briers[m["calibration_method"]] == min(briers.values())
    assert m["brier"] == pytest.approx(briers[m["calibration_method"]], abs=1e-4)
    # mean predicted close to the observed churn rate on the (later) validation window
    valid = trained["frames"]["valid"]
    assert abs(hgb.valid_proba.mean() - valid[config.LABEL].astype(float).mean()) < 0.03
    for b in m["calibration"]:
        if b["count"] >= 200:
            assert abs(b["mean_predicted"] - b["observed_rate"]) < 0.1
    assert {p["contact_share"] for p in m["profit"]} == set(config.CONTACT_BUDGETS)


def test_probabilities_are_monotone_in_the_raw_score(trained: dict) -> None:
    art = trained["cands"]["hgb"].artefact
    X = to_matrix(trained["frames"]["valid"], config.FEATURES)
    raw, p = raw_score(art, X), predict_proba(art, X)
    order = np.argsort(raw)
    assert np.all(np.diff(p[order]) >= -1e-12)
    assert ((p >= 0) & (p <= 1)).all()


def test_reason_codes_point_at_the_planted_signal(trained: dict) -> None:
    art = trained["cands"]["hgb"].artefact
    sig = signals_from(trained["frame"])
    X = to_matrix(sig, config.FEATURES)
    rc = reasons.top_reasons(X, config.FEATURES, art["reference"], context=sig)
    idx = config.FEATURES.index("payment_failed_unrecovered")
    failed = X[:, idx] == 1
    assert failed.sum() > 5
    # customers whose payment failed and was not recovered: involuntary, worded for a marketer
    assert (rc.category[failed] == "involuntary").mean() > 0.8
    texts = [json.loads(j) for j in rc.json[failed]]
    assert all(len(t) <= 3 for t in texts)
    assert np.mean([any(r["text"] == "payment failed and not recovered" for r in t) for t in texts]) > 0.8
    # every list is valid JSON, sorted by contribution, positive contributions only
    for j in rc.json[:300]:
        items = json.loads(j)
        contribs = [it["contribution"] for it in items]
        assert contribs == sorted(contribs, reverse=True) and all(c > 0 for c in contribs)
        assert all(set(it) == {"feature", "text", "contribution"} for it in items)


def test_reason_codes_only_on_the_risky_side() -> None:
    features = ["unresolved_tickets", "usage_trend_pct"]
    # a fake model whose raw score rises with tickets and falls with usage trend
    reference = {
        "medians": np.array([0.0, 0.0]),
        "grid": np.array([[0.0, 1.0, 2.0, 5.0], [-100.0, -50.0, 0.0, 50.0]]),
        "curve": np.array([[0.0, 0.5, 1.0, 2.0], [2.0, 1.0, 0.0, -0.5]]),
    }
    X = np.array([[2.0, -60.0], [0.0, 30.0], [np.nan, -100.0]])
    C = reasons.contributions(X, features, reference)
    assert C[0, 0] == pytest.approx(1.0) and C[0, 1] == pytest.approx(1.2)
    assert (C[1] == 0).all()  # no tickets, usage up: nothing risky
    assert C[2, 0] == 0 and C[2, 1] == pytest.approx(2.0)
    rc = reasons.top_reasons(X, features, reference)
    first = json.loads(rc.json[0])
    assert [r["text"] for r in first] == ["usage down 60% in 30 days", "2 unresolved tickets"]
    assert rc.category.tolist() == ["quality_fit", "unknown", "moved_no_need"]
    assert json.loads(rc.json[1]) == []
    assert json.loads(rc.json[2])[0]["text"] == "usage stopped in the last 30 days"


def test_marketer_words() -> None:
    words = {
        name: reasons.texts_for(name, np.array([value]), None, reasons.REASON_SPECS[name].decimals)[0]
        for name, value in [
            ("unresolved_tickets", 1.0),
            ("failed_payments_90d", 2.0),
            ("days_to_renewal", 5.0),
            ("discount_share_365d", 0.62),
            ("usage_events_30d", 0.0),
            ("inquiries_without_order_30d", 3.0),
        ]
    }
    assert words == {
        "unresolved_tickets": "1 unresolved ticket",
        "failed_payments_90d": "2 failed payments in 90 days",
        "days_to_renewal": "renewal in 5 days",
        "discount_share_365d": "62% of spend on discount",
        "usage_events_30d": "no usage in 30 days",
        "inquiries_without_order_30d": "3 inquiries without an order",
    }
    renewal = reasons.texts_for(
        "days_to_renewal", np.array([5.0]), np.array([" after asking about prices"]), 0
    )
    assert renewal[0] == "renewal in 5 days after asking about prices"
    assert reasons._safe('E-1"; drop') == "E-1 drop"


def test_pd_reasons_agree_with_exact_local_deltas(trained: dict) -> None:
    art = trained["cands"]["hgb"].artefact
    X = to_matrix(trained["frames"]["valid"], config.FEATURES)[:300]
    approx = reasons.contributions(X, config.FEATURES, art["reference"])
    exact = reasons.local_contributions(
        lambda A: raw_score(art, A), X, config.FEATURES, art["reference"]["medians"]
    )
    risky = exact.max(axis=1) > 0.5
    agree = approx[risky].argmax(axis=1) == exact[risky].argmax(axis=1)
    assert risky.sum() > 20 and agree.mean() > 0.6


def test_score_frame_columns_and_priority(trained: dict) -> None:
    art = trained["cands"]["hgb"].artefact
    sig = signals_from(trained["frame"])
    out = score_frame(art, sig, "hgb-test")
    assert len(out) == len(sig) and out["customer_id"].is_unique
    assert set(out["risk_tier"]) <= {"high", "medium", "low"}
    assert set(out["reason_category"]) <= set(config.REASONS)
    expected = (
        out["churn_probability"] * out["customer_value"] * out["expected_save_rate"] - out["offer_cost"]
    )
    np.testing.assert_allclose(out["priority_score"], expected)
    rates = out["reason_category"].map(config.EXPECTED_SAVE_RATE)
    np.testing.assert_allclose(out["expected_save_rate"], rates)
    assert risk_tiers(np.array([0.5, 0.4, 0.2, 0.15, 0.01])).tolist() == [
        "high",
        "high",
        "medium",
        "medium",
        "low",
    ]


def test_training_profile_and_buckets(trained: dict) -> None:
    X = to_matrix(trained["frames"]["train"], config.FEATURES)
    prof = training_profile(X, list(config.FEATURES), np.linspace(0, 1, 100))
    assert set(prof["features"]) == set(config.FEATURES)
    for ref in prof["features"].values():
        assert sum(ref["shares"]) == pytest.approx(1.0)
    assert len(prof["score_deciles"]) == 9
    shares = bucket_shares(np.array([0.0, 1.0, 2.0, np.nan]), [0.5, 1.5])
    assert shares.tolist() == [0.25, 0.25, 0.25, 0.25]
    assert isinstance(pd.Series(prof["score_deciles"]).mean(), float)


def test_abrupt_stop_is_moved_no_need_and_decline_is_quality_fit() -> None:
    features = ["usage_trend_pct"]
    reference = {
        "medians": np.array([0.0]),
        "grid": np.array([[-100.0, 0.0]]),
        "curve": np.array([[2.0, 0.0]]),
    }
    rc = reasons.top_reasons(np.array([[-100.0], [-60.0], [10.0]]), features, reference)
    assert rc.category.tolist() == ["moved_no_need", "quality_fit", "unknown"]


@pytest.mark.parametrize("threads", ["1", "0"])
def test_score_frame_same_with_and_without_overlap(
    trained: dict, threads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model runs in a worker thread next to the reason codes unless RETENTION_ML_THREADS=1: same
    scores either way, JSON valid, categories from the fixed vocabulary."""
    from ml import score
    from retention.settings import get_settings

    art = trained["cands"]["hgb"].artefact
    sig = signals_from(trained["frame"])
    reference = score_frame(art, sig, "v")
    monkeypatch.setenv("RETENTION_ML_THREADS", threads)
    monkeypatch.setattr(score, "OVERLAP_MIN_ROWS", 10)
    get_settings.cache_clear()
    try:
        got = score_frame(art, sig, "v")
    finally:
        get_settings.cache_clear()
    pd.testing.assert_frame_equal(got, reference)
    assert set(got["reason_category"]) <= set(config.REASONS)
    assert set(got["risk_tier"]) <= {"high", "medium", "low"}
    assert all(isinstance(json.loads(j), list) for j in got["reason_codes"])


def test_reason_codes_of_no_rows_and_of_rows_without_drivers() -> None:
    features = ["unresolved_tickets"]
    reference = {"medians": np.array([0.0]), "grid": np.array([[0.0, 3.0]]), "curve": np.array([[0.0, 3.0]])}
    empty = reasons.top_reasons(np.zeros((0, 1)), features, reference)
    assert empty.json.tolist() == [] and empty.category.tolist() == []
    rc = reasons.top_reasons(np.array([[0.0], [np.nan], [3.0]]), features, reference)
    assert [json.loads(j) for j in rc.json[:2]] == [[], []]
    assert json.loads(rc.json[2]) == [
        {"feature": "unresolved_tickets", "text": "3 unresolved tickets", "contribution": 3.0}
    ]
