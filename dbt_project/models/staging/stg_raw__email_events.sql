-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
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
from {{ source('raw', 'email_events') }}
