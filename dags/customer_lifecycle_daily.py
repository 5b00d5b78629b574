"""
### customer_lifecycle_daily

Every day: build the customer lifecycle tables with dbt (through Cosmos), stop on bad data
(Great Expectations gate), score every customer with the champion churn model, plan the
day's outreach under the central guardrails, and send it in parallel batches, exactly once.

| step | what | on failure |
|---|---|---|
| `prepare_raw` | every raw contract table exists; customers plus orders or subscriptions are loaded | stop |
| `dbt` | staging views, lifecycle marts, snapshot, tests after each model | stop |
| `quality_gate` | GX suites on raw and marts; Data Docs written | critical expectation fails: stop, alert, **nothing sent** |
| `ensure_champion` | trains a first model if none is registered | stop |
| `score` / `monitor` | `analytics.churn_scores` with reasons; drift and realised AUC | stop |
| `score_gate` | GX suite on the new scores (ranges, tiers, mean probability band) | stop: nothing sent |
| `plan_outreach` | campaigns, guardrails, holdouts, decision log, outbox | stop |
| `send_batch` | one mapped task per campaign x segment batch (<= 1000 per request) | retried; exactly once |
| `team_digests` | high-value risks to the human teams with reasons | retried |

Logic lives in `retention.pipeline`; this file only wires it.
"""

from __future__ import annotations

from airflow.sdk import Asset, TriggerRule, dag, task
from cosmos import DbtTaskGroup

from retention import pipeline
from retention.cosmos_config import EXECUTION_CONFIG, PROFILE_CONFIG, PROJECT_CONFIG, render_config

LIFECYCLE_MARTS = Asset(name="analytics.dim_customers", uri="retention://warehouse/analytics/dim_customers")
CHURN_SCORES = Asset(name="analytics.churn_scores", uri="retention://warehouse/analytics/churn_scores")


@dag(
    dag_id="customer_lifecycle_daily",
    schedule="0 5 * * *",
    doc_md=__doc__,
    tags=["retention", "dbt", "quality", "ml", "outreach"],
    **pipeline.dag_kwargs(retry_minutes=5),
)
def customer_lifecycle_daily() -> None:
    @task
    def prepare_raw() -> dict:
        return pipeline.prepare_raw()

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=PROJECT_CONFIG,
        profile_config=PROFILE_CONFIG,
        execution_config=EXECUTION_CONFIG,
        render_config=render_config(),
        operator_args={"vars": pipeline.dbt_vars_template(), "install_deps": False},
    )

    @task(outlets=[LIFECYCLE_MARTS])
    def quality_gate() -> dict:
        return pipeline.quality_gate()

    @task
    def ensure_champion() -> dict:
        return pipeline.ensure_champion()

    @task(outlets=[CHURN_SCORES])
    def score(ds: str | None = None) -> dict:
        return pipeline.score(ds)

    @task
    def score_gate() -> dict:
        return pipeline.quality_gate(scores=True)

    @task
    def monitor() -> dict:
        return pipeline.monitor()

    @task
    def plan_outreach(ds: str | None = None) -> list[str]:
        return pipeline.plan_outreach(ds)

    @task(max_active_tis_per_dagrun=2)
    def send_batch(batch_key: str, ds: str | None = None) -> str:
        return pipeline.send_batch(batch_key, ds)

    # runs when the fan-out was empty (a rerun of a day already sent skips send_batch), not after a failure
    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def team_digests(ds: str | None = None) -> dict:
        return pipeline.team_digests(ds)

    gate = quality_gate()
    scored = score()
    batches = plan_outreach()
    prepare_raw() >> dbt >> gate >> ensure_champion() >> scored
    scored >> monitor()
    scored >> score_gate() >> batches
    sent = send_batch.expand(batch_key=batches)
    sent >> team_digests()


customer_lifecycle_daily()
