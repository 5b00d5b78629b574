with

source as (

    select * from {{ source('raw', 'order_lines') }}

),

final as (

    select
        order_line_id,
        order_id,
        lower(trim(category)) as category,
        quantity,
        cast(amount as numeric(12, 2)) as amount,
        cast(coalesce(discount_amount, 0) as numeric(12, 2)) as discount_amount,
        _loaded_at
    from source

)

select * from final
