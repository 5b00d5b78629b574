{#-
    Signup-month cohorts: for every cohort and every month since signup up to the as-of month,
    how many of the cohort's customers were still customers ("alive") at the end of that month.

    Alive at an instant = inside a live subscription (started, not yet cancelled) or within
    `purchase_lapse_days` (180) days after an order: the churn definition's complement. The
    checkpoint of a finished month is the first instant of the next month; of the current
    (as-of) month, 00:00 UTC of the as-of date (data strictly before it is known). Customers with neither orders nor subscriptions
    count in cohort_size and are never retained.

    Computed without a customer x month grid: alive periods are merged into non-overlapping
    islands per customer, each island adds +1 at its first covered month and -1 after its last,
    and a running sum per cohort gives the retained count.
-#}

{%- set lapse_days = var('purchase_lapse_days', 180) -%}

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

cohort_customers as (

    select
        customer_id,
        cast(date_trunc('month', signup_at at time zone 'utc') as date) as cohort_month
    from customers
    where signup_at < {{ lifecycle_cutoff() }}

),

as_of_month as (

    select cast(date_trunc('month', {{ as_of_date() }}) as date) as as_of_month

),

alive_periods as (

    select
        customer_id,
        started_at as period_start,
        coalesce(cancelled_at, 'infinity') as period_end
    from subscriptions
    where started_at < {{ lifecycle_cutoff() }}
    union all
    select
        customer_id,
        ordered_at as period_start,
        ordered_at + interval '{{ lapse_days }} days' as period_end
    from orders
    where ordered_at < {{ lifecycle_cutoff() }}

),

periods_flagged as (

    select
        customer_id,
        period_start,
        period_end,
        case
            when
                period_start
                <= max(period_end) over (
                    partition by customer_id
                    order by period_start, period_end
                    rows between unbounded preceding and 1 preceding
                )
                then 0
            else 1
        end as starts_island
    from alive_periods

),

periods_numbered as (

    select
        customer_id,
        period_start,
        period_end,
        sum(starts_island) over (
            partition by customer_id
            order by period_start, period_end
            rows unbounded preceding
        ) as island_number
    from periods_flagged

),

islands as (

    select
        customer_id,
        island_number,
        min(period_start) as island_start,
        max(period_end) as island_end
    from periods_numbered
    group by 1, 2

),

island_months as (

    select
        cohort_customers.cohort_month,
        greatest(
            {{ lifecycle_months_between(
                'cohort_customers.cohort_month', "(islands.island_start at time zone 'utc')"
            ) }},
            0
        ) as first_month,
        case
            when islands.island_end >= {{ lifecycle_cutoff() }}
                then {{ lifecycle_months_between('cohort_customers.cohort_month', 'as_of_month.as_of_month') }}
            else {{ lifecycle_months_between(
                'cohort_customers.cohort_month', "(islands.island_end at time zone 'utc')"
            ) }} - 1
        end as last_month
    from islands
    inner join cohort_customers
        on islands.customer_id = cohort_customers.customer_id
    cross join as_of_month

),

retention_deltas as (

    select
        cohort_month,
        first_month as months_since_signup,
        1 as delta
    from island_months
    where first_month <= last_month
    union all
    select
        cohort_month,
        last_month + 1 as months_since_signup,
        -1 as delta
    from island_months
    where first_month <= last_month

),

cohorts as (

    select
        cohort_month,
        count(*) as cohort_size
    from cohort_customers
    group by 1

),

grid as (

    select
        cohorts.cohort_month,
        cohorts.cohort_size,
        months.months_since_signup
    from cohorts
    cross join as_of_month
    cross join lateral generate_series(
        0, {{ lifecycle_months_between('cohorts.cohort_month', 'as_of_month.as_of_month') }}
    ) as months (months_since_signup)

),

deltas_by_month as (

    select
        cohort_month,
        months_since_signup,
        sum(delta) as delta
    from retention_deltas
    group by 1, 2

),

retained as (

    select
        grid.cohort_month,
        grid.months_since_signup,
        grid.cohort_size,
        sum(coalesce(deltas_by_month.delta, 0)) over (
            partition by grid.cohort_month
            order by grid.months_since_signup
            rows unbounded preceding
        ) as retained_customers
    from grid
    left join deltas_by_month
        on
            grid.cohort_month = deltas_by_month.cohort_month
            and grid.months_since_signup = deltas_by_month.months_since_signup

),

final as (

    select
        cohort_month,
        months_since_signup,
        cast(cohort_month + make_interval(months => months_since_signup) as date) as activity_month,
        cohort_size,
        cast(retained_customers as bigint) as retained_customers,
        cast(cast(retained_customers as numeric) / cohort_size as numeric(6, 4)) as retention_rate
    from retained

)

select * from final
