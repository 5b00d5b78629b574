{{
    config(
        materialized='incremental',
        unique_key=['customer_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'last_loaded_at']) }}",
            "{{ ensure_index(['customer_id'], unique=true) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    One row per customer id that occurs in the usage events, with the newest `_loaded_at` of its
    events: the event table's customer ids at customer size, so the orphan check of usage events
    (relationships test in _intermediate__models.yml) compares about a million ids instead of
    probing 50 million events.
    Incremental: a run reads only the events loaded after the newest `_loaded_at` it has seen
    (minus var usage_load_margin_minutes, default 0, for writers that commit out of order; see
    int_usage_daily) - a filter, no join or sort of the
    event table - and replaces those customers' rows. The raw loader never deletes a row (a
    re-delivery replaces rows by key), so an id once seen stays seen; --full-refresh rebuilds it.
-#}

with

usage_events as (

    select * from {{ ref('stg_raw__usage_events') }}

),

{% if is_incremental() %}

    -- the watermark as a scalar subquery: one value, compared inside the scan (a cross join with
    -- a watermark CTE computed every column of the view for every event before filtering)
    new_events as (

        select
            customer_id,
            _loaded_at
        from usage_events
        where
            {{ loaded_after_last_run(
                watermark='last_loaded_at',
                margin_minutes=positive_int_var('usage_load_margin_minutes', 0, allow_zero=true)
            ) }}

    ),

{% else %}

    new_events as (

        select
            customer_id,
            _loaded_at
        from usage_events

    ),

{% endif %}

final as (

    select
        customer_id,
        max(_loaded_at) as last_loaded_at
    from new_events
    where customer_id is not null
    group by customer_id

)

select * from final
