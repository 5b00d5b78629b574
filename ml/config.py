"""Every modelling constant and business assumption of the churn model, in one place.

Settings that operators change per deployment (horizon, promotion margin, quality floor, state folder)
live in ``retention.settings``; this module holds the model's *design*: the fixed feature list, the
time split, the hyper-parameters, the risk tiers and the retention economics used for profit and
priority.  The model card of every version repeats the economics it was evaluated with.

Retention economics (documented assumptions, same currency as ``dim_customers.customer_value``):

* ``EXPECTED_SAVE_RATE[reason]``: share of contacted customers who *would have churned* and are kept
  by the answer to that reason (discount for price, help for quality/fit, apology + fix for service
  failures, dunning for involuntary churn, nothing for moved/no need: we let them go).
* ``OFFER_COST[reason]``: cost of one contact with that answer (discount value, support time, credit).
  It is paid for every contacted customer, churner or not.
* Expected value of contacting one customer = p(churn) * customer_value * save_rate - offer_cost
  (= ``priority_score`` in ``analytics.churn_scores``).
* Profit at a contact budget (model card): contact the top k% by churn probability of the validation
  window; saved value = sum over *actual* churners contacted of customer_value * save_rate(reason),
  minus the offer cost of everyone contacted.  customer_value is today's value from dim_customers (the
  as-of value of past windows is not kept): an approximation, the same for every model compared.
"""

from __future__ import annotations

from typing import Final

# --- features (INTERFACES.md: fct_customer_features_asof / fct_customer_signals) -----------------
FEATURES: Final[tuple[str, ...]] = (
    "tenure_days",
    "is_subscriber",
    "plan_price_monthly",
    "days_to_renewal",
    "recency_days",
    "frequency_orders_365d",
    "monetary_365d",
    "discount_share_365d",
    "usage_events_30d",
    "usage_events_prior_90d_per30",
    "usage_trend_pct",
    "orders_90d",
    "orders_prior_270d_per90",
    "purchase_freq_drop_pct",
    "categories_dropped_count",
    "inquiries_without_order_30d",
    "late_payments_90d",
    "failed_payments_90d",
    "payment_failed_unrecovered",
    "open_tickets",
    "unresolved_tickets",
    "low_satisfaction_90d",
    "error_events_30d",
)
RFM_FEATURES: Final[tuple[str, ...]] = ("recency_days", "frequency_orders_365d", "monetary_365d")
KEY_COLUMNS: Final[tuple[str, ...]] = ("customer_id", "as_of_date")
LABEL: Final[str] = "churned_within_horizon"
LABEL_KNOWN: Final[str] = "label_known"

TRAINING_TABLE: Final[str] = "fct_customer_features_asof"
SCORING_TABLE: Final[str] = "fct_customer_signals"
CUSTOMERS_TABLE: Final[str] = "dim_customers"
SCORES_TABLE: Final[str] = "churn_scores"

MODEL_KINDS: Final[tuple[str, ...]] = ("logreg_rfm", "hgb")

# --- time split ----------------------------------------------------------------------------------
#: the latest labelled as-of dates form the validation window
VALID_DATES: Final[int] = 2
#: the labelled as-of dates just before the purge gap are held out to fit the calibrator
CALIB_DATES: Final[int] = 2
#: at most this many (latest eligible) as-of dates train the base model
MAX_TRAIN_DATES: Final[int] = 12
#: purge: training/calibration rows whose label window (as_of, as_of + horizon] reaches into the
#: validation window are dropped, so validation is what the model would have seen in production.
#: ``None`` = the churn horizon (settings.churn_horizon_days).
PURGE_DAYS: Final[int | None] = None
#: gap between the last training date and the first calibration date.  0: the calibration dates directly
#: follow the training dates (their label windows overlap the training labels', which only makes the
#: monotone calibrator slightly optimistic; a full horizon gap would leave dbt's 26-week grid with almost
#: no training dates).  Validation is always purged by the full horizon.
CALIB_GAP_DAYS: Final[int] = 0
#: row caps (deterministic sample by customer_id hash, the same customers on every date)
MAX_TRAIN_ROWS: Final[int] = 1_200_000
MAX_CALIB_ROWS: Final[int] = 300_000
MAX_VALID_ROWS: Final[int] = 500_000
#: minimum rows / positives a window needs before we trust numbers computed on it
MIN_WINDOW_ROWS: Final[int] = 50
MIN_WINDOW_POSITIVES: Final[int] = 5

