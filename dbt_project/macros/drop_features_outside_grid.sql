{#-
    Post-hook of int_customer_features_weekly: delete rows whose as_of_date is no longer on the weekly
    grid (older than var feature_weeks Mondays, or after the current as-of date's Monday), so that an
    incremental run and a full refresh leave the same rows.
-#}
{% macro drop_features_outside_grid() -%}
    delete from {{ this }}
    where
        as_of_date < cast(date_trunc('week', {{ as_of_date() }}) as date)
        - 7 * ({{ positive_int_var('feature_weeks', 26) }} - 1)
        or as_of_date > cast(date_trunc('week', {{ as_of_date() }}) as date)
{%- endmacro %}
