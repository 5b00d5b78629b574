{{ config(materialized='view') }}

{#-
    Every customer's point-in-time features at each weekly as-of date: the union of the
    customer_feature_parts() hash partitions int_customer_features_weekly_part_<n> (disjoint sets of
    customers; see macro customer_features_weekly_part). A view, so readers keep one name and each
    part's indexes serve their filters.
-#}

with

{% for part in range(customer_feature_parts()) %}
    part_{{ part }} as (

        select * from {{ ref('int_customer_features_weekly_part_' ~ part) }}

    ),

{% endfor %}
final as (

    {% for part in range(customer_feature_parts()) %}
        select * from part_{{ part }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from final
