with

source as (

    select * from {{ source('raw', 'orders') }}

),

final as (

    select
        order_id,
        customer_id,
        ordered_at,
        cast(amount as numeric(12, 2)) as amount,
        cast(coalesce(discount_amount, 0) as numeric(12, 2)) as discount_amount,
        _loaded_at
    from source

)

select * from final
