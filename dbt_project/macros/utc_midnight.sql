{#- The timestamptz of 00:00 UTC of a date expression (the as-of cut-off as a point in time). -#}
{% macro utc_midnight(date_expr) -%}
    (cast({{ date_expr }} as timestamp) at time zone 'utc')
{%- endmacro %}
