{#- Fails with every combination of `columns` that occurs more than once (dbt_utils-like, no hub packages). -#}
{% test unique_combination(model, columns) %}

    {{ unique_combination_sql(model, columns) }}

{% endtest %}
