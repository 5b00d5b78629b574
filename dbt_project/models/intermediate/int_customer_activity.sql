-- Per customer at the as-of date: order totals, last order / usage / activity and the latest
-- churn episode (with its reactivation, if any) - all from data before the as-of date.
-- The as-of instant is a literal, not a one-row CTE: a materialized CTE keeps the scans of
-- transactions and daily usage (10M and 44M rows at 1M customers) from running in parallel.

{%- set as_of_ts = utc_midnight(as_of_date()) %}

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

transactions as (

    select * from {{ ref('int_customer_transactions') }}

),

usage_customers as (

    select * from {{ ref('int_usage_customers') }}

),

usage_daily as (

    select * from {{ ref('int_usage_daily') }}

),

subscriptions as (

    select * from {{ ref('int_subscription_periods') }}

),

churn_events as (

    select * from {{ ref('int_customer_churn_events') }}

),

revenue as (

    select
        transactions.customer_id,
        count(*) filter (where transactions.revenue_source = 'order') as orders_count,
        max(transactions.transacted_at) filter (where transactions.revenue_source = 'order') as last_order_at,
        sum(transactions.amount) as total_revenue
    from transactions
    where transactions.transacted_at < {{ as_of_ts }}
    group by 1

),

-- the last usage event before the as-of instant: a customer's last event overall when that is
-- before it (every customer on the daily run), else the last of their days before the as-of date
-- (a past as-of date; a day's events all fall on one side of the UTC midnight)
usage as (

    select
        usage_customers.customer_id,
        usage_customers.last_occurred_at as last_usage_at
    from usage_customers
    where usage_customers.last_occurred_at < {{ as_of_ts }}

    union all

    select
        usage_daily.customer_id,
        max(usage_daily.last_occurred_at) as last_usage_at
    from usage_daily
    where
        usage_daily.event_date < {{ as_of_date() }}
        and usage_daily.customer_id in (
            select later_usage.customer_id
            from usage_customers as later_usage
            where later_usage.last_occurred_at >= {{ as_of_ts }}
        )
    group by 1

),

subscription_starts as (

    select
        subscriptions.customer_id,
        max(subscriptions.started_at) as last_subscription_start_at
    from subscriptions
    where subscriptions.started_at < {{ as_of_ts }}
    group by 1

),

last_churn as (

    select distinct on (churn_events.customer_id)
        churn_events.customer_id,
        churn_events.churned_at,
        churn_events.churn_type,
        churn_events.reactivated_at
    from churn_events
    where churn_events.churned_at < {{ as_of_ts }}
    order by 1 asc, 2 desc

),

final as (

    select
        customers.customer_id,
        cast(coalesce(revenue.orders_count, 0) as integer) as orders_count,
        cast(coalesce(revenue.total_revenue, 0) as numeric(14, 2)) as total_revenue,
        revenue.last_order_at,
        usage.last_usage_at,
        greatest(
            customers.signup_at, revenue.last_order_at, usage.last_usage_at,
            subscription_starts.last_subscription_start_at
        ) as last_activity_at,
        last_churn.churned_at as last_churned_at,
        last_churn.churn_type as last_churn_type,
        case when last_churn.reactivated_at < {{ as_of_ts }} then last_churn.reactivated_at end as reactivated_at
    from customers
    left join revenue on customers.customer_id = revenue.customer_id
    left join usage on customers.customer_id = usage.customer_id
    left join subscription_starts on customers.customer_id = subscription_starts.customer_id
    left join last_churn on customers.customer_id = last_churn.customer_id
    where customers.signup_at < {{ as_of_ts }}

)

select * from final
