with

source as (

    select * from {{ source('raw', 'subscriptions') }}

),

final as (

    select
        subscription_id,
        customer_id,
        lower(trim(plan)) as plan,
        cast(price as numeric(12, 2)) as price,
        lower(trim(billing_period)) as billing_period,
        started_at,
        renewal_date,
        cancelled_at,
        nullif(lower(trim(cancel_reason)), '') as cancel_reason,
        _loaded_at
    from source

)

select * from final
