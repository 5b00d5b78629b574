-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
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
from {{ source('raw', 'subscriptions') }}
