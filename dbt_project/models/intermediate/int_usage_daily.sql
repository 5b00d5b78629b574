{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'event_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'event_date']) }}",
            "{{ ensure_index(['customer_id', 'event_date'], unique=true) }}",
            "{{ ensure_index(['max_loaded_at']) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Product usage per customer and UTC day: the only place the event table is scanned.
    Incremental: a run reads the events loaded after the newest `_loaded_at` already processed.
    The raw loader serializes loads with a lock taken as the first statement of its transaction,
    whose start time is every row's `_loaded_at`, so loads commit in `_loaded_at` order and none
    is skipped. Other writers of the event table may commit out of order: var
    usage_load_margin_minutes (default 0) re-reads that many minutes before the newest
    `_loaded_at` (those rows' days are then re-aggregated from all their events). Through the
    BRIN index on `_loaded_at` this is a read of the newest pages only, not of the 50M-row table.
    - A (customer, day) pair not in the table yet gets its aggregate from those new events alone:
      every older event of it would have been aggregated already (the daily case: yesterday's
      events are all new pairs; no other event is read).
    - A pair already in the table (a late event for a day already counted, a re-delivered
      event, a re-read inside the margin) is re-aggregated from ALL its events.
    Both replace their rows (delete+insert), so the table equals a full refresh (tested). The
    scoping CTEs come from macro customer_day_scope (shared by int_usage_daily and int_orders_daily).
-#}

{%- set load_margin_minutes = positive_int_var('usage_load_margin_minutes', 0, allow_zero=true) %}

with

-- not materialized: read twice by incremental runs (new rows, rebuilt days), each read must keep
-- its own filter and index (a materialized CTE would copy all 50M events first)
usage_events as not materialized (

    select * from {{ ref('stg_raw__usage_events') }}

),

{% if is_incremental() %}

    {{ customer_day_scope('usage_events', 'occurred_at', 'event_date', margin_minutes=load_margin_minutes) }},

{% else %}

    scoped_rows as (

        select * from usage_events

    ),

{% endif %}

daily as (

    select
        customer_id,
        {{ utc_date('occurred_at') }} as event_date,
        count(*) as events_count,
        count(*) filter (where event_type = 'error') as error_events_count,
        array_agg(distinct error_code order by error_code)
        filter (where event_type = 'error' and error_code is not null) as error_codes,
        max(occurred_at) as last_occurred_at,
        max(_loaded_at) as max_loaded_at
    from scoped_rows
    group by 1, 2

),

final as (

    select
        customer_id,
        event_date,
        cast(events_count as integer) as events_count,
        cast(error_events_count as integer) as error_events_count,
        coalesce(error_codes, cast(array[] as text[])) as error_codes,
        last_occurred_at,
        max_loaded_at
    from daily

)

select * from final
