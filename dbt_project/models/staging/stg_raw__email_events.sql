with

source as (

    select * from {{ source('raw', 'email_events') }}

),

final as (

    select
        sg_event_id,
        -- `event` is the contract's column name (SendGrid's field), kept as is
        lower(trim(event)) as event,  -- noqa: RF04
        lower(trim(email)) as email,
        occurred_at,
        nullif(trim(outbox_key), '') as outbox_key,
        nullif(trim(sg_message_id), '') as sg_message_id,
        nullif(trim(reason), '') as reason,
        _loaded_at
    from source

)

select * from final
