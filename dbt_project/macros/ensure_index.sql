{#-
    Post-hook: create an index on the model's table unless one with exactly these columns exists.

    Replaces `create index if not exists <fixed name>`: when dbt rebuilds a table it renames the old
    one to a backup that keeps the fixed index name until it is dropped, so the `if not exists`
    skipped the new table and every second build lost its index (and the feature marts fell back
    to a sequential scan per point). The index here is unnamed, so Postgres picks a free name.
-#}
{% macro ensure_index(columns, unique=false) -%}
    {%- set relation = adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier) -%}
    do $ensure_index$
    begin
        if not exists (
            select 1
            from pg_index
            where
                indrelid = to_regclass('{{ relation }}')
                and indisunique = {{ 'true' if unique else 'false' }}
                and pg_get_indexdef(indexrelid) like '%({{ columns | join(", ") }})'
        ) then
            create {{ 'unique ' if unique else '' }}index on {{ this }} ({{ columns | join(', ') }});
        end if;
    end
    $ensure_index$
{%- endmacro %}