# --- models --------------------------------------------------------------------------------------
#: kept small on purpose: scoring (1M customers in < 5 s on 2 cores) and reason codes must stay fast
HGB_PARAMS: Final[dict[str, object]] = {
    "max_iter": 60,
    "learning_rate": 0.15,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 80,
    "l2_regularization": 1.0,
    "early_stopping": False,  # no random split of time-ordered rows; the size is fixed instead
    "random_state": 0,
}
LOGREG_PARAMS: Final[dict[str, object]] = {"C": 1.0, "max_iter": 1000}
#: calibration methods tried on the calibration slice; the one with the lower Brier score on the
#: validation window is kept
CALIBRATION_METHODS: Final[tuple[str, ...]] = ("isotonic", "sigmoid")
#: rows of the training sample used to build the reason-code reference curves
REASON_REFERENCE_ROWS: Final[int] = 400
REASON_GRID_POINTS: Final[int] = 25
#: a feature is a driver only if it raises the raw score (log-odds) by at least this much
REASON_MIN_CONTRIBUTION: Final[float] = 0.01

# --- metrics -------------------------------------------------------------------------------------
CALIBRATION_BINS: Final[int] = 10
CONTACT_BUDGETS: Final[tuple[float, ...]] = (0.05, 0.10, 0.20)
#: the metric that decides promotion (a challenger must beat the champion by settings.promotion_margin)
PROMOTION_METRIC: Final[str] = "pr_auc"
#: the metric compared with settings.quality_floor_auc
FLOOR_METRIC: Final[str] = "roc_auc"

# --- risk tiers (calibrated probability of churning within the horizon) ---------------------------
#: high: p >= 0.40, medium: 0.15 <= p < 0.40, low: p < 0.15
RISK_TIERS: Final[tuple[tuple[str, float], ...]] = (("high", 0.40), ("medium", 0.15), ("low", 0.0))

# --- retention economics -------------------------------------------------------------------------
REASONS: Final[tuple[str, ...]] = (
    "price",
    "quality_fit",
    "service_failure",
    "involuntary",
    "moved_no_need",
    "unknown",
)
EXPECTED_SAVE_RATE: Final[dict[str, float]] = {
    "price": 0.30,  # a discount keeps about a third of price-driven leavers
    "quality_fit": 0.20,  # onboarding help / case studies
    "service_failure": 0.35,  # apology + fix of the fault
    "involuntary": 0.50,  # dunning recovers half of failed payments
    "moved_no_need": 0.02,  # let go: we do not chase them
    "unknown": 0.10,
}
OFFER_COST: Final[dict[str, float]] = {
    "price": 15.0,  # value of the retention discount
    "quality_fit": 5.0,  # success-team time
    "service_failure": 10.0,  # goodwill credit
    "involuntary": 1.0,  # dunning e-mails
    "moved_no_need": 0.0,  # no offer
    "unknown": 5.0,
}

# --- monitoring ----------------------------------------------------------------------------------
#: population stability index: < 0.10 stable, 0.10-0.25 watch, > 0.25 drift
PSI_WATCH: Final[float] = 0.10
PSI_DRIFT: Final[float] = 0.25
#: realised AUC is computed for at most this many past scored as-of dates whose horizon is over
REALISED_MAX_DATES: Final[int] = 8
