{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'event_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "{{ ensure_not_null(['customer_id', 'event_date']) }}",
            "{{ ensure_index(['customer_id', 'event_date'], unique=true) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Product usage per customer and UTC day: the only place the event table is scanned.
    Incremental: a run re-aggregates only the (customer, day) pairs that received rows loaded
    after the newest `_loaded_at` already processed, plus every day inside the lookback window
    (var usage_lookback_days, default 3) as a guard against clock skew between loads. Those
    pairs are re-aggregated from ALL their events and replace the old rows (delete+insert),
    so late-arriving events give the same table as a full refresh.
-#}

with

usage_events as (

    select * from {{ ref('stg_raw__usage_events') }}

),

{% if is_incremental() %}

    watermark as (

        select
            max(max_loaded_at) as max_loaded_at,
            max(event_date) as max_event_date
        from {{ this }}

    ),

    changed_days as (

        select distinct
            usage_events.customer_id,
            {{ utc_date('usage_events.occurred_at') }} as event_date
        from usage_events
        cross join watermark
        where
            -- an empty table (no usage data yet at the first run) has no watermark: take everything
            usage_events._loaded_at > coalesce(watermark.max_loaded_at, '-infinity')
            or usage_events.occurred_at >= cast(
                watermark.max_event_date - {{ positive_int_var('usage_lookback_days', 3) }} as timestamp
            ) at time zone 'utc'

    ),

    scoped_events as (

        select usage_events.*
        from usage_events
        inner join changed_days
            on
                usage_events.customer_id = changed_days.customer_id
                and usage_events.occurred_at >= cast(changed_days.event_date as timestamp) at time zone 'utc'
                and usage_events.occurred_at < cast(changed_days.event_date + 1 as timestamp) at time zone 'utc'

    ),

{% else %}

    scoped_events as (

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
    from scoped_events
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
