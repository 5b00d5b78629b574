-- one select, no CTEs: PostgreSQL inlines a view into the query reading it only when the
-- view has no WITH clause, and only then can a join probe the raw table's indexes
-- (see _staging__models.yml)
select
    order_line_id,
    order_id,
    lower(trim(category)) as category,
    quantity,
    cast(amount as numeric(12, 2)) as amount,
    cast(coalesce(discount_amount, 0) as numeric(12, 2)) as discount_amount,
    _loaded_at
from {{ source('raw', 'order_lines') }}
