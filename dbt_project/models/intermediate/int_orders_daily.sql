{{
    config(
        post_hook=[
            "{{ ensure_index(['customer_id', 'order_date'], unique=true, nulls_distinct=false) }}",
            "analyze {{ this }}"
        ]
    )
}}

with

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

daily as (

    select
        customer_id,
        {{ utc_date('ordered_at') }} as order_date,
        count(*) as orders_count,
        sum(amount) as amount,
        sum(discount_amount) as discount_amount,
        max(ordered_at) as last_ordered_at
    from orders
    group by 1, 2

),

final as (

    select
        customer_id,
        order_date,
        cast(orders_count as integer) as orders_count,
        cast(amount as numeric(14, 2)) as amount,
        cast(discount_amount as numeric(14, 2)) as discount_amount,
        last_ordered_at
    from daily

)

select * from final
