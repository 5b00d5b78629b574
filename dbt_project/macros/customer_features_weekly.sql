{#-
    How many hash partitions of the customers the weekly features are stored in: the number of
    int_customer_features_weekly_part_<n> models (n = 0 .. parts - 1), which must exist, each
    calling customer_features_weekly_part(n); the union view refs every one, so a missing part
    stops the parse. Two: the embedded warehouse has two cores and dbt runs two threads. A larger
    warehouse can add part models and raise this number (then --full-refresh the parts).
-#}
{% macro customer_feature_parts() -%}
    {{ return(2) }}
{%- endmacro %}

{#-
    The SQL condition that keeps the customers of partition `part`: PostgreSQL's extended text
    hash (seed 0), the hash its own hash-partitioned tables are stored by, so it does not change
    between server versions; 0.03 us a row (md5 would cost 0.35 us).

    Wrapped in coalesce(..., false), which keeps the same rows (a null id is in no part either
    way), for the planner's sake: it estimates an equality on an expression without statistics
    at 0.5 % of the rows, a boolean expression at one half. With the 0.5 % estimate every input
    of the 100k bench company looked 200 times smaller than it is, and the part's plan (nested
    loops over "tiny" inputs) ran for more than 14 minutes instead of about a minute. One half
    is right for two parts and an over-estimate for more, the safe side.
-#}
{% macro customer_feature_part_filter(part, column='customer_id') -%}
    {%- set parts = customer_feature_parts() -%}
    {%- if part is not number or part < 0 or part >= parts -%}
        {{ exceptions.raise_compiler_error(
            "customer feature part must be an integer from 0 to " ~ (parts - 1) ~ ", got '" ~ part ~ "'") }}
    {%- endif -%}
    coalesce(mod(mod(hashtextextended({{ column }}, 0), {{ parts }}) + {{ parts }}, {{ parts }}) = {{ part }}, false)
{%- endmacro %}

{#-
    The point-in-time features of every customer at each weekly as-of date (feature_grid(): the
    last var('feature_weeks', 26) Mondays), from data strictly before that date (customer_features
    macro, shared with fct_customer_signals). No labels: fct_customer_features_asof adds them, so
    the daily label updates never rewrite this table.

    Stored in customer_feature_parts() tables, int_customer_features_weekly_part_<n>, one per hash
    partition of the customers (customer_feature_part_filter), each built by this macro; the view
    int_customer_features_weekly unions them. As one statement, the full refresh was the build's
    longest node (1M customers: 558 s on one core, BENCHMARKS.md): PostgreSQL runs neither its
    window functions nor its insert in parallel. As separate models, dbt's threads build the
    parts side by side. Each part reads and sorts only its customers' rows (every input is
    filtered with the partition's condition).

    Incremental: a row (customer, d) depends only on the customer's rows dated before d, so a run
    recomputes
    - every customer at grid dates not built yet (a new Monday), and
    - a customer at the grid dates after the earliest date of any of their input rows loaded
      (_loaded_at) after the previous run of the part started (computed_at): new events of
      yesterday touch no built date; a late-arriving or corrected older row recomputes exactly the
      dates it can change (the same rows as a full refresh).
    Rows that fall off the grid are deleted (post-hook). A load committed while a part builds
    whose transaction began before the build is seen by the next run only via a --full-refresh;
    the daily DAG loads before it transforms, so that does not happen there.

    Post-hooks, each a pass over the part's table (11.6M rows a part at 1M customers), so as few
    as the runs need:
    - one unique index on (as_of_date, customer_id): the delete+insert key, and with as_of_date
      first it also serves new_dates' probes and the delete of the rows off the grid (a separate
      as_of_date index cost 16-19 s a part in the full build);
    - computed_at: the previous run's start, max(computed_at), read by every incremental run
      (loaded_after_last_run);
    - the delete of the rows off the grid comes after the index, so it is an index range scan
      (before it, the full refresh scanned the new table for nothing: 9-10 s a part).
-#}
{% macro customer_features_weekly_part(part) %}

{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'as_of_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ customer_features_work_mem() }}",
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'as_of_date']) }}",
            "{{ ensure_index(['as_of_date', 'customer_id'], unique=true) }}",
            "{{ ensure_index(['computed_at']) }}",
            "{{ drop_features_outside_grid() }}",
            "analyze {{ this }}"
        ]
    )
}}

-- the inputs read only by incremental runs (for the changed rows):
-- depends_on: {{ ref('stg_raw__usage_events') }}
-- depends_on: {{ ref('stg_raw__orders') }}
-- depends_on: {{ ref('stg_raw__order_lines') }}
-- depends_on: {{ ref('stg_raw__payments') }}
-- depends_on: {{ ref('stg_raw__support_tickets') }}
-- depends_on: {{ ref('stg_raw__subscriptions') }}

