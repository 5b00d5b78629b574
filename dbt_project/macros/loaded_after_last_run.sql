{#-
    The filter of an incremental model's read of newly loaded rows: `column` (a raw table's
    `_loaded_at`) after the newest value the model has stored in `watermark`, minus
    `margin_minutes`. A scalar subquery (an init plan, evaluated once; max() reads the index on the
    watermark column), so the BRIN index on `_loaded_at` serves the filter: the newest pages are
    read, not the whole table. An empty model (no data yet) has no watermark: every row is new.
-#}
{% macro loaded_after_last_run(column='_loaded_at', watermark='max_loaded_at', margin_minutes=0) -%}
    {{ column }} > (
        select
            coalesce(
                max(built.{{ watermark }}) - interval '1 minute' * {{ margin_minutes }},
                '-infinity'
            )
        from {{ this }} as built
    )
{%- endmacro %}
