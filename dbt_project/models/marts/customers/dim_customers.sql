{{
    config(
        post_hook=[
            "{{ ensure_index(['customer_id'], unique=true) }}",
            "analyze {{ this }}"
        ]
    )
}}

-- One row per customer (signed up before the as-of date): profile, current subscription,
-- lifecycle stage, RFM and value. Rules are documented in _customers__models.yml.

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

signals as (

    select * from {{ ref('fct_customer_signals') }}

),

activity as (

    select * from {{ ref('int_customer_activity') }}

),

current_subscription as (

    select * from {{ ref('int_customer_current_subscription') }}

),

rfm as (

    select * from {{ ref('int_customer_rfm') }}

),

customer_value as (

    select * from {{ ref('int_customer_value') }}

),

risk_flags as (

    select
        customer_id,
        array_remove(array[
            case when usage_trend_pct < -50 and usage_events_prior_90d_per30 >= 2 then 'usage_drop' end,
            case when purchase_freq_drop_pct > 50 and orders_prior_270d_per90 >= 1 then 'purchase_drop' end,
            case when payment_failed_unrecovered then 'payment_failed' end,
            case when unresolved_tickets > 0 then 'unresolved_ticket' end,
            case
                when is_subscriber and days_to_renewal <= 30 and discount_share_365d >= 0.2
                    then 'renewal_discount_seeker'
            end,
            case when inquiries_without_order_30d >= 2 then 'repeated_inquiries' end
        ], null) as reasons
    from signals

),

staged as (

    select
        signals.customer_id,
        case
            when signals.is_churned then 'churned'
            when signals.tenure_days < 30 then 'new'
            when activity.reactivated_at >= {{ utc_midnight(as_of_date() ~ ' - 90') }} then 'reactivated'
            when
                not signals.is_subscriber
                and {{ as_of_date() }} - {{ utc_date('activity.last_activity_at') }} >= 60
                then 'lapsed'
            when cardinality(risk_flags.reasons) > 0 then 'at_risk'
            else 'active'
        end as lifecycle_stage,
        array_to_string(risk_flags.reasons, ',') as risk_reasons
    from signals
    inner join activity on signals.customer_id = activity.customer_id
    inner join risk_flags on signals.customer_id = risk_flags.customer_id

),

final as (

    select
        customers.customer_id,
        customers.email,
        customers.country,
        customers.time_zone,
        customers.marketing_consent,
        customers.acquisition_channel,
        customers.signup_at,
        signals.tenure_days,
        current_subscription.subscription_id,
        current_subscription.plan,
        cast(current_subscription.price_monthly as numeric(12, 2)) as plan_price_monthly,
        current_subscription.billing_period,
        current_subscription.renewal_date,
        coalesce(current_subscription.subscription_status, 'none') as subscription_status,
        staged.lifecycle_stage,
        case when staged.lifecycle_stage = 'at_risk' then staged.risk_reasons end as at_risk_reasons,
        activity.last_churned_at as churned_at,
        activity.last_churn_type as churn_type,
        activity.reactivated_at,
        activity.last_order_at,
        activity.last_activity_at,
        activity.orders_count,
        activity.total_revenue,
        rfm.rfm_recency_score,
        rfm.rfm_frequency_score,
        rfm.rfm_monetary_score,
        rfm.rfm_segment,
        cast(
            case
                when staged.lifecycle_stage in ('new', 'active', 'at_risk', 'reactivated')
                    then customer_value.subscription_value_12m + customer_value.order_value_12m
            end as numeric(14, 2)
        ) as clv_12m,
        cast(
            case
                when staged.lifecycle_stage in ('lapsed', 'churned') then customer_value.second_lifetime_value
            end as numeric(14, 2)
        ) as second_lifetime_value,
        cast(
            case
                when staged.lifecycle_stage in ('new', 'active', 'at_risk', 'reactivated')
                    then customer_value.subscription_value_12m + customer_value.order_value_12m
                else customer_value.second_lifetime_value
            end as numeric(14, 2)
        ) as customer_value,
        signals.as_of_date
    from customers
    inner join signals on customers.customer_id = signals.customer_id
    inner join staged on customers.customer_id = staged.customer_id
    inner join activity on customers.customer_id = activity.customer_id
    inner join rfm on customers.customer_id = rfm.customer_id
    inner join customer_value on customers.customer_id = customer_value.customer_id
    left join current_subscription on customers.customer_id = current_subscription.customer_id

)

select * from final
