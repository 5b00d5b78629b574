{#-
    Customers per business day and lifecycle stage, from the snapshot history
    (snap_customer_stage), not recomputed: the history starts with the first snapshot.

    A snapshot version holds from its as_of_date until the as_of_date of the customer's next
    version (or through the as-of date for the current version; hard deletes are ignored, as customers
    are not deleted from the CRM). Every version
    adds +1 on its first day and -1 on the day after its last, and a running sum per stage gives
    the daily count, so no customer x day grid is built. Versions replaced on the same business
    day (a rerun) cancel out.
-#}

with

snapshot_versions as (

    select * from {{ ref('snap_customer_stage') }}

),

versions as (

    select
        customer_id,
        lifecycle_stage,
        as_of_date as valid_from_date,
        lead(as_of_date) over (partition by customer_id order by dbt_valid_from) as valid_to_date
    from snapshot_versions
    where as_of_date <= {{ as_of_date() }}

),

stage_deltas as (

    select
        lifecycle_stage,
        valid_from_date as stage_date,
        1 as delta
    from versions
    where valid_to_date is null or valid_to_date > valid_from_date
    union all
    select
        lifecycle_stage,
        valid_to_date as stage_date,
        -1 as delta
    from versions
    where valid_to_date > valid_from_date

),

deltas_by_day as (

    select
        lifecycle_stage,
        stage_date,
        sum(delta) as delta
    from stage_deltas
    group by 1, 2

),

days as (

    select cast(day_start as date) as stage_date
    from generate_series(
        (select min(stage_date) from deltas_by_day),
        {{ as_of_date() }},
        interval '1 day'
    ) as series (day_start)

),

stages as (

    select distinct lifecycle_stage from versions

),

grid as (

    select
        days.stage_date,
        stages.lifecycle_stage
    from days
    cross join stages

),

counts as (

    select
        grid.stage_date,
        grid.lifecycle_stage,
        sum(coalesce(deltas_by_day.delta, 0)) over (
            partition by grid.lifecycle_stage
            order by grid.stage_date
            rows unbounded preceding
        ) as customers
    from grid
    left join deltas_by_day
        on
            grid.stage_date = deltas_by_day.stage_date
            and grid.lifecycle_stage = deltas_by_day.lifecycle_stage

),

final as (

    select
        stage_date,
        lifecycle_stage,
        cast(customers as bigint) as customers
    from counts

)

select * from final
