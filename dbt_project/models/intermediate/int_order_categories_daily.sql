{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'order_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'order_date']) }}",
            "{{ ensure_index(['customer_id', 'order_date', 'category'], unique=true, nulls_distinct=false) }}",
            "{{ ensure_index(['max_loaded_at']) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Purchases per customer, product category and UTC day: the base of per-category frequencies.
    Incremental, like int_usage_daily, with the customer-day as the unit a run replaces (the
    delete+insert key is (customer_id, order_date), all categories of the day): dbt's delete
    matches `(key columns) in (select ...)`, where a null never matches, so a key holding the
    category would leave a null-category row behind (and its re-insert would then violate the
    unique index, whose nulls are not distinct). The row key stays (customer_id, order_date,
    category), enforced by that index.
    A run reads the order lines and the orders loaded after max_loaded_at (the newest `_loaded_at`
    of either, among the rows already aggregated), each through the BRIN index on its
    `_loaded_at`; no load margin (the loader commits loads, both tables in one, in `_loaded_at`
    order). A new line or a new order touches its customer-day:
    - a customer-day not in the table yet gets its rows from the new lines (joined to their
      orders) alone - the daily case: new orders come with their lines;
    - a customer-day already in the table (a late order or line, a re-delivered line or order),
      and the day of a new order that came without any new line (its lines loaded before it, or a
      re-delivered order), is re-aggregated from ALL lines of all its orders (a scan of both
      tables, run only when there is such a day).
    Both replace their rows (delete+insert), so the table equals a full refresh (tested).
    Limits, until --full-refresh: a re-delivered order (or line) that moves to another customer or
    day leaves its old customer-day's rows stale, as in int_usage_daily; a new order loaded with
    only some of its lines, the others loaded before it, on a day not in the table yet, is counted
    from its new lines only (finding older lines of an order would scan the line table, which has
    no index on order_id, on every run).
-#}

with

-- not materialized: read twice by incremental runs (new rows, rebuilt days), each read must keep
-- its own filter and index
orders as not materialized (

    select * from {{ ref('stg_raw__orders') }}

),

order_lines as not materialized (

    select * from {{ ref('stg_raw__order_lines') }}

),

-- every order line with its order's customer and UTC day (inlined into each read below)
lines as not materialized (

    select
        orders.customer_id,
        order_lines.category,
        order_lines.order_id,
        order_lines.amount,
        {{ utc_date('orders.ordered_at') }} as order_date,
        order_lines._loaded_at as line_loaded_at,
        greatest(order_lines._loaded_at, orders._loaded_at) as loaded_at
    from order_lines
    inner join orders on order_lines.order_id = orders.order_id

),

{% if is_incremental() %}

    new_orders as (

        select *
        from orders
        -- the BRIN index on _loaded_at serves the filter (see the macro)
        where {{ loaded_after_last_run() }}

    ),

    -- new lines with their order (old or new: primary key probes)
    new_lines as (

        select *
        from lines
        where {{ loaded_after_last_run('line_loaded_at') }}

    ),

    touched_days as (

        select
            customer_id,
            order_date
        from new_lines

        union

        select
            customer_id,
            {{ utc_date('ordered_at') }} as order_date
        from new_orders

    ),

    -- days aggregated before (unique index probes), and days of new orders without a new line:
    -- their older lines must be counted again
    rebuilt_days as (

        select
            touched_days.customer_id,
            touched_days.order_date
        from touched_days
        where
            exists (
                select 1
                from {{ this }} as built
                where built.customer_id = touched_days.customer_id and built.order_date = touched_days.order_date
            )

        union

        select
            new_orders.customer_id,
            {{ utc_date('new_orders.ordered_at') }} as order_date
        from new_orders
        where not exists (
            select 1
            from new_lines
            where new_lines.order_id = new_orders.order_id
        )

    ),

    scoped_lines as (

        select new_lines.*
        from new_lines
        where
            not exists (
                select 1
                from rebuilt_days
                where
                    rebuilt_days.customer_id = new_lines.customer_id
                    and rebuilt_days.order_date = new_lines.order_date
            )

        union all

        -- all lines of the rebuilt days: a scan of the order and line tables, so it runs only
        -- when there are such days (an uncorrelated exists is a one-time filter: the daily run
        -- skips it)
        select lines.*
        from lines
        inner join rebuilt_days
            on
                lines.customer_id = rebuilt_days.customer_id
                and lines.order_date = rebuilt_days.order_date
        where exists (select any_rebuilt.customer_id from rebuilt_days as any_rebuilt)

    ),

{% else %}

    scoped_lines as (

        select * from lines

    ),

{% endif %}

final as (

    select
        customer_id,
        category,
        order_date,
        cast(count(distinct order_id) as integer) as orders_count,
        cast(sum(amount) as numeric(14, 2)) as amount,
        max(loaded_at) as max_loaded_at
    from scoped_lines
    group by 1, 2, 3

)

select * from final
