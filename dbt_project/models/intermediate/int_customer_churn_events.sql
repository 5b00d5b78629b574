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
-#}

with

subscriptions as (

    select * from {{ ref('int_subscription_periods') }}

),

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

cutoff as (

    select
        {{ utc_midnight(as_of_date()) }} as as_of_ts

),

known_subscriptions as (

    select subscriptions.*
    from subscriptions
    cross join cutoff
    where subscriptions.started_at < cutoff.as_of_ts

),

known_orders as (

    select
        orders.customer_id,
        orders.ordered_at
    from orders
    cross join cutoff
    where orders.ordered_at < cutoff.as_of_ts

),

subscription_churns as (

    select
        ended.customer_id,
        ended.subscription_id,
        ended.cancelled_at as churned_at,
        case when ended.is_involuntary then 'involuntary' else 'voluntary' end as churn_type
    from known_subscriptions as ended
    cross join cutoff
    where
        ended.cancelled_at < cutoff.as_of_ts
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
        ordered_at + interval '180 days' as churned_at
    from order_sequence
    where next_ordered_at is null or next_ordered_at > ordered_at + interval '180 days'

),

lapse_churns as (

    select
        lapse_candidates.customer_id,
        cast(null as text) as subscription_id,
        lapse_candidates.churned_at,
        'lapsed' as churn_type
    from lapse_candidates
    cross join cutoff
    where
        lapse_candidates.churned_at < cutoff.as_of_ts
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

all_churns as (

    select * from subscription_churns
    union all
    select * from lapse_churns

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

with_reactivation as (

    select
        all_churns.customer_id,
        all_churns.subscription_id,
        all_churns.churned_at,
        all_churns.churn_type,
        min(restarts.restarted_at) as reactivated_at
    from all_churns
    left join restarts
        on
            all_churns.customer_id = restarts.customer_id
            and all_churns.churned_at < restarts.restarted_at
    group by 1, 2, 3, 4

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
