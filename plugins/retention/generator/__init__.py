"""Seeded generator of a realistic subscription-plus-shop business (the demo company).

    retention generate OUT_DIR --customers N --seed S [--end-date YYYY-MM-DD]
                       [--format parquet|csv] [--chunk-customers 50000]

or ``generate(out_dir, customers, seed, end_date=None, fmt="parquet", chunk_customers=50000)``.

Output (columns and types exactly the raw contract, ``dbt_project/models/staging/_raw__sources.yml``):
``customers``, ``subscriptions``, ``support_tickets``, ``cancellation_feedback`` as one file each
(``<table>.parquet`` or ``.csv``); ``usage_events``, ``order_lines``, ``orders``, ``payments`` as a
sub-folder of parts (``<table>/part-00000.parquet`` ..., one per chunk).  No ``email_events`` (the
SendGrid webhook writes those).  ``ground_truth/churn_truth.parquet`` holds the planted churn
(customer_id, churned_at, true_reason, mechanism) and ``ground_truth/manifest.json`` the arguments
and row counts; ``load_truth(dir, conn)`` loads it into ``<truth_schema>.churn_truth``.  No model or
mart may read the ground truth: it only lets evaluation code score itself.

Time: the history covers the 730 days before the end date (data up to end_date 00:00 UTC,
exclusive); 22% of the customers signed up before the window (their data starts with it).

Determinism: customers are simulated in chunks; chunk ``i`` draws everything from
``numpy.random.Generator(PCG64(SeedSequence([seed, i])))``, so the same seed and arguments give
byte-identical files, and memory is bounded by one chunk (about 50 usage events per customer).

The business: ~60% subscribers (basic/standard/premium, monthly or yearly; renewal_date is the end
of the paid period, for a cancelled subscription the last period end); everybody else buys in the
shop (purchase-only), and half of the subscribers shop too (orders with lines in accessories,
content_packs, hardware, gifts, merch; payments per subscription period and per order); usage events
(login/play/search/download/error); support tickets; cancel-flow answers.

Who leaves when: competing monthly hazards per reason (subscribers: quality_fit 0.9% -- doubled
for low-engagement customers --, moved_no_need 0.5%, involuntary 0.5%, price 0.2% + 1.0% if
price-sensitive, service_failure 0.2%; purchase-only customers similar, no involuntary), plus the
price increase and the product faults below: a few percent of the customers churn each month.

Planted churn mechanisms (each one is visible in the raw data; see ``MECHANISMS``):

1. Declining usage -- quality_fit churners' usage falls linearly to ~12% over their last 60-90
   days, price churners' to ~55% over 60 days, service-failure victims' from the fault onwards.
2. Inquiries without an order -- 65% of quality_fit and 55% of price churners open 1-4 ``inquiry``
   tickets in their last ~60 days (subscribers) or after their last order (purchase-only) and stop
   ordering; staying customers' inquiries are mostly followed by an order within days.
3. Product faults -- ``E-PLAYBACK-502`` (21 days, starting 250 days before the end date, device
   cohort smart_tv) and ``E-SYNC-013`` (14 days, 520 days before the end, ios).  Victims get error
   usage events with the code; ~15-18% complain (technical ticket with the error_code, ~half left
   unresolved), the rest stay silent.  Planted churn probability after the fault: silent victims
   40% (E-PLAYBACK-502) / 30% (E-SYNC-013), unresolved complainers 45% / 40%, resolved ones
   12% / 10%, within weeks of the fault (reason service_failure).
4. Failed payments -- involuntary churners' renewal charge fails three times (attempts 1-3 at
   due, +3 d, +7 d, with failure_code); billing cancels 10-13 days after the renewal with
   cancel_reason ``payment_failed``; most of them had a late or failed-then-recovered charge in
   the 100 days before.  Dunning still open at the end date: failed attempts, subscription live.
5. Price -- price-sensitive customers (25%) buy mostly on discount (65% of their orders, 15-35%
   off) and have an extra churn hazard; their cancellations land 0.3-6 days before a renewal.
   The list price rises 15% 270 days before the end date: 45% of the price-sensitive subscribers
   leave at their first renewal at the new price.
6. Moved / no longer needed -- usage stops abruptly 10-40 days before the cancellation.
7. Seasonality -- orders run at 1.6x (Nov) and 1.8x (Dec) the normal rhythm (gifts and a
   Black Friday discount week), usage dips to ~0.72-0.75x in July/August.
8. Reactivation -- 22% of price, 30% of involuntary, 4-12% of other churned subscribers start a new
   monthly subscription 20-240 days later; purchase-only churners come back with new orders.

Purchase-only customers churn by stopping ordering: their rhythm is regular (gaps never reach
180 days unless they leave), churned_at = last order + 180 days (the interfaces' definition), and the
true reason is recorded too.  Cancel-flow answers: 55% of voluntary cancellers answer, 72% of them
name the true reason, the rest something else (or ``other``); 4% of live subscribers went through the
flow, took the offer and stayed (offer_accepted).
"""

from __future__ import annotations

from retention.generator.api import (
    GenerateReport,
    GeneratorError,
    generate,
    load_truth,
    read_truth,
)
from retention.generator.cli import main

#: the planted mechanisms: (name, true_reason(s), how it is planted, where it shows in the raw data)
MECHANISMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "declining_usage",
        "quality_fit, price, service_failure",
        "usage rate falls linearly before leaving (quality_fit to 12% over 60-90 d, price to 55% over 60 d)",
        "usage_events per day in the last 60 days vs the prior period",
    ),
    (
        "inquiries_without_order",
        "quality_fit, price",
        "1-4 inquiry tickets in the last ~60 days, orders stop",
        "support_tickets.category = 'inquiry' with no later order",
    ),
    (
        "product_fault",
        "service_failure",
        "E-PLAYBACK-502 / E-SYNC-013 hit a device cohort in a fault period; few complain",
        "usage_events error_code, technical tickets with the same error_code (often unresolved)",
    ),
    (
        "failed_payments",
        "involuntary",
        "renewal charge fails 3 times, billing cancels with payment_failed",
        "payments.status = 'failed' (attempt_number 1-3, failure_code) before subscriptions.cancelled_at",
    ),
    (
        "price_sensitivity",
        "price",
        "high discount share, extra hazard, leave at renewal, 45% leave after the 15% price increase",
        "orders.discount_amount share; cancelled_at within 6 days before renewal_date",
    ),
    (
        "moved_no_need",
        "moved_no_need",
        "usage stops abruptly 10-40 days before the cancellation",
        "usage_events stop; cancel-flow answer moved_no_need",
    ),
    (
        "seasonality",
        "-",
        "orders x1.6 Nov, x1.8 Dec (gifts, Black Friday discounts); usage x0.72-0.75 Jul/Aug",
        "orders per day by month, usage events per day by month",
    ),
    (
        "reactivation",
        "any",
        "some churners come back: a new subscription (-2) or orders after the 180-day lapse",
        "subscriptions started after an earlier cancellation; orders after churned_at",
    ),
)

__all__ = [
    "MECHANISMS",
    "GenerateReport",
    "GeneratorError",
    "generate",
    "load_truth",
    "main",
    "read_truth",
]
