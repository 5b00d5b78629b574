{#-
    No index scans in this model's transaction: each read of the single-date features aggregates a
    whole table or all the days of a window, so an index scan never pays here. Left on, PostgreSQL
    reads int_orders_daily through its (customer_id, order_date) index to feed a merge join: 5M
    heap fetches, the order sums 9.5 s instead of 5 s and the whole query 36 s instead of 32 s
    (1M customers, EXPLAIN ANALYZE, 2026-11-24).
    Not the weekly parts' 1GB work_mem (customer_features_work_mem): the query ran 1-3 s slower
    with it than with 64MB, 256MB or 512MB (1M customers, 2026-12-07; the project's
    model_work_mem applies).
-#}
{{
    config(
        pre_hook=["set local enable_indexscan = off", "set local enable_bitmapscan = off"],
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
