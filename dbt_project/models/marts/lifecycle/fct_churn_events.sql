{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='churn_event_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['customer_id']},
            {'columns': ['churn_date']},
        ],
        post_hook=[
            "delete from {{ this }} as churn_events where not exists (select 1 from "
            ~ "{{ ref('int_customer_churn_events') }} as episodes "
            ~ "where episodes.churn_event_id = churn_events.churn_event_id)"
        ],
    )
}}

{#-
    One row per churn episode of int_customer_churn_events (the shared churn definition), with
    the churn reason: stated by the customer when possible, inferred from the signals before the
    churn otherwise. The rules, their order and their measured agreement with the generator's
    planted reasons are documented in _lifecycle__models.yml (fct_churn_events).

    Incremental: a churn episode's reason is computed once and kept. A run (re)computes the
    episodes not in the table yet and those of the last `churn_events_recompute_days` (14) days
    before the as-of date, whose cancel-flow answer (up to 7 days after the churn) or tickets may
    still arrive; the post-hook deletes rows whose episode is gone from int_customer_churn_events
    (e.g. an earlier as-of date, or a cancellation taken back). Corrections to data older than
    that window need `--full-refresh`.
-#}

{#- int_customer_churn_events: a lapsed customer churns 180 days after the last order -#}
{%- set lapse_days = 180 -%}
{%- set renewal_days = var('churn_reason_renewal_days', 6.5) | float -%}
{%- set discount_share_min = var('churn_reason_discount_share_min', 0.2) | float -%}
{%- set usage_gap_days = positive_int_var('churn_reason_usage_gap_days', 10) | trim -%}
{%- set lapsed_usage_gap_days = positive_int_var('churn_reason_lapsed_usage_gap_days', 7) | trim -%}
{%- set usage_decline_ratio = var('churn_reason_usage_decline_ratio', 0.8) | float -%}
{%- set recompute_days = positive_int_var('churn_events_recompute_days', 14) | trim -%}

with

churn_episodes as (

    select * from {{ ref('int_customer_churn_events') }}

),

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

payment_charges as (

    select * from {{ ref('int_payment_charges') }}

),

support_tickets as (

    select * from {{ ref('stg_raw__support_tickets') }}

),

cancellation_feedback as (

    select * from {{ ref('stg_raw__cancellation_feedback') }}

),

usage_daily as (

    select * from {{ ref('int_usage_daily') }}

),

-- one row per episode id, even if two subscriptions of a customer end at the same instant
-- (int_customer_churn_events keys an episode by customer, type and time)
unique_episodes as (

    select
        *,
        row_number() over (partition by churn_event_id order by subscription_id desc) as episode_rank
    from churn_episodes

),

-- the shared churn episodes with the cancelled subscription's reason, renewal date and annual
-- revenue
churns as (

    select
        unique_episodes.churn_event_id,
        unique_episodes.customer_id,
        unique_episodes.subscription_id,
        unique_episodes.churned_at,
        unique_episodes.churn_type,
        subscriptions.cancel_reason,
        subscriptions.renewal_date,
        case
            when subscriptions.billing_period = 'year' then subscriptions.price
            else 12 * subscriptions.price
        end as subscription_revenue_12m
    from unique_episodes
    left join subscriptions
        on unique_episodes.subscription_id = subscriptions.subscription_id
    {% if is_incremental() %}
        where
            unique_episodes.episode_rank = 1
            and (
                unique_episodes.churned_at >= {{ lifecycle_cutoff() }} - interval '{{ recompute_days }} days'
                or not exists (
                    select 1
                    from {{ this }} as known_events
                    where known_events.churn_event_id = unique_episodes.churn_event_id
                )
            )
    {% else %}
        where unique_episodes.episode_rank = 1
    {% endif %}

),

-- usage days of each churner in the 450 days up to the churn day (the only read of
-- int_usage_daily: the anchor and every usage window lie inside it)
churn_usage as (

    select
        churns.churn_event_id,
        usage_daily.event_date,
        usage_daily.events_count,
        usage_daily.error_events_count
    from churns
    inner join usage_daily
        on
            churns.customer_id = usage_daily.customer_id
            and usage_daily.event_date > {{ utc_date('churns.churned_at') }} - 450
            and {{ utc_date('churns.churned_at') }} >= usage_daily.event_date

),

last_usage as (

    select
        churn_event_id,
        max(event_date) as last_usage_date
    from churn_usage
    group by 1

),

-- the anchor the signal windows end at: the cancellation, or for a lapsed customer the last
-- sign of life (the later of the last order and the last usage day)
anchored as (

    select
        churns.*,
        last_usage.last_usage_date,
        case
            when churns.churn_type = 'lapsed'
                then greatest(
                    churns.churned_at - interval '{{ lapse_days }} days',
                    {{ utc_midnight('last_usage.last_usage_date') }}
                )
            else churns.churned_at
        end as anchor_at
    from churns
    left join last_usage
        on churns.churn_event_id = last_usage.churn_event_id

),

-- the cancel-flow answer nearest to the churn (30 days before to 7 days after), save offers
-- accepted excluded
feedback_ranked as (

    select
        anchored.churn_event_id,
        cancellation_feedback.reason_category,
        row_number() over (
            partition by anchored.churn_event_id
            order by
                abs(extract(epoch from cancellation_feedback.submitted_at - anchored.churned_at)),
                cancellation_feedback.feedback_id
        ) as nearest
    from anchored
    inner join cancellation_feedback
        on
            anchored.customer_id = cancellation_feedback.customer_id
            and cancellation_feedback.submitted_at >= anchored.churned_at - interval '30 days'
            and cancellation_feedback.submitted_at <= anchored.churned_at + interval '7 days'
            and not cancellation_feedback.offer_accepted
            and (
                cancellation_feedback.subscription_id is null
                or anchored.subscription_id is null
                or anchored.subscription_id = cancellation_feedback.subscription_id
            )

),

feedback as (

    select
        churn_event_id,
        reason_category as feedback_reason
    from feedback_ranked
    where nearest = 1

),

-- charges due in the 60 days before the anchor that failed and were not paid by then
payment_signals as (

    select
        anchored.churn_event_id,
        count(*) filter (
            where payment_charges.paid_at is null or payment_charges.paid_at > anchored.anchor_at
        ) as unrecovered_failed_charges
    from anchored
    inner join payment_charges
        on
            anchored.customer_id = payment_charges.customer_id
            and payment_charges.due_at >= anchored.anchor_at - interval '60 days'
            and anchored.anchor_at >= payment_charges.first_failed_at
    group by 1

),

-- tickets opened in the 100 days before the anchor (up to a day after it)
ticket_signals as (

    select
        anchored.churn_event_id,
        count(*) filter (
            where support_tickets.category not in ('inquiry', 'billing')
            and support_tickets.opened_at > anchored.anchor_at - interval '90 days'
            and (support_tickets.resolved_at is null or support_tickets.resolved_at > anchored.anchor_at)
        ) as unresolved_tickets,
        count(*) filter (
            where support_tickets.category in ('technical', 'delivery')
            and support_tickets.opened_at > anchored.anchor_at - interval '60 days'
        ) as technical_tickets,
        count(*) filter (
            where support_tickets.category = 'inquiry'
            and support_tickets.opened_at > anchored.anchor_at - interval '90 days'
        ) as inquiry_tickets,
        count(*) filter (
            where support_tickets.category = 'other' or support_tickets.satisfaction <= 2
        ) as disappointed_tickets
    from anchored
    inner join support_tickets
        on
            anchored.customer_id = support_tickets.customer_id
            and support_tickets.opened_at > anchored.anchor_at - interval '100 days'
            and anchored.anchor_at + interval '1 day' >= support_tickets.opened_at
    group by 1

),

-- usage in the 60 days up to the anchor day against the baseline of days 91-270 before it
usage_signals as (

    select
        anchored.churn_event_id,
        coalesce(sum(churn_usage.events_count) filter (
            where churn_usage.event_date > {{ utc_date('anchored.anchor_at') }} - 60
        ), 0) as usage_60d,
        coalesce(sum(churn_usage.events_count) filter (
            where churn_usage.event_date <= {{ utc_date('anchored.anchor_at') }} - 90
        ), 0) / 3.0 as usage_baseline_per60,
        coalesce(sum(churn_usage.error_events_count) filter (
            where churn_usage.event_date > {{ utc_date('anchored.anchor_at') }} - 30
        ), 0) as error_events_30d,
        coalesce(sum(churn_usage.error_events_count) filter (
            where churn_usage.event_date > {{ utc_date('anchored.anchor_at') }} - 60
        ), 0) as error_events_60d
    from anchored
    inner join churn_usage
        on
            anchored.churn_event_id = churn_usage.churn_event_id
            and churn_usage.event_date > {{ utc_date('anchored.anchor_at') }} - 270
            and {{ utc_date('anchored.anchor_at') }} >= churn_usage.event_date
    group by 1

),

order_signals as (

    select
        anchored.churn_event_id,
        sum(orders.amount) as order_revenue_365d,
        sum(orders.discount_amount) / nullif(sum(orders.amount + orders.discount_amount), 0) as discount_share_365d
    from anchored
    inner join orders
        on
            anchored.customer_id = orders.customer_id
            and orders.ordered_at > anchored.anchor_at - interval '365 days'
            and anchored.anchor_at >= orders.ordered_at
    group by 1

),

-- the churned subscription costs less per month than one the customer had before
downgrades as (

    select
        anchored.churn_event_id,
        true as is_downgrade
    from anchored
    inner join subscriptions as churned_subscription
        on anchored.subscription_id = churned_subscription.subscription_id
    inner join subscriptions as earlier_subscription
        on
            churned_subscription.customer_id = earlier_subscription.customer_id
            and churned_subscription.started_at > earlier_subscription.started_at
            and {{ lifecycle_monthly_price('earlier_subscription.price', 'earlier_subscription.billing_period') }}
            > {{ lifecycle_monthly_price('churned_subscription.price', 'churned_subscription.billing_period') }}
    group by 1

),

signals as (

    select
        anchored.churn_event_id,
        anchored.customer_id,
        anchored.subscription_id,
        anchored.churned_at,
        anchored.churn_type,
        anchored.cancel_reason,
        anchored.subscription_revenue_12m,
        feedback.feedback_reason,
        cast(
            extract(epoch from {{ utc_midnight('anchored.renewal_date') }} - anchored.churned_at) / 86400.0
            as numeric(8, 2)
        ) as days_before_renewal,
        {{ utc_date('anchored.anchor_at') }} - anchored.last_usage_date as days_since_usage,
        coalesce(payment_signals.unrecovered_failed_charges, 0) as unrecovered_failed_charges,
        coalesce(ticket_signals.unresolved_tickets, 0) as unresolved_tickets,
        coalesce(ticket_signals.technical_tickets, 0) as technical_tickets,
        coalesce(ticket_signals.inquiry_tickets, 0) as inquiry_tickets,
        coalesce(ticket_signals.disappointed_tickets, 0) as disappointed_tickets,
        coalesce(usage_signals.usage_60d, 0) as usage_60d,
        coalesce(usage_signals.usage_baseline_per60, 0) as usage_baseline_per60,
        coalesce(usage_signals.error_events_30d, 0) as error_events_30d,
        coalesce(usage_signals.error_events_60d, 0) as error_events_60d,
        coalesce(order_signals.order_revenue_365d, 0) as order_revenue_365d,
        coalesce(order_signals.discount_share_365d, 0) as discount_share_365d,
        coalesce(downgrades.is_downgrade, false) as is_downgrade
    from anchored
    left join feedback
        on anchored.churn_event_id = feedback.churn_event_id
    left join payment_signals
        on anchored.churn_event_id = payment_signals.churn_event_id
    left join ticket_signals
        on anchored.churn_event_id = ticket_signals.churn_event_id
    left join usage_signals
        on anchored.churn_event_id = usage_signals.churn_event_id
    left join order_signals
        on anchored.churn_event_id = order_signals.churn_event_id
    left join downgrades
        on anchored.churn_event_id = downgrades.churn_event_id

),

reasons as (

    select
        *,
        case
            when churn_type = 'involuntary' then 'involuntary'
            when feedback_reason in ('price', 'quality_fit', 'service_failure', 'moved_no_need')
                then feedback_reason
            when cancel_reason in ('price', 'quality_fit', 'service_failure', 'moved_no_need')
                then cancel_reason
        end as stated_reason,
        case
            -- purchase customers who lapsed
            when churn_type = 'lapsed' and (
                error_events_30d >= 1 or technical_tickets > 0 or unresolved_tickets > 0
            ) then 'service_failure'
            when churn_type = 'lapsed' and discount_share_365d >= {{ discount_share_min }} then 'price'
            when churn_type = 'lapsed' and disappointed_tickets > 0 then 'quality_fit'
            when churn_type = 'lapsed' and days_since_usage >= {{ lapsed_usage_gap_days }} then 'quality_fit'
            when churn_type = 'lapsed' and days_since_usage is not null then 'moved_no_need'
            when churn_type = 'lapsed' then 'unknown'
            -- subscribers who cancelled
            when unrecovered_failed_charges > 0 then 'involuntary'
            when
                error_events_60d >= 2 or technical_tickets > 0 or unresolved_tickets > 0
                then 'service_failure'
            when days_before_renewal between 0 and {{ renewal_days }} or is_downgrade then 'price'
            when error_events_60d >= 1 then 'service_failure'
            when discount_share_365d >= {{ discount_share_min }} then 'price'
            when disappointed_tickets > 0 or inquiry_tickets > 0 then 'quality_fit'
            when days_since_usage >= {{ usage_gap_days }} then 'moved_no_need'
            when
                usage_baseline_per60 > 0
                and usage_60d < {{ usage_decline_ratio }} * usage_baseline_per60
                then 'quality_fit'
            else 'unknown'
        end as inferred_reason
    from signals

),

final as (

    select
        churn_event_id,
        customer_id,
        subscription_id,
        churned_at,
        {{ utc_date('churned_at') }} as churn_date,
        churn_type,
        coalesce(stated_reason, inferred_reason) as reason_category,
        case
            when stated_reason is not null and churn_type = 'involuntary' then 'inferred'
            when stated_reason is not null then 'stated'
            when inferred_reason = 'unknown' then 'unknown'
            else 'inferred'
        end as reason_source,
        cast(coalesce(subscription_revenue_12m, order_revenue_365d) as numeric(14, 2)) as revenue_lost_12m,
        feedback_reason,
        days_before_renewal,
        days_since_usage,
        unrecovered_failed_charges,
        unresolved_tickets,
        technical_tickets,
        inquiry_tickets,
        disappointed_tickets,
        cast(error_events_30d as bigint) as error_events_30d,
        cast(error_events_60d as bigint) as error_events_60d,
        cast(usage_60d as bigint) as usage_events_60d,
        cast(usage_baseline_per60 as numeric(12, 2)) as usage_events_baseline_per60,
        cast(discount_share_365d as numeric(6, 4)) as discount_share_365d,
        is_downgrade
    from reasons

)

select * from final
