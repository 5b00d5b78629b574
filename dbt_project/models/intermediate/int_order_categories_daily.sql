{{
    config(
        post_hook=[
            "{{ ensure_index(['customer_id', 'order_date', 'category'], unique=true, nulls_distinct=false) }}",
            "analyze {{ this }}"
        ]
    )
}}

-- Purchases per customer, product category and UTC day: the base of per-category frequencies.

with

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

order_lines as (

    select * from {{ ref('stg_raw__order_lines') }}

),

lines as (

    select
        orders.customer_id,
        order_lines.category,
        order_lines.order_id,
        order_lines.amount,
        {{ utc_date('orders.ordered_at') }} as order_date
    from order_lines
    inner join orders on order_lines.order_id = orders.order_id

),

final as (

    select
        customer_id,
        category,
        order_date,
        cast(count(distinct order_id) as integer) as orders_count,
        cast(sum(amount) as numeric(14, 2)) as amount
    from lines
    group by 1, 2, 3

)

select * from final
