{{
    config(
        materialized='incremental',
        unique_key=['customer_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'last_loaded_at', 'last_occurred_at']) }}",
            "{{ ensure_index(['customer_id'], unique=true) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    One row per customer id that occurs in the usage events, with the newest `_loaded_at` of its
    events and its last event: the event table's customer ids at customer size, so
    - the orphan check of usage events (relationships test in _intermediate__models.yml) compares
      about a million ids instead of probing 50 million events, and
    - int_customer_activity finds each customer's last usage without grouping the 44M rows of
      int_usage_daily every day (23 s of the 1M one-day build).
    Incremental: a run reads only the events loaded after the newest `_loaded_at` it has seen
    (minus var usage_load_margin_minutes, default 0, for writers that commit out of order; see
    int_usage_daily) - a filter, no join or sort of the event table - and replaces those
    customers' rows. Their last event is read from their newest day in int_usage_daily (built
    before this model, the same run's new events included: one index probe per customer), not
    from the new events alone, so a late event of an older day or a re-delivered event gives the
    same value as a full refresh. A run that selects this model without int_usage_daily takes
    the later of the newest day built and the new events: the same value, unless a re-delivered
    event moved the customer's last event earlier. The raw loader never deletes a row (a
    re-delivery replaces rows by key), so an id once seen stays seen; --full-refresh rebuilds it.
-#}

-- depends_on: {{ ref('int_usage_daily') }}

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
            occurred_at,
            _loaded_at
        from usage_events
        where
            {{ loaded_after_last_run(
                watermark='last_loaded_at',
                margin_minutes=positive_int_var('usage_load_margin_minutes', 0, allow_zero=true)
            ) }}

    ),

    touched_customers as (

        select
            customer_id,
            max(_loaded_at) as last_loaded_at,
            max(occurred_at) as last_new_occurred_at
        from new_events
        where customer_id is not null
        group by customer_id

    ),

    final as (

        select
            touched_customers.customer_id,
            touched_customers.last_loaded_at,
            -- the newest day is at least as late as every new event once int_usage_daily has
            -- taken them (the normal run); the new events alone when it has not (a run that
            -- selects this model only), so the column is never null
            greatest(newest_day.last_occurred_at, touched_customers.last_new_occurred_at) as last_occurred_at
        from touched_customers
        -- a day's last event is the customer's last one when no later day exists (UTC days)
        left join lateral (
            select usage_daily.last_occurred_at
            from {{ ref('int_usage_daily') }} as usage_daily
            where usage_daily.customer_id = touched_customers.customer_id
            order by usage_daily.event_date desc
            limit 1
        ) as newest_day on true

    )

{% else %}

    final as (

        select
            customer_id,
            max(_loaded_at) as last_loaded_at,
            max(occurred_at) as last_occurred_at
        from usage_events
        where customer_id is not null
        group by customer_id

    )

{% endif %}

select * from final
