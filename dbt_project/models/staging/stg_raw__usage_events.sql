-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
select
    event_id,
    customer_id,
    occurred_at,
    lower(trim(event_type)) as event_type,
    nullif(upper(trim(error_code)), '') as error_code,
    _loaded_at
from {{ source('raw', 'usage_events') }}
