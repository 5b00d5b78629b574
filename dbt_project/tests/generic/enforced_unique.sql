{#-
    dbt's `unique`, answered by the database when it enforces it: when a primary key, unique
    constraint or unique index covers the column (on the table itself, or - for a staging view
    that projects one raw table - on that table's `source_column`, default the same name; macro
    enforced_by_catalog), the test is one catalog lookup and returns no rows: a duplicate cannot
    exist. Otherwise it runs exactly dbt's `unique` scan. Only for columns that are passed through
    unchanged from the raw column.
-#}
{% test enforced_unique(model, column_name, source_column=none) %}

    {%- set enforced_by = enforced_by_catalog(
        model, [column_name], 'unique', none if source_column is none else [source_column]
    ) -%}
    {%- if enforced_by -%}
        {{ log('enforced_unique ' ~ model.identifier ~ '.' ~ column_name ~ ': ' ~ enforced_by, info=false) }}
        /* enforced: {{ enforced_by }} - no scan */
        select
            null as unique_field,
            0 as n_records
        where false
    {%- else -%}
        /* not enforced by the database: full scan */
        {{ adapter.dispatch('test_unique', 'dbt')(model, column_name) }}
    {%- endif %}

{% endtest %}
