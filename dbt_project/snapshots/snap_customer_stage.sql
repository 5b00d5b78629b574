{#-
    SCD type 2 history of every customer's lifecycle stage (dim_customers.lifecycle_stage).
    Strategy check on lifecycle_stage: a new version is written only when the stage changes.
    dbt_valid_from / dbt_valid_to are wall-clock snapshot times; `as_of_date` is the business
    day of the dim_customers build that produced the version (fct_daily_stage_counts and
    fct_stage_transitions use it, so frozen or backfilled as-of dates count correctly).
-#}
{% snapshot snap_customer_stage %}

    {{
        config(
            unique_key='customer_id',
            strategy='check',
            check_cols=['lifecycle_stage'],
        )
    }}

    with

    customers as (

        select * from {{ ref('dim_customers') }}

    ),

    final as (

        select
            customer_id,
            lifecycle_stage,
            cast(as_of_date as date) as as_of_date
        from customers

    )

    select * from final

{% endsnapshot %}
