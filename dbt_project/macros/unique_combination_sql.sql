{#- Every combination of `columns` that occurs more than once in `model` (nulls compare equal, as in a group by). -#}
{% macro unique_combination_sql(model, columns) -%}
    select
        {{ columns | join(', ') }},
        count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{%- endmacro %}
