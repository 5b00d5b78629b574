{#-
    unique_combination, answered by the database when it enforces it: when the model's table has
    a valid unique index (or primary key) on some of `columns` whose nulls cannot repeat (nulls
    not distinct, or the key columns are NOT NULL; macro enforced_by_catalog), a repeated
    combination cannot exist and the test is one catalog lookup. Otherwise it runs the
    unique_combination scan.
-#}
{% test enforced_unique_combination(model, columns) %}

    {%- set enforced_by = enforced_by_catalog(model, columns, 'unique_combination') -%}
    {%- if enforced_by -%}
        {{ log('enforced_unique_combination ' ~ model.identifier ~ ': ' ~ enforced_by, info=false) }}
        /* enforced: {{ enforced_by }} - no scan */
        select 0 as occurrences
        where false
    {%- else -%}
        /* not enforced by the database: full scan */
        {{ unique_combination_sql(model, columns) }}
    {%- endif %}

{% endtest %}
