"""Registry, promotion, scoring and monitoring against a fresh database with synthetic analytics tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from ml import config, registry
from ml.errors import (
    AllNullFeatureError,
    ArtefactError,
    EmptyTrainingWindowError,
    FeatureMismatchError,
    MissingFeatureError,
    NoChampionError,
    SingleClassError,
)
from ml.synthetic import make_features, write_tables

pytestmark = pytest.mark.integration


@pytest.fixture
def ml_db(use_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETENTION_ML_THREADS", "1")
    monkeypatch.setattr(config, "HGB_PARAMS", {**config.HGB_PARAMS, "max_iter": 40})
    monkeypatch.setattr(config, "REASON_REFERENCE_ROWS", 150)
    get_settings.cache_clear()
    return use_db


@pytest.fixture(scope="module")
def company() -> pd.DataFrame:
    return make_features(500, 26, seed=11)


def _write(url: str, frame: pd.DataFrame) -> None:
    with psycopg.connect(url) as conn:
        write_tables(conn, frame)


def _statuses(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {r.version: r.status for r in registry.list_models(conn)}


def _champion(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        c = registry.get_champion(conn)
        return c.version if c else None


def test_decide_rule() -> None:
    good = {"roc_auc": 0.80, "pr_auc": 0.40}
    assert registry.decide(good, None, margin=0.005, floor_auc=0.65).promote
    low = {"roc_auc": 0.60, "pr_auc": 0.90}
    d = registry.decide(low, None, margin=0.005, floor_auc=0.65)
    assert not d.promote and "quality floor" in d.reason
    assert not registry.decide(low, {"roc_auc": 0.5, "pr_auc": 0.1}, margin=0.005, floor_auc=0.65).promote
    assert not registry.decide(good, {"roc_auc": 0.8, "pr_auc": 0.398}, margin=0.005, floor_auc=0.65).promote
    assert registry.decide(good, {"roc_auc": 0.8, "pr_auc": 0.39}, margin=0.005, floor_auc=0.65).promote


def test_train_promote_score_monitor_and_rollback(ml_db: str, company: pd.DataFrame) -> None:
    from ml.monitor import monitor
    from ml.score import score
    from ml.train import train_and_maybe_promote

    assert not registry.has_champion(ml_db)
    _write(ml_db, company)
    first = train_and_maybe_promote(ml_db)
    assert first["promoted"] and first["champion"] is not None
    champ = first["champion"]
    assert registry.has_champion(ml_db)
    assert champ.startswith("hgb-")  # gradient boosting beats the RFM baseline on planted signal
    statuses = _statuses(ml_db)
    assert statuses[champ] == "champion" and sorted(statuses.values()) == ["champion", "rejected"]
    w = first["window"]
    assert w["train_end"] < w["calib_start"] <= w["calib_end"] < w["valid_start"]

    with psycopg.connect(ml_db) as conn:
        row = registry.get_champion(conn)
    assert row.feature_list == list(config.FEATURES)
    assert {"roc_auc", "pr_auc", "brier", "top_decile_lift", "calibration", "profit"} <= set(row.metrics)
    card = Path(row.artefact_path).parent / "model_card.md"
    text = card.read_text()
    assert "Validation metrics" in text and w["train_start"] in text and "Profit at a contact budget" in text
    assert Path(row.artefact_path).parent.parent == Path(row.artefact_path).parents[1]

    # retraining on the same data: identical metrics, not better by the margin -> not promoted
    second = train_and_maybe_promote(ml_db)
    assert not second["promoted"] and second["champion"] == champ
    assert "does not beat the champion" in second["decision"]

    # scoring: every customer once, idempotent for the same as-of date
    out = score(ml_db)
    assert out["rows"] == 500 and out["model_version"] == champ
    again = score(ml_db)
    with psycopg.connect(ml_db) as conn:
        n, dates = conn.execute(
            "select count(*), count(distinct as_of_date) from analytics.churn_scores"
        ).fetchone()
        rc, cat, prio, tier = conn.execute(
            "select reason_codes, reason_category, priority_score, risk_tier from analytics.churn_scores "
            "order by churn_probability desc limit 1"
        ).fetchone()
    assert (n, dates) == (500, 1) and again["rows"] == 500
    assert isinstance(rc, list) and 1 <= len(rc) <= 3 and rc[0]["text"]
    assert cat in config.REASONS and tier in ("high", "medium", "low") and prio is not None

    report = monitor(ml_db)
    assert report["rows_scored"] == 500 and report["max_feature_psi"] is not None
    assert report["realised"] == []  # no past scores whose horizon is over yet
    with psycopg.connect(ml_db) as conn:
        nfeat = conn.execute("select count(*) from ops.model_feature_drift").fetchone()[0]
        # past scores (90 days ago) and what happened since: the 50 riskiest churned 30 days later
        conn.execute(
            "insert into analytics.churn_scores select customer_id, as_of_date - 90, churn_probability, risk_tier, "
            "reason_codes, reason_category, model_version, customer_value, expected_save_rate, offer_cost, "
            "priority_score from analytics.churn_scores"
        )
        conn.execute(
            "update analytics.dim_customers d set churned_at = (s.as_of_date - 60)::timestamptz "
            "from (select customer_id, as_of_date from analytics.churn_scores where as_of_date = "
            "(select max(as_of_date) from analytics.churn_scores) order by churn_probability desc limit 50) s "
            "where d.customer_id = s.customer_id"
        )
    assert nfeat == len(config.FEATURES)
    realised = monitor(ml_db)["realised"]
    assert len(realised) == 1 and realised[0]["churners"] == 50
    assert realised[0]["auc"] > 0.95 and realised[0]["outcome_source"] == "dim_customers.churned_at"

    # a rollback with no earlier champion is refused; with one, it restores it
    with pytest.raises(NoChampionError, match="nothing to roll back"), psycopg.connect(ml_db) as conn:
        registry.rollback(conn)
    rejected = next(v for v, s in _statuses(ml_db).items() if s == "rejected" and v.startswith("hgb-"))
    with psycopg.connect(ml_db) as conn:
        registry.promote(conn, rejected, "manual promotion in a test")
    assert _champion(ml_db) == rejected
    from ml.cli import models_main

    assert models_main(["rollback"]) == 0
    assert _champion(ml_db) == champ
    assert _statuses(ml_db)[rejected] == "retired"
    assert models_main(["list"]) == 0


def test_bad_inputs_leave_the_champion_in_place(ml_db: str, company: pd.DataFrame) -> None:
    from ml.score import score
    from ml.train import train_and_maybe_promote

    _write(ml_db, company)
    champ = train_and_maybe_promote(ml_db)["champion"]
    assert champ

    def expect(frame: pd.DataFrame, error: type[Exception], match: str) -> None:
        _write(ml_db, frame)
        with pytest.raises(error, match=match):
            train_and_maybe_promote(ml_db)
        assert _champion(ml_db) == champ

    # single class
    expect(
        company.assign(**{config.LABEL: company[config.LABEL].where(~company[config.LABEL_KNOWN], False)}),
        SingleClassError,
        "only non-churners",
    )
    # all-null feature
    expect(company.assign(usage_trend_pct=np.nan), AllNullFeatureError, "usage_trend_pct")
    # empty training window (no labelled rows)
    expect(
        company.assign(**{config.LABEL_KNOWN: False}), EmptyTrainingWindowError, "no rows with a known label"
    )
    # missing feature columns
    _write(ml_db, company)
    with psycopg.connect(ml_db) as conn:
        conn.execute("alter table analytics.fct_customer_features_asof drop column open_tickets")
    with pytest.raises(MissingFeatureError, match="open_tickets"):
        train_and_maybe_promote(ml_db)
    assert _champion(ml_db) == champ

    # a model below the quality floor is never promoted (labels unrelated to the features)
    rng = np.random.default_rng(0)
    noise = company.copy()
    known = noise[config.LABEL_KNOWN].to_numpy()
    noise.loc[known, config.LABEL] = rng.permutation(noise.loc[known, config.LABEL].to_numpy())
    _write(ml_db, noise)
    result = train_and_maybe_promote(ml_db)
    assert not result["promoted"] and result["champion"] == champ and "quality floor" in result["decision"]

    # scoring input with a different feature set than the champion's
    _write(ml_db, company)
    with psycopg.connect(ml_db) as conn:
        conn.execute("alter table analytics.fct_customer_signals drop column error_events_30d")
    with pytest.raises(FeatureMismatchError, match="error_events_30d"):
        score(ml_db)
    with psycopg.connect(ml_db) as conn:
        conn.execute(
            "update ops.model_registry set feature_list = feature_list - 'open_tickets' where status = 'champion'"
        )
    _write(ml_db, company)
    with pytest.raises(FeatureMismatchError, match="different feature set"):
        score(ml_db)


def test_below_floor_with_no_champion_promotes_nothing(ml_db: str, company: pd.DataFrame) -> None:
    from ml.train import train_and_maybe_promote

    noise = company.copy()
    known = noise[config.LABEL_KNOWN].to_numpy()
    noise.loc[known, config.LABEL] = np.random.default_rng(1).permutation(
        noise.loc[known, config.LABEL].to_numpy()
    )
    _write(ml_db, noise)
    result = train_and_maybe_promote(ml_db)
    assert not result["promoted"] and result["champion"] is None
    assert not registry.has_champion(ml_db)
    assert set(_statuses(ml_db).values()) == {"rejected"}
    from ml.score import score

    with pytest.raises(NoChampionError):
        score(ml_db)


def test_artefact_checks(ml_db: str, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    art = {"format": 1, "kind": "x", "features": ["a"], "base": LogisticRegression()}
    path, sha = registry.save_artefact(art, "v-test")
    loaded = registry.load_artefact(path, sha)
    assert loaded["features"] == ["a"]
    with pytest.raises(ArtefactError, match="sha256"):
        registry.load_artefact(path, "0" * 64)
    with pytest.raises(ArtefactError, match="does not exist"):
        registry.load_artefact(tmp_path / "nope.skops", sha)
    # a file holding a type outside the allow-list is refused before loading
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    bad = tmp_path / "bad.skops"
    sio.dump({"base": FunctionTransformer(json.dumps), "features": []}, bad)
    with pytest.raises(ArtefactError, match="untrusted"):
        registry.load_artefact(bad, registry.sha256_file(bad))


def test_training_windows_are_sampled_by_customer(
    ml_db: str, company: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml.train import load_frames

    monkeypatch.setattr(config, "MAX_TRAIN_ROWS", 600)
    _write(ml_db, company)
    with psycopg.connect(ml_db) as conn:
        plan, frames = load_frames(conn, 60)
    train = frames["train"]
    per_date = train.groupby("as_of_date")["customer_id"].apply(frozenset)
    assert 300 < len(train) <= 900  # about the cap, by a customer-hash sample
    assert per_date.nunique() == 1  # the same customers on every as-of date
    assert len(frames["valid"]) == 2 * 500  # under its cap: every row
    assert set(train["as_of_date"]) == set(plan.train_dates)
