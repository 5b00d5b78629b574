"""Train, register, promote, score and monitor on a small generated company (generator + loader + dbt)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ml import config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pipeline_on_generated_company(
    company_copy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml import registry
    from ml.evaluate import reason_match
    from ml.monitor import monitor
    from ml.score import score
    from ml.train import train_and_maybe_promote
    from retention.settings import get_settings

    monkeypatch.setenv("RETENTION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RETENTION_ML_THREADS", "1")
    get_settings.cache_clear()

    summary = train_and_maybe_promote()
    assert summary["promoted"], summary
    champ = summary["champion"]
    models = summary["models"]
    hgb = next(m for m in models.values() if m["kind"] == "hgb")
    base = next(m for m in models.values() if m["kind"] == "logreg_rfm")
    assert hgb["roc_auc"] >= get_settings().quality_floor_auc
    assert hgb["roc_auc"] > base["roc_auc"]
    assert registry.has_champion()
    card = get_settings().state_dir / "models" / champ / "model_card.md"
    assert card.is_file() and summary["window"]["valid_end"] in card.read_text()

    out = score()
    with psycopg.connect(company_copy) as conn:
        customers = conn.execute("select count(*) from analytics.fct_customer_signals").fetchone()[0]
        n, tiers, cats = conn.execute(
            "select count(*), count(distinct risk_tier), count(distinct reason_category) from analytics.churn_scores"
        ).fetchone()
        as_of = conn.execute("select distinct as_of_date from analytics.churn_scores").fetchall()
    assert out["rows"] == customers == n and len(as_of) == 1
    assert tiers >= 2 and cats >= 3

    report = monitor()
    assert report["rows_scored"] == n and len(report["score_deciles"]) == 9

    match = reason_match()
    assert match["churners_with_truth"] > 20
    # the top driver's category should beat chance (five reasons) on planted churners
    assert match["match_rate"] > 0.22, match
    print("reason match:", match)
    assert set(match["per_reason"]) <= set(config.REASONS)
