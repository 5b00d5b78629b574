{#-
    Pre-hook of every intermediate and mart model and the snapshot (dbt_project.yml; on the
    union view int_customer_features_weekly it is a harmless no-op): sort and hash
    memory for the model's own transaction (var model_work_mem, default 256MB), so the models do
    not depend on the warehouse's default (a stock PostgreSQL has 4MB, and spills every sort and
    hash of a 1M-customer company to disk). On the embedded server (64MB) a daily run of the 1M
    bench company wrote 2.1 GB of temporary files (dim_customers, int_customer_activity,
    int_customer_rfm, int_customer_churn_events, the stage snapshot, ...; log_temp_files,
    2026-12-07); with this hook none but one hash aggregate of fct_customer_signals, whose jsonb
    states PostgreSQL sizes by a fixed guess. Two dbt threads, a few sorts or hashes a query: a
    few GB at most. It is not "more is faster": a larger hash table has worse cache locality
    (fct_customer_signals ran 1-3 s slower at 1GB than at 64-512MB). The weekly feature parts
    raise it for their window sort (customer_features_work_mem; their config runs after this).
-#}
{% macro model_work_mem() -%}
    set local work_mem = '{{ var("model_work_mem", "256MB") }}'
{%- endmacro %}
