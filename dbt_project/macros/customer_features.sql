{#-
    The churn features of every (customer_id, as_of_date) row of `spine`, from data strictly
    before as_of_date (00:00 UTC). fct_customer_signals (the current as-of date) and
    fct_customer_features_asof (a weekly grid) both select from this one query, so the two
    cannot drift. Every window is a half-open range [as_of_date - n days, as_of_date).

    spine: a relation or CTE name with columns customer_id, as_of_date (date).
    grid: a relation or CTE name with the distinct as_of_date values of spine (a few rows); by
        default computed from spine.
    with_text_columns: also compute top_dropped_category and recent_error_codes (signals only:
        it needs single_date).
    single_date: a SQL date expression (a literal) when spine holds that one as-of date only (the
        signals; grid is then not used): the usage, order and dropped-category windows are plain
        filtered aggregates per customer, no window stream or interval join (same results: the
        frames below and the filters name the same days), and the date is a constant in every
        read, so each scan filters its own rows.
    restrict_to_spine: read every input (customers, daily usage / orders / categories, orders,
        subscriptions, charges, payments, tickets, churn episodes) of the spine's customers only (a
        semi-join): for the incremental runs, whose spine is a few customers' stale rows.
    customer_filter: a SQL condition on customer_id that every input is filtered with (a hash
        partition of the customers, int_customer_features_weekly_part_*): a spine of one part's
        customers then reads and sorts that part's rows only.

    Built for scale (cost ~ customers x as-of dates + events, never their product; no index probe
    per point):
    - day-windowed usage sums: the points and the daily usage rows of a customer form one stream
      ordered by day; window functions with exact day frames (`range between 30 preceding and 1
      preceding` = [as_of_date - 30, as_of_date)) read the sums at the points. Two frames, so two
      passes over the stream.
    - order sums: a day with orders is joined to the grid dates it counts for (the next 365 days,
      and up to its next order day for the last order date) and summed per (customer, as_of_date)
      with filtered aggregates. Orders are sparse, so this is cheaper than four more window passes
      over the points (100k customers x 26 Mondays: the features went from 94 s to 80 s, the
      activity part from 54 s to 34 s; same rows).
    - everything that holds over an interval of as-of dates (an open ticket, a failed payment of
      the last 90 days, a live subscription, a churned state, a dropped category) becomes that
      interval [first_day, last_day] of as-of dates once per item, joined to the few grid dates
      it covers, and is counted per (customer, as_of_date).
    Each interval is derived from the same half-open timestamp conditions: x < midnight(d) is
    utc_date(x) < d, x >= midnight(d - n) is utc_date(x) >= d - n.
    - the import CTEs are `not materialized`: PostgreSQL would otherwise copy a CTE read twice
      (44M daily usage rows, 10M charges) into a work table before filtering it, and plan every
      read of the copy with a 200-row guess (nested loops over 600k rows). Inlined, each read
      keeps its own filter and the table's statistics: the signals at 1M customers take 63 s
      instead of 138 s (EXPLAIN ANALYZE, 2026-11-23).
