{#-
    Pre-hook of the incremental runs of int_customer_transactions: delete the subscription revenue
    rows of payments re-delivered (loaded after the table's watermark) as something that is no
    longer revenue - failed or refunded, or without a subscription. The model's delete+insert
    cannot: such a payment yields no row, so nothing would replace its old one. Reads the same
    newly loaded payments as the model (BRIN index on _loaded_at; primary key probes into the
    table's unique index).
-#}
{% macro drop_withdrawn_subscription_revenue() -%}
    delete from {{ this }} as transactions
    using {{ ref('stg_raw__payments') }} as payments
    where
        {{ loaded_after_last_run('payments._loaded_at') }}
        and not (payments.status = 'succeeded' and payments.subscription_id is not null)
        and transactions.transaction_id = payments.payment_id
        and transactions.revenue_source = 'subscription'
{%- endmacro %}
