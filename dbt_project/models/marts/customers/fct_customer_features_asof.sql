{{ config(materialized='view') }}

{#-
    Training / scoring frame: the weekly point-in-time features (int_customer_features_weekly:
    customer x the last var feature_weeks Mondays, data strictly before each as_of_date) with the
    label, which looks ahead by design: churned_within_horizon = a churn episode dated in
    [as_of_date, as_of_date + N days), N = var churn_horizon_days; known only when that window is
    fully observed before the current as-of date, null otherwise.

    A view: the labels change every day (a window closes, a churn is dated) while the features do
    not, so they are joined at read time from the churn episodes (a few rows per churner) instead
    of rewriting millions of feature rows daily. computed_at (when the row's features were last
    computed) comes along from the features table.
-#}

with

features as (

    select * from {{ ref('int_customer_features_weekly') }}

),

churn_events as (

    select * from {{ ref('int_customer_churn_events') }}

),

grid as (

    {{ feature_grid() }}

),

-- a churn dated c is in the label window [as_of_date, as_of_date + N) of the grid dates in (c - N, c]
churned_windows as (

    select distinct
        churn_events.customer_id,
        grid.as_of_date
    from churn_events
    inner join grid
        on
            churn_events.churn_date - {{ churn_horizon_days() }} < grid.as_of_date
            and churn_events.churn_date >= grid.as_of_date

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
