with

source as (

    select * from {{ source('raw', 'customers') }}

),

final as (

    select
        customer_id,
        signup_at,
        lower(trim(email)) as email,
        upper(country) as country,
        time_zone,
        marketing_consent,
        coalesce(acquisition_channel, 'unknown') as acquisition_channel
    from source

)

select * from final
