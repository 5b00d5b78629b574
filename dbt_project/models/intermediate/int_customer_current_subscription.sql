-- Per customer, the subscription that describes them at the as-of date: the live one (latest
-- started when several are live), else the latest started before the as-of date.

with

subscriptions as (

    select * from {{ ref('int_subscription_periods') }}

),

cutoff as (

    select {{ utc_midnight(as_of_date()) }} as as_of_ts

),

ranked as (

    select
        subscriptions.*,
        coalesce(subscriptions.cancelled_at is null or subscriptions.cancelled_at >= cutoff.as_of_ts, false)
            as is_live,
        row_number() over (
            partition by subscriptions.customer_id
            order by
                (subscriptions.cancelled_at is null or subscriptions.cancelled_at >= cutoff.as_of_ts) desc,
                subscriptions.started_at desc,
                subscriptions.subscription_id desc
        ) as rank_in_customer
    from subscriptions
    cross join cutoff
    where subscriptions.started_at < cutoff.as_of_ts

),

final as (

    select
        customer_id,
        subscription_id,
        plan,
        price,
        price_monthly,
        billing_period,
        started_at,
        renewal_date,
        cancelled_at,
        cancel_reason,
        case when is_live then 'live' else 'cancelled' end as subscription_status
    from ranked
    where rank_in_customer = 1

)

select * from final
