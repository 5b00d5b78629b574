-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
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
from {{ source('raw', 'cancellation_feedback') }}
