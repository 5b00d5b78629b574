with

source as (

    select * from {{ source('raw', 'cancellation_feedback') }}

),

final as (

    select
        feedback_id,
        customer_id,
        nullif(trim(subscription_id), '') as subscription_id,
        submitted_at,
        lower(trim(reason_category)) as reason_category,
        nullif(trim(free_text), '') as free_text,
        nullif(lower(trim(offer_shown)), '') as offer_shown,
        offer_accepted,
        _loaded_at
    from source

)

select * from final
