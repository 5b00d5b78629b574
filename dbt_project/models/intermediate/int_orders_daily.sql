{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'order_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'order_date']) }}",
            "{{ ensure_index(['customer_id', 'order_date'], unique=true, nulls_distinct=false) }}",
            "{{ ensure_index(['max_loaded_at']) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Orders per customer and UTC day (count, amount after discount, discount).
    Incremental, like int_usage_daily: a run reads the orders loaded after the newest `_loaded_at`
    already processed (max_loaded_at), through the BRIN index on raw.orders._loaded_at - the newest
    pages only. No load margin: the raw loader commits loads in `_loaded_at` order (see
    int_usage_daily).
    - A (customer, day) pair not in the table yet gets its aggregate from those new orders alone:
      every older order of it would have been aggregated already (the daily case).
    - A pair already in the table (a late order for a day already counted, a re-delivered order
      with a new amount) is re-aggregated from ALL its orders.
    Both replace their rows (delete+insert), so the table equals a full refresh (tested). The
    scoping CTEs come from macro customer_day_scope (shared by int_usage_daily and int_orders_daily).
    Limit: a re-delivered order that moves to another customer or day leaves its old pair's
    aggregate stale (it still counts the order) until --full-refresh, as in int_usage_daily.
-#}

with

-- not materialized: read twice by incremental runs (new rows, rebuilt days), each read must keep
-- its own filter and index
orders as not materialized (

    select * from {{ ref('stg_raw__orders') }}

),

{% if is_incremental() %}

    {{ customer_day_scope('orders', 'ordered_at', 'order_date') }},

{% else %}

    scoped_rows as (

        select * from orders

    ),

{% endif %}

daily as (

    select
        customer_id,
        {{ utc_date('ordered_at') }} as order_date,
        count(*) as orders_count,
        sum(amount) as amount,
        sum(discount_amount) as discount_amount,
        max(ordered_at) as last_ordered_at,
        max(_loaded_at) as max_loaded_at
    from scoped_rows
    group by 1, 2

),

final as (

    select
        customer_id,
        order_date,
        cast(orders_count as integer) as orders_count,
        cast(amount as numeric(14, 2)) as amount,
        cast(discount_amount as numeric(14, 2)) as discount_amount,
        last_ordered_at,
        max_loaded_at
    from daily

)

select * from final
