-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
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
from {{ source('raw', 'payments') }}
