{#-
    Private helpers of the lifecycle marts (models/marts/lifecycle).

    lifecycle_cutoff(): 00:00 UTC of the as-of date. As everywhere in the project (features,
    labels, int_customer_churn_events), a fact is known when it happened before this instant,
    i.e. strictly before the as-of date.
-#}
{% macro lifecycle_cutoff() -%}
    {{ utc_midnight(as_of_date()) }}
{%- endmacro %}

{#- Price per month of a subscription (yearly plans spread over 12 months). -#}
{% macro lifecycle_monthly_price(price, billing_period) -%}
    (case when {{ billing_period }} = 'year' then {{ price }} / 12.0 else {{ price }} end)
{%- endmacro %}

{#- Whole months from the month of date_a to the month of date_b (both truncated to the month). -#}
{% macro lifecycle_months_between(date_a, date_b) -%}
    cast(
        (extract(year from {{ date_b }}) - extract(year from {{ date_a }})) * 12
        + extract(month from {{ date_b }}) - extract(month from {{ date_a }})
        as integer
    )
{%- endmacro %}
