{#-
    The churn features of every (customer_id, as_of_date) row of `spine`, from data strictly
    before as_of_date (00:00 UTC). fct_customer_signals (the current as-of date) and
    fct_customer_features_asof (a weekly grid) both select from this one query, so the two
    cannot drift. Every window is a half-open range [as_of_date - n days, as_of_date).

    spine: a relation or CTE name with columns customer_id, as_of_date (date).
    with_text_columns: also compute top_dropped_category and recent_error_codes (signals only).
-#}
{% macro customer_features(spine, with_text_columns=false) %}

    with

    customers as (

        select * from {{ ref('stg_raw__customers') }}

    ),

    usage_daily as (

        select * from {{ ref('int_usage_daily') }}

    ),

    orders_daily as (

        select * from {{ ref('int_orders_daily') }}

    ),

    order_categories_daily as (

        select * from {{ ref('int_order_categories_daily') }}

    ),

    orders as (

        select * from {{ ref('stg_raw__orders') }}

    ),

    subscriptions as (

        select * from {{ ref('int_subscription_periods') }}

    ),

    charges as (

        select * from {{ ref('int_payment_charges') }}

    ),

    payments as (

        select * from {{ ref('stg_raw__payments') }}

    ),

    tickets as (

        select * from {{ ref('stg_raw__support_tickets') }}

    ),

    churn_events as (

        select * from {{ ref('int_customer_churn_events') }}

    ),

    points as (

        select
            customer_id,
            as_of_date,
            {{ utc_midnight('as_of_date') }} as as_of_ts
        from {{ spine }}

    ),

    usage_windows as (

        select
            points.customer_id,
            points.as_of_date,
            sum(usage_daily.events_count)
                filter (where usage_daily.event_date >= points.as_of_date - 30) as usage_events_30d,
            sum(usage_daily.events_count)
                filter (where usage_daily.event_date < points.as_of_date - 30) as usage_events_prior_90d,
            sum(usage_daily.error_events_count)
                filter (where usage_daily.event_date >= points.as_of_date - 30) as error_events_30d
        from points
        inner join usage_daily
            on
                points.customer_id = usage_daily.customer_id
                and usage_daily.event_date >= points.as_of_date - 120
                and usage_daily.event_date < points.as_of_date
        group by 1, 2

    ),

    order_windows as (

        select
            points.customer_id,
            points.as_of_date,
            max(orders_daily.order_date) as last_order_date,
            sum(orders_daily.orders_count)
                filter (where orders_daily.order_date >= points.as_of_date - 365) as orders_365d,
            sum(orders_daily.amount)
                filter (where orders_daily.order_date >= points.as_of_date - 365) as amount_365d,
            sum(orders_daily.discount_amount)
                filter (where orders_daily.order_date >= points.as_of_date - 365) as discount_365d,
            sum(orders_daily.orders_count)
                filter (where orders_daily.order_date >= points.as_of_date - 90) as orders_90d,
            sum(orders_daily.orders_count)
                filter (
                    where orders_daily.order_date >= points.as_of_date - 360
                    and orders_daily.order_date < points.as_of_date - 90
                ) as orders_prior_270d
        from points
        inner join orders_daily
            on
                points.customer_id = orders_daily.customer_id
                and orders_daily.order_date < points.as_of_date
        group by 1, 2

    ),

    category_windows as (

        select
            points.customer_id,
            points.as_of_date,
            order_categories_daily.category,
            sum(order_categories_daily.orders_count)
                filter (where order_categories_daily.order_date < points.as_of_date - 90) as prior_orders,
            sum(order_categories_daily.orders_count)
                filter (where order_categories_daily.order_date >= points.as_of_date - 90) as recent_orders,
            sum(order_categories_daily.amount)
                filter (where order_categories_daily.order_date < points.as_of_date - 90) as prior_amount
        from points
        inner join order_categories_daily
            on
                points.customer_id = order_categories_daily.customer_id
                and order_categories_daily.order_date >= points.as_of_date - 360
                and order_categories_daily.order_date < points.as_of_date
        group by 1, 2, 3

    ),

    -- a category is dropped when bought at least twice in the prior 270 days and not in the last 90
    dropped_categories as (

        select
            customer_id,
            as_of_date,
            count(*) as categories_dropped_count,
            (array_agg(category order by prior_amount desc, category))[1] as top_dropped_category
        from category_windows
        where prior_orders >= 2 and coalesce(recent_orders, 0) = 0
        group by 1, 2

    ),

    live_subscriptions as (

        select
            points.customer_id,
            points.as_of_date,
            subscriptions.price_monthly,
            subscriptions.renewal_date,
            subscriptions.start_date,
            case when subscriptions.billing_period = 'year' then 12 else 1 end as period_months,
            (
                extract(year from age(points.as_of_date - 1, subscriptions.start_date)) * 12
                + extract(month from age(points.as_of_date - 1, subscriptions.start_date))
            ) as elapsed_months
        from points
        inner join subscriptions
            on
                points.customer_id = subscriptions.customer_id
                and subscriptions.started_at < points.as_of_ts
                and (subscriptions.cancelled_at is null or subscriptions.cancelled_at >= points.as_of_ts)

    ),

    subscription_state as (

        select
            customer_id,
            as_of_date,
            max(price_monthly) as plan_price_monthly,
            min(
                case
                    -- billing's renewal date when it is the next one after the as-of date
                    when
                        renewal_date >= as_of_date
                        and renewal_date < as_of_date + period_months * interval '1 month'
                        then renewal_date
                    -- otherwise the next anniversary of the start on or after the as-of date
                    else cast(
                        start_date
                        + (floor(elapsed_months / period_months) + 1) * period_months * interval '1 month'
                        as date
                    )
                end
            ) as next_renewal_date
        from live_subscriptions
        group by 1, 2

    ),

    charge_windows as (

        select
            points.customer_id,
            points.as_of_date,
            count(*) filter (
                where charges.is_late and charges.paid_at >= points.as_of_ts - interval '90 days'
                and charges.paid_at < points.as_of_ts
            ) as late_payments_90d,
            bool_or(
                charges.first_failed_at >= points.as_of_ts - interval '90 days'
                and charges.first_failed_at < points.as_of_ts
                and (charges.recovered_at is null or charges.recovered_at >= points.as_of_ts)
            ) as payment_failed_unrecovered
        from points
        inner join charges
            on
                points.customer_id = charges.customer_id
                and charges.due_at < points.as_of_ts
                and charges.due_at >= points.as_of_ts - interval '180 days'
        group by 1, 2

    ),

    failed_attempts as (

        select
            points.customer_id,
            points.as_of_date,
            count(*) as failed_payments_90d
        from points
        inner join payments
            on
                points.customer_id = payments.customer_id
                and payments.status = 'failed'
                and payments.attempted_at >= points.as_of_ts - interval '90 days'
                and payments.attempted_at < points.as_of_ts
        group by 1, 2

    ),

    ticket_windows as (

        select
            points.customer_id,
            points.as_of_date,
            count(*) filter (
                where tickets.resolved_at is null or tickets.resolved_at >= points.as_of_ts
            ) as open_tickets,
            count(*) filter (
                where (tickets.resolved_at is null or tickets.resolved_at >= points.as_of_ts)
                and tickets.opened_at < points.as_of_ts - interval '14 days'
            ) as unresolved_tickets,
            count(*) filter (
                where tickets.satisfaction <= 2
                and tickets.resolved_at >= points.as_of_ts - interval '90 days'
                and tickets.resolved_at < points.as_of_ts
            ) as low_satisfaction_90d
        from points
        inner join tickets
            on
                points.customer_id = tickets.customer_id
                and tickets.opened_at < points.as_of_ts
        group by 1, 2

    ),

    -- pre-sales questions of the last 30 days not followed by an order before the as-of date
    inquiries as (

        select
            points.customer_id,
            points.as_of_date,
            count(*) as inquiries_without_order_30d
        from points
        inner join tickets
            on
                points.customer_id = tickets.customer_id
                and tickets.category = 'inquiry'
                and tickets.opened_at >= points.as_of_ts - interval '30 days'
                and tickets.opened_at < points.as_of_ts
        where not exists (
            select 1
            from orders
            where
                orders.customer_id = tickets.customer_id
                and orders.ordered_at > tickets.opened_at
                and orders.ordered_at < points.as_of_ts
        )
        group by 1, 2

    ),

    churn_state as (

        select
            points.customer_id,
            points.as_of_date,
            coalesce(
                last_churn.churned_at is not null
                and (last_churn.reactivated_at is null or last_churn.reactivated_at >= points.as_of_ts),
                false
            ) as is_churned
        from points
        left join lateral (
            select
                churn_events.churned_at,
                churn_events.reactivated_at
            from churn_events
            where
                churn_events.customer_id = points.customer_id
                and churn_events.churned_at < points.as_of_ts
            order by churn_events.churned_at desc
            limit 1
        ) as last_churn on true

    ),

    {% if with_text_columns %}

    error_codes as (

        select
            points.customer_id,
            points.as_of_date,
            string_agg(distinct codes.error_code, ',' order by codes.error_code) as recent_error_codes
        from points
        -- not the usage_daily CTE: a second reference would make Postgres materialise it
        inner join {{ ref('int_usage_daily') }} as usage_codes
            on
                points.customer_id = usage_codes.customer_id
                and usage_codes.event_date >= points.as_of_date - 30
                and usage_codes.event_date < points.as_of_date
                and usage_codes.error_events_count > 0
        cross join lateral unnest(usage_codes.error_codes) as codes (error_code)
        group by 1, 2

    ),

    {% endif %}

    features as (

        select
            points.customer_id,
            points.as_of_date,
            cast(points.as_of_date - {{ utc_date('customers.signup_at') }} as integer) as tenure_days,
            subscription_state.customer_id is not null as is_subscriber,
            cast(subscription_state.plan_price_monthly as numeric(12, 2)) as plan_price_monthly,
            cast(subscription_state.next_renewal_date - points.as_of_date as integer) as days_to_renewal,
            cast(points.as_of_date - order_windows.last_order_date as integer) as recency_days,
            cast(coalesce(order_windows.orders_365d, 0) as integer) as frequency_orders_365d,
            cast(coalesce(order_windows.amount_365d, 0) as numeric(14, 2)) as monetary_365d,
            cast(
                order_windows.discount_365d
                / nullif(order_windows.amount_365d + order_windows.discount_365d, 0) as numeric(6, 4)
            ) as discount_share_365d,
            cast(coalesce(usage_windows.usage_events_30d, 0) as integer) as usage_events_30d,
            cast(coalesce(usage_windows.usage_events_prior_90d, 0) / 3.0 as numeric(12, 2))
                as usage_events_prior_90d_per30,
            cast(
                100.0 * (coalesce(usage_windows.usage_events_30d, 0) - usage_windows.usage_events_prior_90d / 3.0)
                / nullif(usage_windows.usage_events_prior_90d / 3.0, 0) as numeric(12, 2)
            ) as usage_trend_pct,
            cast(coalesce(order_windows.orders_90d, 0) as integer) as orders_90d,
            cast(coalesce(order_windows.orders_prior_270d, 0) / 3.0 as numeric(12, 2)) as orders_prior_270d_per90,
            cast(
                100.0 * (order_windows.orders_prior_270d / 3.0 - coalesce(order_windows.orders_90d, 0))
                / nullif(order_windows.orders_prior_270d / 3.0, 0) as numeric(12, 2)
            ) as purchase_freq_drop_pct,
            cast(coalesce(dropped_categories.categories_dropped_count, 0) as integer) as categories_dropped_count,
            cast(coalesce(inquiries.inquiries_without_order_30d, 0) as integer) as inquiries_without_order_30d,
            cast(coalesce(charge_windows.late_payments_90d, 0) as integer) as late_payments_90d,
            cast(coalesce(failed_attempts.failed_payments_90d, 0) as integer) as failed_payments_90d,
            coalesce(charge_windows.payment_failed_unrecovered, false) as payment_failed_unrecovered,
            cast(coalesce(ticket_windows.open_tickets, 0) as integer) as open_tickets,
            cast(coalesce(ticket_windows.unresolved_tickets, 0) as integer) as unresolved_tickets,
            cast(coalesce(ticket_windows.low_satisfaction_90d, 0) as integer) as low_satisfaction_90d,
            cast(coalesce(usage_windows.error_events_30d, 0) as integer) as error_events_30d,
            churn_state.is_churned
            {%- if with_text_columns %},
                dropped_categories.top_dropped_category,
                error_codes.recent_error_codes
            {%- endif %}
        from points
        inner join customers on points.customer_id = customers.customer_id
        left join usage_windows
            on points.customer_id = usage_windows.customer_id and points.as_of_date = usage_windows.as_of_date
        left join order_windows
            on points.customer_id = order_windows.customer_id and points.as_of_date = order_windows.as_of_date
        left join dropped_categories
            on
                points.customer_id = dropped_categories.customer_id
                and points.as_of_date = dropped_categories.as_of_date
        left join subscription_state
            on
                points.customer_id = subscription_state.customer_id
                and points.as_of_date = subscription_state.as_of_date
        left join charge_windows
            on points.customer_id = charge_windows.customer_id and points.as_of_date = charge_windows.as_of_date
        left join failed_attempts
            on points.customer_id = failed_attempts.customer_id and points.as_of_date = failed_attempts.as_of_date
        left join ticket_windows
            on points.customer_id = ticket_windows.customer_id and points.as_of_date = ticket_windows.as_of_date
        left join inquiries
            on points.customer_id = inquiries.customer_id and points.as_of_date = inquiries.as_of_date
        left join churn_state
            on points.customer_id = churn_state.customer_id and points.as_of_date = churn_state.as_of_date
        {%- if with_text_columns %}
            left join error_codes
                on points.customer_id = error_codes.customer_id and points.as_of_date = error_codes.as_of_date
        {%- endif %}

    )

    select * from features

{% endmacro %}

{#-
    Pre-hook of the customer feature marts: more sort/hash memory for this model's transaction
    only (var customer_features_work_mem, default 256MB). With the server default of 4MB the
    per-window aggregates and the sorts of the final joins spill to disk.
-#}
{% macro customer_features_work_mem() -%}
    set local work_mem = '{{ var("customer_features_work_mem", "256MB") }}'
{%- endmacro %}
