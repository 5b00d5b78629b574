{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'as_of_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ customer_features_work_mem() }}",
        post_hook=[
            "{{ drop_features_outside_grid() }}",
            "{{ ensure_index(['customer_id', 'as_of_date'], unique=true) }}",
            "{{ ensure_index(['as_of_date']) }}",
            "analyze {{ this }}"
        ]
    )
}}

{#-
    Training / scoring frame: one row per customer and weekly as-of date. The grid is the Mondays
    (ISO week starts) on or before the current as-of date, the last var('feature_weeks', 26) of
    them, so it is stable from one daily run to the next. Features come from data strictly before
    each as_of_date (customer_features macro, shared with fct_customer_signals). Labels look ahead:
    churned_within_horizon = a churn episode dated in [as_of_date, as_of_date + N days), N =
    var churn_horizon_days; known only when that window is fully observed before the current
    as-of date, null otherwise.

    Incremental: a run computes only the grid dates not built yet and those whose rows can still
    change - within var feature_recompute_days (default churn_horizon_days + 7) of the current as-of
    date, where labels are still being observed. Older rows are final (their inputs all lie before
    them); events arriving later than that window need a --full-refresh. Rows that fall off the grid
    are deleted (post-hook), so an incremental run leaves the same table as a full refresh.
-#}

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

churn_events as (

    select * from {{ ref('int_customer_churn_events') }}

),

grid as (

    select cast(date_trunc('week', {{ as_of_date() }}) as date) - 7 * weeks_back.n as as_of_date
    from generate_series(0, {{ positive_int_var('feature_weeks', 26) }} - 1) as weeks_back (n)

),

pending_grid as (

    select grid.as_of_date
    from grid
    {% if is_incremental() %}
        where
            grid.as_of_date >= {{ as_of_date() }}
            - {{ positive_int_var('feature_recompute_days', churn_horizon_days() | int + 7) }}
            -- an anti-join probing the as_of_date index: no scan of the whole table
            or not exists (
                select 1
                from {{ this }} as built
                where built.as_of_date = grid.as_of_date
            )
    {% endif %}

),

spine as (

    select
        customers.customer_id,
        pending_grid.as_of_date
    from customers
    inner join pending_grid on customers.signup_at < {{ utc_midnight('pending_grid.as_of_date') }}

),

features as (

    {{ customer_features('spine', grid='pending_grid') }}

),

-- a churn dated c is in the label window [as_of_date, as_of_date + N) of the grid dates in (c - N, c]
churned_windows as (

    select distinct
        churn_events.customer_id,
        pending_grid.as_of_date
    from churn_events
    inner join pending_grid
        on
            churn_events.churn_date - {{ churn_horizon_days() }} < pending_grid.as_of_date
            and churn_events.churn_date >= pending_grid.as_of_date

),

final as (

    select
        features.*,
        case
            when features.as_of_date + {{ churn_horizon_days() }} <= {{ as_of_date() }}
                then churned_windows.customer_id is not null
        end as churned_within_horizon,
        features.as_of_date + {{ churn_horizon_days() }} <= {{ as_of_date() }} as label_known
    from features
    left join churned_windows
        on features.customer_id = churned_windows.customer_id and features.as_of_date = churned_windows.as_of_date

)

select * from final
