{#-
    Post-hook: create an index on the model's table unless one with exactly these key columns
    (in this order) exists.

    Replaces `create index if not exists <fixed name>`: when dbt rebuilds a table it renames the old
    one to a backup that keeps the fixed index name until it is dropped, so the `if not exists`
    skipped the new table and every second build lost its index (and the feature marts fell back
    to a sequential scan per point). The index here is unnamed, so Postgres picks a free name.

    unique=true makes the index unique: a duplicate key fails the model's build (and the
    enforced_unique / enforced_unique_combination tests then answer from the catalog instead of
    scanning). A plain index on the same columns left from an earlier build of an incremental
    table is dropped, it would only double the index upkeep. A plain index (unique=false) is
    satisfied by a unique one on the same columns.

    nulls_distinct=false (with unique=true): `nulls not distinct`, so a key with nulls may not repeat
    either - the semantics of a group by and of the unique_combination test (PostgreSQL 15+; an
    older server gets a plain unique index, the tests then scan unless the columns are not null).
-#}
{% macro ensure_index(columns, unique=false, nulls_distinct=true) -%}
    {%- set relation = adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier) -%}
    {%- set wanted = [] -%}
    {%- for column in columns -%}{%- do wanted.append("'" ~ column ~ "'") -%}{%- endfor -%}
    {%- set not_distinct = unique and not nulls_distinct -%}
    do $ensure_index$
    declare
        target regclass := to_regclass('{{ relation }}');
        redundant regclass;
    begin
        if not exists (
            select 1
            from pg_index as idx
            where
                idx.indrelid = target
                {% if unique -%}
                    and idx.indisunique
                {%- endif %}
                {% if not_distinct -%}
                    and coalesce((to_jsonb(idx) ->> 'indnullsnotdistinct')::boolean, false)
                {%- endif %}
                and idx.indisvalid
                and idx.indpred is null
                and idx.indexprs is null
                and array(
                    select att.attname::text
                    from unnest((string_to_array(idx.indkey::text, ' ')::int2 [])[1:idx.indnkeyatts])
                        with ordinality as key (attnum, ord)
                    inner join pg_attribute as att on att.attrelid = target and key.attnum = att.attnum
                    order by key.ord
                ) = array[{{ wanted | join(', ') }}]::text []
        ) then
            {% if not_distinct -%}
                if current_setting('server_version_num')::int >= 150000 then
                    execute 'create unique index on {{ this }} ({{ columns | join(", ") }}) nulls not distinct';
                else
                    execute 'create unique index on {{ this }} ({{ columns | join(", ") }})';
                end if;
            {%- else -%}
                create {{ 'unique ' if unique else '' }}index on {{ this }} ({{ columns | join(', ') }});
            {%- endif %}
        end if;
        {% if unique -%}
            for redundant in
                select idx.indexrelid::regclass
                from pg_index as idx
                where
                    idx.indrelid = target
                    and not idx.indisunique
                    and idx.indpred is null
                    and idx.indexprs is null
                    and array(
                        select att.attname::text
                        from unnest((string_to_array(idx.indkey::text, ' ')::int2 [])[1:idx.indnkeyatts])
                            with ordinality as key (attnum, ord)
                        inner join pg_attribute as att on att.attrelid = target and key.attnum = att.attnum
                        order by key.ord
                    ) = array[{{ wanted | join(', ') }}]::text []
            loop
                execute format('drop index %s', redundant);
            end loop;
        {%- endif %}
    end
    $ensure_index$
{%- endmacro %}


{#-
    Post-hook: make `columns` of the model's table NOT NULL (a null fails the model's build, and the
    enforced_not_null test answers from the catalog). PostgreSQL scans the table to check only when
    a column is not yet NOT NULL: once per full build of an incremental table, never on its
    incremental runs.
-#}
{% macro ensure_not_null(columns) -%}
    alter table {{ this }}
    {%- for column in columns %}
        alter column {{ adapter.quote(column) }} set not null{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
