{{
    config(
        indexes=[
            {'columns': ['renewal_date']},
            {'columns': ['customer_id']},
        ]
    )
}}

{#-
    One row per subscription whose renewal touch points are still ahead or recent: every live
    subscription (its next renewal) and every cancelled one whose renewal date (the end of the
    paid period) is at most `renewal_calendar_past_days` days before the as-of date, so the
    T+7 win-back can be planned. A cancelled subscription of a customer who still has another
    live subscription (a plan change) is left out: that customer did not leave.
-#}

{%- set past_days = var('renewal_calendar_past_days', 14) -%}

with

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

live_customers as (

    select distinct customer_id
    from subscriptions
    where
        started_at < {{ lifecycle_cutoff() }}
        and (cancelled_at is null or cancelled_at >= {{ lifecycle_cutoff() }})

),

calendar as (

    select
        subscriptions.subscription_id,
        subscriptions.customer_id,
        subscriptions.plan,
        subscriptions.price,
        subscriptions.billing_period,
        subscriptions.renewal_date,
        coalesce(subscriptions.cancelled_at < {{ lifecycle_cutoff() }}, false) as is_cancelled,
        case
            when subscriptions.cancelled_at < {{ lifecycle_cutoff() }} then subscriptions.cancelled_at
        end as cancelled_at
    from subscriptions
    left join live_customers
        on subscriptions.customer_id = live_customers.customer_id
    where
        subscriptions.started_at < {{ lifecycle_cutoff() }}
        and (
            subscriptions.cancelled_at is null
            or subscriptions.cancelled_at >= {{ lifecycle_cutoff() }}
            or (
                live_customers.customer_id is null
                and subscriptions.renewal_date >= {{ as_of_date() }} - {{ past_days }}
            )
        )

),

final as (

    select
        subscription_id,
        customer_id,
        plan,
        price,
        billing_period,
        renewal_date,
        cast(renewal_date - 7 as date) as t_minus_7,
        cast(renewal_date - 1 as date) as t_minus_1,
        renewal_date as t_0,
        cast(renewal_date + 7 as date) as t_plus_7,
        is_cancelled,
        cancelled_at,
        cast(renewal_date - {{ as_of_date() }} as integer) as days_to_renewal
    from calendar

)

select * from final
