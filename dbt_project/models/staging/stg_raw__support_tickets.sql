with

source as (

    select * from {{ source('raw', 'support_tickets') }}

),

final as (

    select
        ticket_id,
        customer_id,
        opened_at,
        resolved_at,
        lower(trim(category)) as category,
        nullif(upper(trim(error_code)), '') as error_code,
        satisfaction,
        _loaded_at
    from source

)

select * from final