-#}
{% macro customer_features(
    spine, grid=none, with_text_columns=false, single_date=none, restrict_to_spine=false, customer_filter=none
) %}

    {%- if with_text_columns and single_date is none -%}
        {{ exceptions.raise_compiler_error(
            "customer_features: with_text_columns needs single_date (the text columns are computed"
            ~ " for one as-of date only, fct_customer_signals)") }}
    {%- endif -%}
    {%- set day_zero = "date '2000-01-01'" -%}
    {%- set input_filters = [] -%}
    {%- if restrict_to_spine -%}
        {%- do input_filters.append(
            "customer_id in (select spine_customers.customer_id from " ~ spine ~ " as spine_customers)"
        ) -%}
    {%- endif -%}
    {%- if customer_filter is not none -%}
        {%- do input_filters.append(customer_filter) -%}
    {%- endif -%}
    {%- set spine_filter -%}
        {%- if input_filters %}
        where {{ input_filters | join(' and ') }}
        {%- endif -%}
    {%- endset -%}
    {%- set far_future = "date '9999-12-31'" -%}

    with

    customers as not materialized (

        select * from {{ ref('stg_raw__customers') }}
        {{- spine_filter }}

    ),

    usage_daily as not materialized (

        select * from {{ ref('int_usage_daily') }}
        {{- spine_filter }}

    ),

    orders_daily as not materialized (

        select * from {{ ref('int_orders_daily') }}
        {{- spine_filter }}

    ),

    order_categories_daily as not materialized (

        select * from {{ ref('int_order_categories_daily') }}
        {{- spine_filter }}

    ),

    orders as not materialized (

        select * from {{ ref('stg_raw__orders') }}
        {{- spine_filter }}

    ),

    subscriptions as not materialized (

        select * from {{ ref('int_subscription_periods') }}
        {{- spine_filter }}

    ),

    charges as not materialized (

        select * from {{ ref('int_payment_charges') }}
        {{- spine_filter }}

    ),

    payments as not materialized (

        select * from {{ ref('stg_raw__payments') }}
        {{- spine_filter }}

    ),

    tickets as not materialized (

        select * from {{ ref('stg_raw__support_tickets') }}
        {{- spine_filter }}

    ),

    churn_events as not materialized (

        select * from {{ ref('int_customer_churn_events') }}
        {{- spine_filter }}

    ),

    points as (

        select
            customer_id,
            as_of_date
        from {{ spine }}

    ),

    {% if single_date is not none %}

    -- one as-of date: constants the planner folds into every read (each scan filters its own rows
    -- by date instead of joining a one-row work table after reading all of them)
    grid_dates as not materialized (

        select {{ single_date }} as as_of_date

    ),

    bounds as not materialized (

        select
            {{ single_date }} as first_date,
            {{ single_date }} as last_date

    ),

    -- one as-of date d: the same day ranges as the window frames below, as filtered sums; the
    -- error codes of [d - 30, d) come from the same read of the daily usage (not a second scan
    -- of its 44M rows), one jsonb array per day with errors
    usage_sums as (

        select
            customer_id,
            sum(events_count) filter (where event_date >= {{ single_date }} - 30) as usage_events_30d,
            sum(events_count) filter (where event_date < {{ single_date }} - 30) as usage_events_prior_90d,
            sum(error_events_count) filter (where event_date >= {{ single_date }} - 30) as error_events_30d
            {%- if with_text_columns %},
                jsonb_agg(error_codes) filter (
                    where event_date >= {{ single_date }} - 30 and error_events_count > 0
                ) as error_code_days
            {%- endif %}
        from usage_daily
        where event_date >= {{ single_date }} - 120 and event_date < {{ single_date }}
        group by 1

    ),

    order_sums as (

        select
            customer_id,
            max(order_date) as last_order_date,
            sum(orders_count) filter (where order_date >= {{ single_date }} - 365) as orders_365d,
            -- float8 sums, exact to the cent after the cast back (numeric sums kept a numeric
            -- state per customer: 600 MB of hash table at 1M customers, spilled to disk)
            cast(sum(cast(amount as float8)) filter (where order_date >= {{ single_date }} - 365)
                as numeric(14, 2)) as amount_365d,
            cast(sum(cast(discount_amount as float8)) filter (where order_date >= {{ single_date }} - 365)
                as numeric(14, 2)) as discount_365d,
            sum(orders_count) filter (where order_date >= {{ single_date }} - 90) as orders_90d,
            sum(orders_count) filter (
                where order_date >= {{ single_date }} - 360 and order_date < {{ single_date }} - 90
            ) as orders_prior_270d
        from orders_daily
        where order_date < {{ single_date }}
        group by 1

    ),

    activity as (

        select
            points.customer_id,
            points.as_of_date,
            order_sums.last_order_date,
            usage_sums.usage_events_30d,
            usage_sums.usage_events_prior_90d,
            usage_sums.error_events_30d,
            order_sums.orders_365d,
            order_sums.amount_365d,
            order_sums.discount_365d,
            order_sums.orders_90d,
            order_sums.orders_prior_270d
            {%- if with_text_columns %},
                case when usage_sums.error_code_days is not null then (
                    select string_agg(distinct codes.error_code, ',' order by codes.error_code)
                    from jsonb_array_elements(usage_sums.error_code_days) as days (day_codes)
                    cross join lateral jsonb_array_elements_text(days.day_codes) as codes (error_code)
                ) end as recent_error_codes
            {%- endif %}
        from points
        left join usage_sums on points.customer_id = usage_sums.customer_id
        left join order_sums on points.customer_id = order_sums.customer_id

    ),

    {% else %}

    grid_dates as (

        {% if grid is none -%}
            select distinct as_of_date from {{ spine }}
        {%- else -%}
            select as_of_date from {{ grid }}
        {%- endif %}

    ),

    bounds as (

        select
            min(as_of_date) as first_date,
            max(as_of_date) as last_date
        from grid_dates

    ),

    -- points and daily usage rows of each customer, one stream ordered by day number
    usage_stream as (

        select
            customer_id,
            as_of_date - {{ day_zero }} as day_number,
            true as is_point,
            cast(null as integer) as events_count,
            cast(null as integer) as error_events_count
        from points

        union all

        select
            usage_daily.customer_id,
            usage_daily.event_date - {{ day_zero }} as day_number,
            false as is_point,
            usage_daily.events_count,
            usage_daily.error_events_count
        from usage_daily
        cross join bounds
        where usage_daily.event_date >= bounds.first_date - 120 and usage_daily.event_date < bounds.last_date

    ),

    usage_windows as (

        select
            customer_id,
            {{ day_zero }} + day_number as as_of_date,
            sum(events_count) over (by_day range between 30 preceding and 1 preceding) as usage_events_30d,
            sum(events_count) over (by_day range between 120 preceding and 31 preceding) as usage_events_prior_90d,
            sum(error_events_count) over (by_day range between 30 preceding and 1 preceding) as error_events_30d,
            is_point
        from usage_stream
        window by_day as (partition by customer_id order by day_number)

    ),

    -- a day with orders L, followed by the next one N, counts for the as-of dates d in
    -- (L, max(L + 365, N)]: the 365-day windows, and L is the last order before every d in (L, N]
    order_days as (

        select
            orders_daily.customer_id,
            orders_daily.order_date,
            orders_daily.orders_count,
            orders_daily.amount,
            orders_daily.discount_amount,
            lead(orders_daily.order_date) over (
                partition by orders_daily.customer_id order by orders_daily.order_date
            ) as next_date
        from orders_daily
        cross join bounds
        where orders_daily.order_date < bounds.last_date

    ),

    order_sums as (

        select
            order_days.customer_id,
            grid_dates.as_of_date,
            max(order_days.order_date) as last_order_date,
            sum(order_days.orders_count) filter (
                where order_days.order_date >= grid_dates.as_of_date - 365
            ) as orders_365d,
            -- float8 sums (a few bytes of state per group, not numeric's; 1.2 GB -> 0.4 GB of hash
            -- table at 100k customers), exact to the cent after the cast back
            cast(sum(cast(order_days.amount as float8)) filter (
                where order_days.order_date >= grid_dates.as_of_date - 365
            ) as numeric(14, 2)) as amount_365d,
            cast(sum(cast(order_days.discount_amount as float8)) filter (
                where order_days.order_date >= grid_dates.as_of_date - 365
            ) as numeric(14, 2)) as discount_365d,
            sum(order_days.orders_count) filter (
                where order_days.order_date >= grid_dates.as_of_date - 90
            ) as orders_90d,
            sum(order_days.orders_count) filter (
                where
                    order_days.order_date >= grid_dates.as_of_date - 360
                    and order_days.order_date < grid_dates.as_of_date - 90
            ) as orders_prior_270d
        from order_days
        inner join grid_dates
            on
                grid_dates.as_of_date > order_days.order_date
                and grid_dates.as_of_date
                <= greatest(order_days.order_date + 365, coalesce(order_days.next_date, {{ far_future }}))
        group by 1, 2

    ),

    activity as (

        select
            usage_windows.customer_id,
            usage_windows.as_of_date,
            order_sums.last_order_date,
            usage_windows.usage_events_30d,
            usage_windows.usage_events_prior_90d,
            usage_windows.error_events_30d,
            order_sums.orders_365d,
            order_sums.amount_365d,
            order_sums.discount_365d,
            order_sums.orders_90d,
            order_sums.orders_prior_270d
        from usage_windows
        left join order_sums
            on usage_windows.customer_id = order_sums.customer_id and usage_windows.as_of_date = order_sums.as_of_date
        where usage_windows.is_point

    ),

    {% endif %}

    -- categories: a category is dropped at d when bought at least twice in [d - 360, d - 90) and
    -- not in [d - 90, d).
    {% if single_date is not none %}

    -- One as-of date d: that definition as filtered sums per (customer, category), one hash
    -- aggregate over the days of [d - 360, d) (no window sort, no second read for the amounts).
    category_windows as (

        select
            customer_id,
            category,
            sum(orders_count) filter (where order_date < {{ single_date }} - 90) as prior_orders,
            cast(sum(cast(amount as float8)) filter (where order_date < {{ single_date }} - 90)
                as numeric(14, 2)) as prior_amount,
            sum(orders_count) filter (where order_date >= {{ single_date }} - 90) as recent_orders
        from order_categories_daily
        where order_date >= {{ single_date }} - 360 and order_date < {{ single_date }}
        group by 1, 2

    ),

    dropped_categories as (

        select
            customer_id,
            {{ single_date }} as as_of_date,
            count(*) as categories_dropped_count
            {%- if with_text_columns %},
                (array_agg(category order by prior_amount desc, category))[1] as top_dropped_category
            {%- endif %}
        from category_windows
        where prior_orders >= 2 and coalesce(recent_orders, 0) = 0
        group by 1

    ),

    {% else %}

    -- For a purchase day L followed by the next purchase day N, L is the last
    -- purchase before d for d in (L, N]; dropped there from L + 91 on, until L + 360 when L had
    -- two orders, otherwise until the previous purchase day + 360.
    category_days as (

        select
            order_categories_daily.customer_id,
            order_categories_daily.category,
            order_categories_daily.order_date,
            order_categories_daily.orders_count,
            lag(order_categories_daily.order_date) over by_category as previous_date,
            lead(order_categories_daily.order_date) over by_category as next_date
        from order_categories_daily
        cross join bounds
        where
            order_categories_daily.order_date >= bounds.first_date - 360
            and order_categories_daily.order_date < bounds.last_date
        window by_category as (
            partition by order_categories_daily.customer_id, order_categories_daily.category
            order by order_categories_daily.order_date
        )

    ),

    dropped_intervals as (

        select
            customer_id,
            category,
            order_date + 91 as first_day,
            least(
                coalesce(next_date, {{ far_future }}),
                case when orders_count >= 2 then order_date + 360 else previous_date + 360 end
            ) as last_day
        from category_days
        where orders_count >= 2 or previous_date is not null

    ),

    dropped_points as (

        select
            dropped_intervals.customer_id,
            grid_dates.as_of_date,
            dropped_intervals.category
        from dropped_intervals
        inner join grid_dates
            on grid_dates.as_of_date between dropped_intervals.first_day and dropped_intervals.last_day

    ),

    dropped_categories as (

        select
            customer_id,
            as_of_date,
            count(*) as categories_dropped_count
        from dropped_points
        group by 1, 2

    ),

    {% endif %}

    live_subscriptions as (

        select
            subscriptions.customer_id,
            grid_dates.as_of_date,
            subscriptions.price_monthly,
            subscriptions.renewal_date,
            subscriptions.start_date,
            case when subscriptions.billing_period = 'year' then 12 else 1 end as period_months,
            (
                extract(year from age(grid_dates.as_of_date - 1, subscriptions.start_date)) * 12
                + extract(month from age(grid_dates.as_of_date - 1, subscriptions.start_date))
            ) as elapsed_months
        from subscriptions
        inner join grid_dates
            on
                -- started_at < midnight(d), cancelled_at null or >= midnight(d)
                {{ utc_date('subscriptions.started_at') }} < grid_dates.as_of_date
                and coalesce({{ utc_date('subscriptions.cancelled_at') }}, {{ far_future }}) >= grid_dates.as_of_date

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

    -- the first order after each pre-sales question (it ends "inquiry without order")
    inquiry_tickets as (

        select
            tickets.ticket_id,
            tickets.customer_id,
            tickets.opened_at,
            min(orders.ordered_at) as next_order_at
        from tickets
        cross join bounds
        left join orders
            on
                tickets.customer_id = orders.customer_id
                and orders.ordered_at > tickets.opened_at
        where
            tickets.category = 'inquiry'
            and tickets.opened_at >= {{ utc_midnight('bounds.first_date - 30') }}
            and tickets.opened_at < {{ utc_midnight('bounds.last_date') }}
        group by 1, 2, 3

    ),

    -- the latest churn episode before d decides whether the customer is churned at d
    churn_episodes as (

        select
            customer_id,
            churned_at,
            reactivated_at,
            lead(churned_at) over (partition by customer_id order by churned_at) as next_churned_at
        from churn_events

    ),

    -- one row per item that counts for every as-of date d in [first_day, last_day]
    interval_items as (

        -- charges paid late in [d - 90, d), due in [d - 180, d)
        select
            customer_id,
            greatest({{ utc_date('due_at') }}, {{ utc_date('paid_at') }}) + 1 as first_day,
            least({{ utc_date('paid_at') }} + 90, {{ utc_date('due_at') }} + 180) as last_day,
            1 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from charges
        where is_late and paid_at is not null

        union all

        -- charges due in [d - 180, d) that first failed in [d - 90, d) and were not paid by d
        select
            customer_id,
            greatest({{ utc_date('due_at') }}, {{ utc_date('first_failed_at') }}) + 1 as first_day,
            least(
                {{ utc_date('first_failed_at') }} + 90,
                {{ utc_date('due_at') }} + 180,
                coalesce({{ utc_date('recovered_at') }}, {{ far_future }})
            ) as last_day,
            0 as late_payment,
            0 as failed_payment,
            1 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from charges
        where first_failed_at is not null

        union all

        -- failed payment attempts in [d - 90, d)
        select
            customer_id,
            {{ utc_date('attempted_at') }} + 1 as first_day,
            {{ utc_date('attempted_at') }} + 90 as last_day,
            0 as late_payment,
            1 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from payments
        where status = 'failed'

        union all

        -- tickets opened before d and not resolved before d (unresolved: opened before d - 14)
        select
            customer_id,
            {{ utc_date('opened_at') }} + 1 as first_day,
            coalesce({{ utc_date('resolved_at') }}, {{ far_future }}) as last_day,
            0 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            1 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from tickets

        union all

        select
            customer_id,
            {{ utc_date('opened_at') }} + 15 as first_day,
            coalesce({{ utc_date('resolved_at') }}, {{ far_future }}) as last_day,
            0 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            1 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from tickets

        union all

        -- tickets opened before d, rated 1-2 and resolved in [d - 90, d)
        select
            customer_id,
            greatest({{ utc_date('opened_at') }}, {{ utc_date('resolved_at') }}) + 1 as first_day,
            {{ utc_date('resolved_at') }} + 90 as last_day,
            0 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            1 as low_satisfaction,
            0 as inquiry,
            0 as churned
        from tickets
        where satisfaction <= 2 and resolved_at is not null

        union all

        -- pre-sales questions opened in [d - 30, d) with no order after them before d
        select
            customer_id,
            {{ utc_date('opened_at') }} + 1 as first_day,
            least(
                {{ utc_date('opened_at') }} + 30,
                coalesce({{ utc_date('next_order_at') }}, {{ far_future }})
            ) as last_day,
            0 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            1 as inquiry,
            0 as churned
        from inquiry_tickets

        union all

        -- churned before d (latest episode before d) and not reactivated before d
        select
            customer_id,
            {{ utc_date('churned_at') }} + 1 as first_day,
            least(
                coalesce({{ utc_date('reactivated_at') }}, {{ far_future }}),
                coalesce({{ utc_date('next_churned_at') }}, {{ far_future }})
            ) as last_day,
            0 as late_payment,
            0 as failed_payment,
            0 as unrecovered_charge,
            0 as open_ticket,
            0 as unresolved_ticket,
            0 as low_satisfaction,
            0 as inquiry,
            1 as churned
        from churn_episodes

    ),

    item_counts as (

        select
            interval_items.customer_id,
            grid_dates.as_of_date,
            sum(interval_items.late_payment) as late_payments_90d,
            sum(interval_items.failed_payment) as failed_payments_90d,
            sum(interval_items.unrecovered_charge) > 0 as payment_failed_unrecovered,
            sum(interval_items.open_ticket) as open_tickets,
            sum(interval_items.unresolved_ticket) as unresolved_tickets,
            sum(interval_items.low_satisfaction) as low_satisfaction_90d,
            sum(interval_items.inquiry) as inquiries_without_order_30d,
            sum(interval_items.churned) > 0 as is_churned
        from interval_items
        cross join bounds
        inner join grid_dates
            on grid_dates.as_of_date between interval_items.first_day and interval_items.last_day
        where interval_items.last_day >= bounds.first_date and interval_items.first_day <= bounds.last_date
        group by 1, 2

    ),

    features as (

        select
            activity.customer_id,
            activity.as_of_date,
            cast(activity.as_of_date - {{ utc_date('customers.signup_at') }} as integer) as tenure_days,
            subscription_state.customer_id is not null as is_subscriber,
            cast(subscription_state.plan_price_monthly as numeric(12, 2)) as plan_price_monthly,
            cast(subscription_state.next_renewal_date - activity.as_of_date as integer) as days_to_renewal,
            cast(activity.as_of_date - activity.last_order_date as integer) as recency_days,
            cast(coalesce(activity.orders_365d, 0) as integer) as frequency_orders_365d,
            cast(coalesce(activity.amount_365d, 0) as numeric(14, 2)) as monetary_365d,
            cast(
                activity.discount_365d
                / nullif(activity.amount_365d + activity.discount_365d, 0) as numeric(6, 4)
            ) as discount_share_365d,
            cast(coalesce(activity.usage_events_30d, 0) as integer) as usage_events_30d,
            cast(coalesce(activity.usage_events_prior_90d, 0) / 3.0 as numeric(12, 2))
                as usage_events_prior_90d_per30,
            cast(
                100.0 * (coalesce(activity.usage_events_30d, 0) - activity.usage_events_prior_90d / 3.0)
                / nullif(activity.usage_events_prior_90d / 3.0, 0) as numeric(12, 2)
            ) as usage_trend_pct,
            cast(coalesce(activity.orders_90d, 0) as integer) as orders_90d,
            cast(coalesce(activity.orders_prior_270d, 0) / 3.0 as numeric(12, 2)) as orders_prior_270d_per90,
            cast(
                100.0 * (activity.orders_prior_270d / 3.0 - coalesce(activity.orders_90d, 0))
                / nullif(activity.orders_prior_270d / 3.0, 0) as numeric(12, 2)
            ) as purchase_freq_drop_pct,
            cast(coalesce(dropped_categories.categories_dropped_count, 0) as integer) as categories_dropped_count,
            cast(coalesce(item_counts.inquiries_without_order_30d, 0) as integer) as inquiries_without_order_30d,
            cast(coalesce(item_counts.late_payments_90d, 0) as integer) as late_payments_90d,
            cast(coalesce(item_counts.failed_payments_90d, 0) as integer) as failed_payments_90d,
            coalesce(item_counts.payment_failed_unrecovered, false) as payment_failed_unrecovered,
            cast(coalesce(item_counts.open_tickets, 0) as integer) as open_tickets,
            cast(coalesce(item_counts.unresolved_tickets, 0) as integer) as unresolved_tickets,
            cast(coalesce(item_counts.low_satisfaction_90d, 0) as integer) as low_satisfaction_90d,
            cast(coalesce(activity.error_events_30d, 0) as integer) as error_events_30d,
            coalesce(item_counts.is_churned, false) as is_churned
            {%- if with_text_columns %},
                dropped_categories.top_dropped_category,
                activity.recent_error_codes
            {%- endif %}
        from activity
        inner join customers on activity.customer_id = customers.customer_id
        left join dropped_categories
            on
                activity.customer_id = dropped_categories.customer_id
                and activity.as_of_date = dropped_categories.as_of_date
        left join subscription_state
            on
                activity.customer_id = subscription_state.customer_id
                and activity.as_of_date = subscription_state.as_of_date
        left join item_counts
            on activity.customer_id = item_counts.customer_id and activity.as_of_date = item_counts.as_of_date

    )

    select * from features

{% endmacro %}

{#-
    Pre-hook of the customer feature marts: more sort/hash memory for this model's transaction
    only (var customer_features_work_mem, default 1GB): the window stream of points and daily
    rows is sorted once; with the server default it would spill to disk.
-#}
{% macro customer_features_work_mem() -%}
    set local work_mem = '{{ var("customer_features_work_mem", "1GB") }}'
{%- endmacro %}
