{#-
    dbt's `not_null`, answered by the database when it enforces it: when the column is NOT NULL
    (on the table itself, or - for a staging view that projects one raw table - the raw table's
    `source_column`, default the same name; macro enforced_by_catalog), the test is one catalog
    lookup and returns no rows. Otherwise it runs exactly dbt's `not_null` scan. Only for columns
    that are a pass-through or a null-preserving function (lower, trim, a cast) of the raw column,
    never for one that can turn a value into null (nullif).
-#}
{% test enforced_not_null(model, column_name, source_column=none) %}

    {%- set enforced_by = enforced_by_catalog(
        model, [column_name], 'not_null', none if source_column is none else [source_column]
    ) -%}
    {%- if enforced_by -%}
        {{ log('enforced_not_null ' ~ model.identifier ~ '.' ~ column_name ~ ': ' ~ enforced_by, info=false) }}
        /* enforced: {{ enforced_by }} - no scan */
        select null as {{ column_name }}
        where false
    {%- else -%}
        /* not enforced by the database: full scan */
        {{ adapter.dispatch('test_not_null', 'dbt')(model, column_name) }}
    {%- endif %}

{% endtest %}
