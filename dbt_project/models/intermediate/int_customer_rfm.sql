{#-
    RFM over the 365 days before the as-of date, on every revenue event (orders and successful
    subscription charges). Customers with revenue in the window get quintile scores (ntile(5),
    5 = best: most recent, most frequent, highest spend; ties broken by customer_id); customers
    without revenue in the window score 1/1/1. The segment is derived by rfm_segment().
-#}

with

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

transactions as (

    select * from {{ ref('int_customer_transactions') }}

),

window_revenue as (

    select
        customer_id,
        {{ as_of_date() }} - max(transaction_date) as recency_days,
        count(*) as frequency,
        sum(amount) as monetary
    from transactions
    where
        transaction_date >= {{ as_of_date() }} - 365
        and transaction_date < {{ as_of_date() }}
    group by 1

),

scored as (

    select
        customer_id,
        recency_days,
        frequency,
        monetary,
        ntile(5) over (order by recency_days desc, customer_id asc) as recency_score,
        ntile(5) over (order by frequency asc, customer_id asc) as frequency_score,
        ntile(5) over (order by monetary asc, customer_id asc) as monetary_score
    from window_revenue

),

joined as (

    select
        customers.customer_id,
        scored.recency_days,
        {{ as_of_date() }} - {{ utc_date('customers.signup_at') }} as tenure_days,
        coalesce(scored.frequency, 0) as frequency,
        coalesce(scored.monetary, 0) as monetary,
        coalesce(scored.recency_score, 1) as recency_score,
        coalesce(scored.frequency_score, 1) as frequency_score,
        coalesce(scored.monetary_score, 1) as monetary_score,
        scored.customer_id is not null as has_revenue_365d
    from customers
    left join scored on customers.customer_id = scored.customer_id
    where customers.signup_at < {{ utc_midnight(as_of_date()) }}

),

final as (

    select
        customer_id,
        cast(recency_days as integer) as rfm_recency_days,
        cast(frequency as integer) as rfm_frequency,
        cast(monetary as numeric(14, 2)) as rfm_monetary,
        cast(recency_score as integer) as rfm_recency_score,
        cast(frequency_score as integer) as rfm_frequency_score,
        cast(monetary_score as integer) as rfm_monetary_score,
        {{ rfm_segment('recency_score', 'frequency_score', 'monetary_score', 'has_revenue_365d', 'tenure_days') }}
            as rfm_segment
    from joined

)

select * from final
