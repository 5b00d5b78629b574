-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
select
    ticket_id,
    customer_id,
    opened_at,
    resolved_at,
    lower(trim(category)) as category,
    nullif(upper(trim(error_code)), '') as error_code,
    satisfaction,
    _loaded_at
from {{ source('raw', 'support_tickets') }}
