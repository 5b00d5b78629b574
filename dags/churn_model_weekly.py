"""
### churn_model_weekly

Every week: train a challenger churn model on the point-in-time features (time-split
validation, calibrated), register it with its metrics and model card, and promote it only
if it beats the champion on the same validation window by the configured margin and is
above the quality floor. Rollback: `retention models rollback`.

Logic lives in `ml.train`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, task

from retention import pipeline
from retention.settings import get_settings

_s = get_settings()
CHURN_MODEL = Asset(name="churn_model.champion", uri="retention://models/churn/champion")


@dag(
    dag_id="churn_model_weekly",
    schedule="0 3 * * 1",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retention", "ml"],
    default_args={
        "owner": _s.dag_owner,
        "retries": _s.dag_retries,
        "retry_delay": timedelta(minutes=10),
    },
)
def churn_model_weekly() -> None:
    @task(outlets=[CHURN_MODEL])
    def train_and_maybe_promote() -> dict:
        return pipeline.train_weekly()

    train_and_maybe_promote()


churn_model_weekly()
