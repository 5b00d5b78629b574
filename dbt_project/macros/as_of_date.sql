{#-
    The business "today" of every as-of computation, as a SQL date expression.
    var('as_of_date') (env RETENTION_AS_OF) cast to date when set, else current_date.
    A value that is not an ISO date (YYYY-MM-DD) stops compilation with a clear error.
-#}
{% macro as_of_date() -%}
    {%- set raw = var('as_of_date', '') -%}
    {%- set value = '' if raw is none else (raw | string | trim) -%}
    {%- if value in ('', 'None', 'none') -%}
        current_date
    {%- elif modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', value) -%}
        cast('{{ value }}' as date)
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "var 'as_of_date' (env RETENTION_AS_OF) must be an ISO date YYYY-MM-DD or empty, got '"
            ~ value ~ "'") }}
    {%- endif -%}
{%- endmacro %}
