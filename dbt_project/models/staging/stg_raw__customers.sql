with

source as (

    select * from {{ source('raw', 'customers') }}

),

final as (

    select
        customer_id,
        signup_at,
        nullif(lower(trim(email)), '') as email,
        nullif(upper(trim(country)), '') as country,
        trim(time_zone) as time_zone,
        marketing_consent,
        coalesce(nullif(lower(trim(acquisition_channel)), ''), 'unknown') as acquisition_channel,
        _loaded_at
    from source

)

select * from final
