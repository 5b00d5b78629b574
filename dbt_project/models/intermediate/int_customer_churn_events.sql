{{
    config(
        post_hook=[
            "{{ ensure_index(['customer_id', 'churned_at']) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Every churn episode observed before the as-of date, per the shared churn definition
    (INTERFACES.md): a cancelled subscription with no other live subscription of the customer
    (a replacement started within a day counts as a plan switch, not churn) churns at cancelled_at,
    involuntary when cancel_reason = 'payment_failed'; a purchase run without a new order for
    180 days churns at last order + 180 days (`lapsed`) unless a subscription was live then or
    a subscription was cancelled inside that gap (that episode is already counted). The first
    order or subscription start after a churn reactivates the customer.

    Built for scale (5M orders): the as-of instant is a literal (a one-row CTE was materialized
    and hid it from the planner); the known orders and subscriptions are `not materialized`, so
    each reader scans them with the table's statistics; the first order after a purchase-run
    churn is the run's next order, known from the order sequence, so only subscription churns
    are joined to later orders (joining all churns, a union without statistics, to all restarts
    was estimated at billions of rows and merge-joined 5.6M sorted rows).
-#}

{%- set as_of_ts = utc_midnight(as_of_date()) %}

with

subscriptions as (

    select * from {{ ref('int_subscription_periods') }}

),

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

known_subscriptions as not materialized (

    select *
    from subscriptions
    where started_at < {{ as_of_ts }}

),

known_orders as not materialized (

    select
        customer_id,
        ordered_at
    from orders
    where ordered_at < {{ as_of_ts }}

),

subscription_churns as (

    select
        ended.customer_id,
        ended.subscription_id,
        ended.cancelled_at as churned_at,
        case when ended.is_involuntary then 'involuntary' else 'voluntary' end as churn_type
    from known_subscriptions as ended
    where
        ended.cancelled_at < {{ as_of_ts }}
        and not exists (
            select 1
            from known_subscriptions as other
            where
                other.customer_id = ended.customer_id
                and other.subscription_id <> ended.subscription_id
                and other.started_at <= ended.cancelled_at + interval '1 day'
                and (other.cancelled_at is null or other.cancelled_at > ended.cancelled_at)
        )

),

order_sequence as (

    select
        customer_id,
        ordered_at,
        lead(ordered_at) over (partition by customer_id order by ordered_at) as next_ordered_at
    from known_orders

),

lapse_candidates as (

    select
        customer_id,
        ordered_at,
        next_ordered_at,
        ordered_at + interval '180 days' as churned_at
    from order_sequence
    where next_ordered_at is null or next_ordered_at > ordered_at + interval '180 days'

),

lapse_churns as (

    select
        lapse_candidates.customer_id,
        cast(null as text) as subscription_id,
        lapse_candidates.churned_at,
        'lapsed' as churn_type,
        lapse_candidates.next_ordered_at
    from lapse_candidates
    where
        lapse_candidates.churned_at < {{ as_of_ts }}
        and not exists (
            select 1
            from known_subscriptions
            where
                known_subscriptions.customer_id = lapse_candidates.customer_id
                and known_subscriptions.started_at < lapse_candidates.churned_at
                and (
                    known_subscriptions.cancelled_at is null
                    or known_subscriptions.cancelled_at >= lapse_candidates.churned_at
                    or known_subscriptions.cancelled_at > lapse_candidates.ordered_at
                )
        )

),

restarts as (

    select
        customer_id,
        ordered_at as restarted_at
    from known_orders
    union all
    select
        customer_id,
        started_at as restarted_at
    from known_subscriptions

),

subscription_reactivations as (

    select
        subscription_churns.customer_id,
        subscription_churns.subscription_id,
        subscription_churns.churned_at,
        subscription_churns.churn_type,
        min(restarts.restarted_at) as reactivated_at
    from subscription_churns
    left join restarts
        on
            subscription_churns.customer_id = restarts.customer_id
            and subscription_churns.churned_at < restarts.restarted_at
    group by 1, 2, 3, 4

),

-- a purchase-run churn ends at the run's next order (after the churn by definition) or at an
-- earlier subscription start
lapse_reactivations as (

    select
        lapse_churns.customer_id,
        lapse_churns.subscription_id,
        lapse_churns.churned_at,
        lapse_churns.churn_type,
        least(min(known_subscriptions.started_at), min(lapse_churns.next_ordered_at)) as reactivated_at
    from lapse_churns
    left join known_subscriptions
        on
            lapse_churns.customer_id = known_subscriptions.customer_id
            and lapse_churns.churned_at < known_subscriptions.started_at
    group by 1, 2, 3, 4

),

with_reactivation as (

    select * from subscription_reactivations
    union all
    select * from lapse_reactivations

),

final as (

    select
        md5(customer_id || '|' || churn_type || '|' || cast(churned_at as text)) as churn_event_id,
        customer_id,
        subscription_id,
        churned_at,
        {{ utc_date('churned_at') }} as churn_date,
        churn_type,
        reactivated_at,
        {{ utc_date('reactivated_at') }} as reactivated_date
    from with_reactivation

)

select * from final
