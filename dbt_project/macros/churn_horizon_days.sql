{#- The label horizon N in days (var churn_horizon_days, env RETENTION_CHURN_HORIZON_DAYS). -#}
{% macro churn_horizon_days() -%}
    {{ positive_int_var('churn_horizon_days', 60) }}
{%- endmacro %}
