with

source as (

    select * from {{ source('raw', 'payments') }}

),

final as (

    select
        payment_id,
        customer_id,
        nullif(trim(subscription_id), '') as subscription_id,
        due_at,
        attempted_at,
        attempt_number,
        cast(amount as numeric(12, 2)) as amount,
        lower(trim(status)) as status,
        nullif(lower(trim(failure_code)), '') as failure_code,
        _loaded_at
    from source

)

select * from final
