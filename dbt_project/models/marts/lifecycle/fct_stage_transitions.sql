{#-
    Lifecycle stage changes per business day, from the snapshot history (snap_customer_stage):
    a customer's version whose stage differs from the customer's previous version is one
    transition from_stage -> to_stage on the new version's as_of_date. A customer's first
    version is an entry (from_stage null) and is counted too.
-#}

with

snapshot_versions as (

    select * from {{ ref('snap_customer_stage') }}

),

versions as (

    select
        customer_id,
        lifecycle_stage as to_stage,
        lag(lifecycle_stage) over (partition by customer_id order by dbt_valid_from) as from_stage,
        as_of_date as transition_date
    from snapshot_versions
    where as_of_date <= {{ as_of_date() }}

),

final as (

    select
        transition_date,
        from_stage,
        to_stage,
        count(*) as transitions
    from versions
    where from_stage is distinct from to_stage
    group by 1, 2, 3

)

select * from final
