{{ config(post_hook=["analyze {{ this }}"]) }}

-- One row per subscription: its live period, monthly-equivalent price and how it ended.

with

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

final as (

    select
        subscription_id,
        customer_id,
        plan,
        price,
        billing_period,
        cast(
            case when billing_period = 'year' then price / 12.0 else price end as numeric(12, 2)
        ) as price_monthly,
        started_at,
        {{ utc_date('started_at') }} as start_date,
        renewal_date,
        cancelled_at,
        {{ utc_date('cancelled_at') }} as cancel_date,
        cancel_reason,
        coalesce(cancel_reason = 'payment_failed', false) as is_involuntary
    from subscriptions

)

select * from final
