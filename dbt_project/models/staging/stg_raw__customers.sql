-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
select
    customer_id,
    signup_at,
    nullif(lower(trim(email)), '') as email,
    nullif(upper(trim(country)), '') as country,
    trim(time_zone) as time_zone,
    marketing_consent,
    coalesce(nullif(lower(trim(acquisition_channel)), ''), 'unknown') as acquisition_channel,
    _loaded_at
from {{ source('raw', 'customers') }}
