{#-
    What in the database enforces a property of `model`'s columns, read from the PostgreSQL
    catalog when the test executes. Returns a description such as
    `primary key usage_events_pkey of raw.usage_events (event_id)` or `not null on
    raw.usage_events.event_type`, or '' when nothing enforces it (and always '' while dbt only
    parses, where no database may be reachable). Used by the enforced_* generic tests: an
    enforced property costs one catalog query instead of a scan of the model.

    Whose constraints count:
    - `model` is a table: its own.
    - `model` is a view reading exactly one table (pg_depend of the view's rewrite rule): that
      table's, on `source_columns` (default: the tested column names). This is the staging case:
      a 1:1 projection of a raw table. The caller vouches that the view column is a pass-through
      of the raw column (for uniqueness) or a null-preserving function of it (for not null);
      say so in the test's description.
    - anything else (a view over several relations, a view of a view, a materialized view):
      nothing counts, the tests scan.

    kind:
    - not_null: every column attnotnull.
    - unique: dbt's `unique` (nulls ignored): a valid, non-partial unique index (a primary key,
      a unique constraint or a unique index) whose key columns are all among `columns`.
    - unique_combination: uniqueness of the combination with nulls compared equal (a group by):
      as `unique`, and the index treats nulls as not distinct or its key columns are not null.
-#}
{% macro enforced_by_catalog(model, columns, kind, source_columns=none) -%}
    {%- if not execute or model.identifier is not defined or model.schema is not defined -%}
        {{ return('') }}
    {%- endif -%}
    {%- if kind not in ['not_null', 'unique', 'unique_combination'] -%}
        {{ exceptions.raise_compiler_error("enforced_by_catalog: unknown kind '" ~ kind ~ "'") }}
    {%- endif -%}
    {%- set names = source_columns if source_columns is not none else columns -%}
    {%- if names is string -%}{%- set names = [names] -%}{%- endif -%}
    {%- if names | length == 0 -%}
        {{ exceptions.raise_compiler_error('enforced_by_catalog: no columns given') }}
    {%- endif -%}
    {%- set relation = adapter.quote(model.schema) ~ '.' ~ adapter.quote(model.identifier) -%}
    {%- set wanted = [] -%}
    {%- for name in names -%}{%- do wanted.append("'" ~ (name | replace("'", "''")) ~ "'") -%}{%- endfor -%}
    {%- set query -%}
        with

        target as (
            select
                oid,
                relkind
            from pg_class
            where oid = to_regclass('{{ relation | replace("'", "''") }}')
        ),

        view_reads as (
            select min(dep.refobjid) as relid
            from target
            inner join pg_rewrite as rule on target.oid = rule.ev_class
            inner join pg_depend as dep
                on
                    dep.classid = 'pg_rewrite'::regclass
                    and rule.oid = dep.objid
                    and dep.refclassid = 'pg_class'::regclass
                    and target.oid != dep.refobjid
            where target.relkind = 'v'
            having count(distinct dep.refobjid) = 1
        ),

        base as (
            select rel.oid as relid
            from pg_class as rel
            where
                rel.relkind in ('r', 'p')
                and rel.oid in (
                    select target.oid from target where target.relkind in ('r', 'p')
                    union all
                    select view_reads.relid from view_reads
                )
        ),

        cols as (
            select
                att.attnum,
                att.attname,
                att.attnotnull
            from base
            inner join pg_attribute as att
                on base.relid = att.attrelid
            where
                att.attname = any(array[{{ wanted | join(', ') }}]::text [])
                and att.attnum > 0
                and not att.attisdropped
        ),

        complete as (
            select
                base.relid,
                array_agg(cols.attnum) as attnums
            from base
            cross join cols
            group by base.relid
            having count(*) = {{ names | length }}
        ),

        {% if kind == 'not_null' -%}
            found as (
                select
                    'not null on ' || string_agg(
                        format('%s.%I', complete.relid::regclass, cols.attname), ', ' order by cols.attnum
                    ) as enforced_by
                from complete
                cross join cols
                having bool_and(cols.attnotnull)
            )
        {%- else -%}
            indexes as (
                select
                    idx.indexrelid,
                    con.conname,
                    con.contype,
                    complete.relid,
                    (string_to_array(idx.indkey::text, ' ')::int2 [])[1:idx.indnkeyatts] as keys,
                    coalesce((to_jsonb(idx) ->> 'indnullsnotdistinct')::boolean, false) as nulls_not_distinct
                from complete
                inner join pg_index as idx on complete.relid = idx.indrelid
                left join pg_constraint as con on idx.indexrelid = con.conindid and complete.relid = con.conrelid
                where
                    idx.indisunique
                    and idx.indisvalid
                    and idx.indpred is null
                    and idx.indexprs is null
                    and (string_to_array(idx.indkey::text, ' ')::int2 [])[1:idx.indnkeyatts] <@ complete.attnums
            ),

            found as (
                select
                    format(
                        '%s %I of %s (%s)',
                        case indexes.contype
                            when 'p' then 'primary key'
                            when 'u' then 'unique constraint'
                            else 'unique index'
                        end || case when indexes.nulls_not_distinct then ' (nulls not distinct)' else '' end,
                        coalesce(indexes.conname, idx_rel.relname),
                        indexes.relid::regclass,
                        (
                            select string_agg(quote_ident(att.attname), ', ' order by key.ord)
                            from unnest(indexes.keys) with ordinality as key (attnum, ord)
                            inner join pg_attribute as att
                                on att.attrelid = indexes.relid and key.attnum = att.attnum
                        )
                    ) as enforced_by
                from indexes
                inner join pg_class as idx_rel on indexes.indexrelid = idx_rel.oid
                where
                    {% if kind == 'unique_combination' -%}
                        (
                            indexes.nulls_not_distinct
                            or not exists (
                                select 1
                                from pg_attribute as att
                                where
                                    att.attrelid = indexes.relid
                                    and att.attnum = any(indexes.keys)
                                    and not att.attnotnull
                            )
                        )
                    {%- else -%}
                        true
                    {%- endif %}
                order by indexes.contype nulls last, cardinality(indexes.keys)
                limit 1
            )
        {%- endif %}

        select enforced_by from found
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {%- if result is none or result.rows | length == 0 or result.rows[0][0] is none -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(result.rows[0][0]) }}
{%- endmacro %}
