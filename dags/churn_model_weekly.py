"""
### churn_model_weekly

Every week: train a challenger churn model on the point-in-time features (time-split
validation, calibrated), register it with its metrics and model card, and promote it only
if it beats the champion on the same validation window by the configured margin and is
above the quality floor. Rollback: `retention models rollback`.

Logic lives in `ml.train`; this file only wires it.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from retention import pipeline

CHURN_MODEL = Asset(name="churn_model.champion", uri="retention://models/churn/champion")


@dag(
    dag_id="churn_model_weekly",
    schedule="0 3 * * 1",
    doc_md=__doc__,
    tags=["retention", "ml"],
    **pipeline.dag_kwargs(retry_minutes=10),
)
def churn_model_weekly() -> None:
    @task(outlets=[CHURN_MODEL])
    def train_and_maybe_promote() -> dict:
        return pipeline.train_weekly()

    train_and_maybe_promote()


churn_model_weekly()
