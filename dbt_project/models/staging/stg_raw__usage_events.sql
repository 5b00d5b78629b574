with

source as (

    select * from {{ source('raw', 'usage_events') }}

),

final as (

    select
        event_id,
        customer_id,
        occurred_at,
        lower(trim(event_type)) as event_type,
        nullif(upper(trim(error_code)), '') as error_code,
        _loaded_at
    from source

)

select * from final
