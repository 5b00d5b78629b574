{#-
    The rows an incremental (customer_id, UTC day) aggregate must read: the CTEs new_rows,
    new_days, rebuilt_days and scoped_rows, to be placed inside a model's `with` (each followed by
    a comma). `source` is the import CTE of the raw rows (declared `not materialized`: it is read
    twice), `time_column` their timestamp, `day_column` the model's day column.
    - new_rows: the rows loaded after the model's stored max_loaded_at (loaded_after_last_run).
    - a (customer, day) not in the model yet is aggregated from its new rows alone: every older
      row of it would have been aggregated already (the daily case: no other row is read);
    - a (customer, day) already in the model (a late or re-delivered row) is re-aggregated from
      ALL its rows: a scan of the source, behind an uncorrelated exists (a one-time filter), so it
      runs only when there is such a day.
    Both replace the model's rows (delete+insert on customer_id, day_column): equal to a full
    refresh.
-#}
{% macro customer_day_scope(source, time_column, day_column, margin_minutes=0) %}

    new_rows as (

        select *
        from {{ source }}
        where {{ loaded_after_last_run(margin_minutes=margin_minutes) }}

    ),

    new_days as (

        select distinct
            customer_id,
            {{ utc_date(time_column) }} as {{ day_column }}
        from new_rows

    ),

    -- days aggregated before (unique index probes)
    rebuilt_days as (

        select
            new_days.customer_id,
            new_days.{{ day_column }}
        from new_days
        where exists (
            select 1
            from {{ this }} as built
            where
                built.customer_id = new_days.customer_id
                and built.{{ day_column }} = new_days.{{ day_column }}
        )

    ),

    scoped_rows as (

        select new_rows.*
        from new_rows
        where
            not exists (
                select 1
                from rebuilt_days
                where
                    rebuilt_days.customer_id = new_rows.customer_id
                    and rebuilt_days.{{ day_column }} = {{ utc_date('new_rows.' ~ time_column) }}
            )

        union all

        select all_rows.*
        from {{ source }} as all_rows
        inner join rebuilt_days
            on
                all_rows.customer_id = rebuilt_days.customer_id
                and all_rows.{{ time_column }} >= {{ utc_midnight('rebuilt_days.' ~ day_column) }}
                and all_rows.{{ time_column }} < {{ utc_midnight('rebuilt_days.' ~ day_column ~ ' + 1') }}
        where exists (select any_rebuilt.customer_id from rebuilt_days as any_rebuilt)

    )

{%- endmacro %}
