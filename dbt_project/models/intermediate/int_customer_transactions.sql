{{
    config(
        post_hook=[
            "{{ ensure_index(['customer_id', 'transaction_date']) }}"
        ]
    )
}}

-- Every revenue event of a customer: shop orders and successful subscription charges
-- (order payments are not counted twice: they carry no subscription_id). RFM and value use it.

with

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

payments as (

    select * from {{ ref('stg_raw__payments') }}

),

order_revenue as (

    select
        order_id as transaction_id,
        customer_id,
        'order' as revenue_source,
        ordered_at as transacted_at,
        amount
    from orders

),

subscription_revenue as (

    select
        payment_id as transaction_id,
        customer_id,
        'subscription' as revenue_source,
        attempted_at as transacted_at,
        amount
    from payments
    where status = 'succeeded' and subscription_id is not null

),

unioned as (

    select * from order_revenue
    union all
    select * from subscription_revenue

),

final as (

    select
        transaction_id,
        customer_id,
        revenue_source,
        transacted_at,
        {{ utc_date('transacted_at') }} as transaction_date,
        amount
    from unioned

)

select * from final
