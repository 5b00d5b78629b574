{#- The UTC calendar date of a timestamptz column: every day boundary in the project is UTC. -#}
{% macro utc_date(column) -%}
    cast(({{ column }} at time zone 'utc') as date)
{%- endmacro %}