-- customers and orders are read more than once by incremental runs: not materialized, so each
-- read keeps its own filter and index (materialized, the daily run copied all 5M orders into a
-- work table to find the few loaded since the last run: 4.5 s of a part's 11 s, 1M customers)
with

customers as not materialized (

    select * from {{ ref('stg_raw__customers') }}
    where {{ customer_feature_part_filter(part) }}

),

grid as (

    {{ feature_grid() }}

),

{% if is_incremental() %}

    {#- the previous run's start (max(computed_at), read through its index) as a literal: behind
        a scalar subquery the planner took a third of every input for new rows, and joined the
        new order lines to all 5M orders through a hash of them (2.4 s of a part's 7.4 s daily
        run at 1M customers) instead of probing the order key -#}
    {%- set loaded_since_previous_run = loaded_after_last_run(watermark='computed_at') %}

    new_dates as (

        select grid.as_of_date
        from grid
        -- an anti-join probing the unique index (as_of_date first): no scan of the whole table
        where not exists (
            select 1
            from {{ this }} as built
            where built.as_of_date = grid.as_of_date
        )

    ),

    usage_events as (

        select * from {{ ref('stg_raw__usage_events') }}

    ),

    orders as not materialized (

        select * from {{ ref('stg_raw__orders') }}

    ),

    order_lines as (

        select * from {{ ref('stg_raw__order_lines') }}

    ),

    payments as (

        select * from {{ ref('stg_raw__payments') }}

    ),

    tickets as (

        select * from {{ ref('stg_raw__support_tickets') }}

    ),

    subscriptions as (

        select * from {{ ref('stg_raw__subscriptions') }}

    ),

    -- input rows loaded since the previous run, with the first date whose features they can change
    -- (a row dated x counts for the as-of dates after x)
    changed_inputs as (

        select
            customer_id,
            {{ utc_date('signup_at') }} as changed_date
        from customers
        where {{ loaded_since_previous_run }}

        union all

        select
            customer_id,
            {{ utc_date('occurred_at') }} as changed_date
        from usage_events
        where {{ loaded_since_previous_run }}

        union all

        select
            customer_id,
            {{ utc_date('ordered_at') }} as changed_date
        from orders
        where {{ loaded_since_previous_run }}

        union all

        select
            orders.customer_id,
            {{ utc_date('orders.ordered_at') }} as changed_date
        from (select * from order_lines where {{ loaded_since_previous_run }}) as new_lines
        inner join orders on new_lines.order_id = orders.order_id

        union all

        select
            customer_id,
            {{ utc_date('least(due_at, attempted_at)') }} as changed_date
        from payments
        where {{ loaded_since_previous_run }}

        union all

        select
            customer_id,
            {{ utc_date('opened_at') }} as changed_date
        from tickets
        where {{ loaded_since_previous_run }}

        union all

        -- a renewal or cancellation updates the row: its start bounds every date it can change
        select
            customer_id,
            {{ utc_date('started_at') }} as changed_date
        from subscriptions
        where {{ loaded_since_previous_run }}

    ),

    changed_customers as (

        select
            customer_id,
            min(changed_date) as first_changed_date
        from changed_inputs
        group by 1

    ),

    stale_points as (

        select
            changed_customers.customer_id,
            grid.as_of_date
        from changed_customers
        inner join grid on changed_customers.first_changed_date < grid.as_of_date
        where grid.as_of_date not in (select new_dates.as_of_date from new_dates)

    ),

    spine as (

        select
            customers.customer_id,
            new_dates.as_of_date
        from customers
        inner join new_dates on customers.signup_at < {{ utc_midnight('new_dates.as_of_date') }}

        union all

        select
            customers.customer_id,
            stale_points.as_of_date
        from stale_points
        inner join customers on stale_points.customer_id = customers.customer_id
        where customers.signup_at < {{ utc_midnight('stale_points.as_of_date') }}

    ),

{% else %}

    spine as (

        select
            customers.customer_id,
            grid.as_of_date
        from customers
        inner join grid on customers.signup_at < {{ utc_midnight('grid.as_of_date') }}

    ),

{% endif %}

pending_grid as (

    select distinct spine.as_of_date from spine

),

features as (

    {{ customer_features(
        'spine',
        grid='pending_grid',
        restrict_to_spine=is_incremental(),
        customer_filter=customer_feature_part_filter(part)
    ) }}

),

final as (

    select
        features.*,
        now() as computed_at
    from features

)

select * from final

{% endmacro %}
