{#-
    Pre-hook of every table, incremental model and snapshot (dbt_project.yml): sort and hash
    memory for the model's own transaction (var model_work_mem, default 512MB), so it does not
    depend on the warehouse's default. With the embedded server's 64MB, a daily run of the 1M
    bench company wrote 2.1 GB of temporary files (dim_customers, int_customer_activity,
    int_customer_rfm, int_customer_churn_events, the stage snapshot, ...; log_temp_files,
    2026-12-07). Two dbt threads, a few sorts or hashes a query: a few GB at most. The feature
    marts raise it further (customer_features_work_mem; their model config runs after this).
-#}
{% macro model_work_mem() -%}
    set local work_mem = '{{ var("model_work_mem", "512MB") }}'
{%- endmacro %}
