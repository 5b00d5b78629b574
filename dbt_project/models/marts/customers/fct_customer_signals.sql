{{
    config(
        pre_hook=customer_signals_full_scans(),
        post_hook=[
            "{{ ensure_index(['customer_id'], unique=true) }}",
            "analyze {{ this }}"
        ]
    )
}}

-- The churn signals of every customer at the current as-of date: the features of
-- fct_customer_features_asof (same macro) at that single date, plus two texts for people.

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

spine as (

    select
        customer_id,
        {{ as_of_date() }} as as_of_date
    from customers
    where signup_at < {{ utc_midnight(as_of_date()) }}

),

features as (

    {{ customer_features('spine', with_text_columns=true, single_date=as_of_date()) }}

),

final as (

    select * from features

)

select * from final
