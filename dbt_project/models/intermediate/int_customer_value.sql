{#-
    Value inputs per customer at the as-of date C (everything observed before C):

    clv_12m (expected revenue of the next 12 months while the customer stays):
        subscription part = plan_price_monthly x expected retained months, with a constant
            monthly churn rate r of the customer's plan observed over [C-365, C):
            r = subscription churn episodes / subscriber-months of exposure of that plan
            (the all-plan rate when the plan has < 12 months of exposure; var
            default_monthly_churn_rate, 0.03, when nothing is observed), and
            expected months = sum_{k=0..11} (1-r)^k = (1 - (1-r)^12) / r
        order part = order run-rate (order revenue of the last 365 days, annualised when the
            customer signed up less than a year ago, at least 30 days) x survival, survival = the
            share of customers with the same order-count tier (1, 2-3, 4+ orders) in
            [C-730, C-365) who ordered again in [C-365, C) (the all-tier share when the tier
            has < 10 customers; var default_order_survival, 0.5, when nothing is observed)

    second_lifetime_value (what a lapsed or churned customer is worth if won back):
        past 12-month revenue before the churn (or before C when lapsed, not churned)
        x win-back rate of the same churn type (voluntary | involuntary | lapsed): the share of
          churn episodes dated in [C-730, C-365) reactivated within 365 days (all types when a
          type has < 10 episodes; var default_winback_rate, 0.10, when none)
        x var value_margin (0.4, gross margin: a win-back costs offers and service)

    Built for scale (1M customers, 10M transactions): the as-of instants are SQL literals (a one-row
    `bounds` CTE hid them from the planner), import CTEs read twice are `not materialized` (a
    materialized CTE has no statistics: the planner took 1M customers for 200 rows and chose a
    nested loop), and per-customer aggregates are built before joining: order counts from the
    orders of two years, past 12-month value from int_customer_rfm (its monetary value is the
    revenue of [C-365, C)) except for churned customers, whose year before the churn is summed
    from their own transactions.
-#}

{%- set as_of_ts = utc_midnight(as_of_date()) -%}
{%- set year_ago_ts = utc_midnight(as_of_date() ~ ' - 365') -%}

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

subscriptions as not materialized (

    select * from {{ ref('int_subscription_periods') }}

),

current_subscription as (

    select * from {{ ref('int_customer_current_subscription') }}

),

churn_events as not materialized (

    select * from {{ ref('int_customer_churn_events') }}

),

transactions as not materialized (

    select * from {{ ref('int_customer_transactions') }}

),

activity as not materialized (

    select * from {{ ref('int_customer_activity') }}

),

rfm as (

    select * from {{ ref('int_customer_rfm') }}

),

-- subscription churn rate per plan over the last year
plan_exposure as (

    select
        plan,
        sum(
            extract(epoch from (
                least(coalesce(cancelled_at, {{ as_of_ts }}), {{ as_of_ts }})
                - greatest(started_at, {{ year_ago_ts }})
            )) / 86400.0 / 30.4375
        ) as exposure_months
    from subscriptions
    where
        started_at < {{ as_of_ts }}
        and coalesce(cancelled_at, {{ as_of_ts }}) > {{ year_ago_ts }}
    group by 1

),

plan_churns as (

    select
        subscriptions.plan,
        count(*) as churns
    from churn_events
    inner join subscriptions on churn_events.subscription_id = subscriptions.subscription_id
    where churn_events.churned_at >= {{ year_ago_ts }} and churn_events.churned_at < {{ as_of_ts }}
    group by 1

),

plan_rates as (

    select
        plan_exposure.plan,
        plan_exposure.exposure_months,
        coalesce(plan_churns.churns, 0) as churns
    from plan_exposure
    left join plan_churns on plan_exposure.plan = plan_churns.plan

),

overall_rate as (

    select sum(churns) / nullif(sum(exposure_months), 0) as monthly_churn_rate
    from plan_rates

),

plan_churn_rate as (

    select
        plan_rates.plan,
        least(greatest(
            coalesce(
                case when plan_rates.exposure_months >= 12 then plan_rates.churns / plan_rates.exposure_months end,
                overall_rate.monthly_churn_rate,
                {{ var('default_monthly_churn_rate', 0.03) }}
            ), 0.001
        ), 1.0) as monthly_churn_rate
    from plan_rates
    cross join overall_rate

),

-- orders of the last two years per customer, by year (order survival, order run-rate)
order_counts as (

    select
        customer_id,
        count(*) filter (where transacted_at < {{ year_ago_ts }}) as orders_prior_year,
        count(*) filter (where transacted_at >= {{ year_ago_ts }}) as orders_last_year,
        sum(amount) filter (where transacted_at >= {{ year_ago_ts }}) as order_revenue_last_year
    from transactions
    where
        revenue_source = 'order'
        and transacted_at >= {{ year_ago_ts }} - interval '365 days'
        and transacted_at < {{ as_of_ts }}
    group by 1

),

-- order survival per order-count tier: did last year's buyers buy again this year?
tier_survival as (

    select
        {{ order_tier('orders_prior_year') }} as order_tier,
        count(*) as customers,
        avg(case when orders_last_year > 0 then 1.0 else 0.0 end) as survival
    from order_counts
    where orders_prior_year > 0
    group by 1

),

overall_survival as (

    select sum(survival * customers) / nullif(sum(customers), 0) as survival
    from tier_survival

),

-- win-back: share of churn episodes of a year before last that came back within a year
winback_base as (

    select
        churn_type,
        count(*) as episodes,
        count(*) filter (
            where reactivated_at < churned_at + interval '365 days'
        ) as reactivated
    from churn_events
    where
        churned_at >= {{ year_ago_ts }} - interval '365 days'
        and churned_at < {{ year_ago_ts }}
    group by 1

),

overall_winback as (

    select sum(reactivated) * 1.0 / nullif(sum(episodes), 0) as winback_rate
    from winback_base

),

-- revenue of the 12 months before the churn of customers churned and not back (the others' past
-- 12-month value is their RFM monetary value: revenue of the 365 days before the as-of date)
churned_past_value as (

    select
        activity.customer_id,
        sum(transactions.amount) as past_12m_value
    from activity
    inner join transactions
        on
            activity.customer_id = transactions.customer_id
            and {{ utc_date('activity.last_churned_at') }} - 365 <= transactions.transaction_date
            and {{ utc_date('activity.last_churned_at') }} > transactions.transaction_date
    where activity.last_churned_at is not null and activity.reactivated_at is null
    group by 1

),

customer_base as (

    select
        customers.customer_id,
        current_subscription.plan,
        current_subscription.price_monthly,
        current_subscription.subscription_status = 'live' as is_live_subscriber,
        -- annualised: a customer who signed up 3 months ago has only 3 months of orders
        coalesce(order_counts.order_revenue_last_year, 0) * 365.0
        / greatest(least({{ as_of_date() }} - {{ utc_date('customers.signup_at') }}, 365), 30)
            as order_revenue_last_year,
        {{ order_tier('coalesce(order_counts.orders_last_year, 0)') }} as order_tier,
        coalesce(activity.last_churn_type, 'lapsed') as winback_churn_type,
        case
            when activity.last_churned_at is not null and activity.reactivated_at is null
                then coalesce(churned_past_value.past_12m_value, 0)
            else rfm.rfm_monetary
        end as past_12m_value
    from customers
    inner join activity on customers.customer_id = activity.customer_id
    inner join rfm on customers.customer_id = rfm.customer_id
    left join current_subscription on customers.customer_id = current_subscription.customer_id
    left join order_counts on customers.customer_id = order_counts.customer_id
    left join churned_past_value on customers.customer_id = churned_past_value.customer_id

),

valued as (

    select
        customer_base.customer_id,
        customer_base.order_tier,
        customer_base.winback_churn_type,
        coalesce(
            plan_churn_rate.monthly_churn_rate,
            overall_rate.monthly_churn_rate,
            {{ var('default_monthly_churn_rate', 0.03) }}
        ) as monthly_churn_rate,
        coalesce(
            case when tier_survival.customers >= 10 then tier_survival.survival end,
            overall_survival.survival,
            {{ var('default_order_survival', 0.5) }}
        ) as order_survival,
        coalesce(
            case when winback_base.episodes >= 10 then winback_base.reactivated * 1.0 / winback_base.episodes end,
            overall_winback.winback_rate,
            {{ var('default_winback_rate', 0.10) }}
        ) as winback_rate,
        customer_base.is_live_subscriber,
        customer_base.price_monthly,
        customer_base.order_revenue_last_year,
        customer_base.past_12m_value
    from customer_base
    cross join overall_rate
    cross join overall_survival
    cross join overall_winback
    left join plan_churn_rate on customer_base.plan = plan_churn_rate.plan
    left join tier_survival on customer_base.order_tier = tier_survival.order_tier
    left join winback_base on customer_base.winback_churn_type = winback_base.churn_type

),

final as (

    select
        customer_id,
        order_tier,
        winback_churn_type,
        cast(monthly_churn_rate as numeric(8, 6)) as monthly_churn_rate,
        cast(order_survival as numeric(8, 6)) as order_survival,
        cast(winback_rate as numeric(8, 6)) as winback_rate,
        cast(
            case
                when is_live_subscriber
                    then price_monthly * (1 - power(1 - monthly_churn_rate, 12)) / monthly_churn_rate
                else 0
            end as numeric(14, 2)
        ) as subscription_value_12m,
        cast(order_revenue_last_year * order_survival as numeric(14, 2)) as order_value_12m,
        cast(past_12m_value as numeric(14, 2)) as past_12m_value,
        cast(
            past_12m_value * winback_rate * {{ var('value_margin', 0.4) }} as numeric(14, 2)
        ) as second_lifetime_value
    from valued

)

select * from final
