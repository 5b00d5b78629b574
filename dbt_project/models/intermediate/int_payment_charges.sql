{{ config(post_hook=["analyze {{ this }}"]) }}

-- One row per charge (customer, subscription or order payment, due time): its attempts folded
-- into when it first failed, when it was finally paid and whether that was late.

with

payments as (

    select * from {{ ref('stg_raw__payments') }}

),

charges as (

    select
        customer_id,
        subscription_id,
        due_at,
        count(*) as attempts,
        count(*) filter (where status = 'failed') as failed_attempts,
        min(attempted_at) filter (where status = 'failed') as first_failed_at,
        min(attempted_at) filter (where status = 'succeeded') as paid_at,
        max(amount) as amount
    from payments
    group by 1, 2, 3

),

final as (

    select
        -- md5 of the group-by key's record text: unique because the key is (a group by), and the
        -- record text is unambiguous (quoted fields, null distinct from '') and independent of
        -- the session time zone (epoch); never null. So the id needs no uniqueness scan.
        md5(cast(row(customer_id, subscription_id, extract(epoch from due_at)) as text)) as charge_id,
        customer_id,
        subscription_id,
        due_at,
        cast(attempts as integer) as attempts,
        cast(failed_attempts as integer) as failed_attempts,
        first_failed_at,
        paid_at,
        -- recovered: paid after a failure; null while unpaid
        case when first_failed_at is not null and paid_at > first_failed_at then paid_at end as recovered_at,
        coalesce({{ utc_date('paid_at') }} > {{ utc_date('due_at') }}, false) as is_late,
        cast(amount as numeric(12, 2)) as amount
    from charges

)

select * from final
