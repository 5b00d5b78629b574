{#-
    The weekly as-of grid of the point-in-time features: the last var('feature_weeks', 26) Mondays
    (ISO week starts) on or before the current as-of date, as a select of one column as_of_date.
    int_customer_features_weekly (the features) and fct_customer_features_asof (features + labels)
    both use it, so they agree on the dates.
-#}
{% macro feature_grid() -%}
    select cast(date_trunc('week', {{ as_of_date() }}) as date) - 7 * weeks_back.n as as_of_date
    from generate_series(0, {{ positive_int_var('feature_weeks', 26) }} - 1) as weeks_back (n)
{%- endmacro %}
