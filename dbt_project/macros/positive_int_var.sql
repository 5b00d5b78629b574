{#- An integer dbt var with a default; anything but a positive integer (or, with allow_zero, a non-negative one) stops compilation. -#}
{% macro positive_int_var(name, default, allow_zero=false) -%}
    {%- set value = var(name, default) | string | trim -%}
    {%- set minimum = 0 if allow_zero else 1 -%}
    {%- if not modules.re.match('^[0-9]+$', value) or value | int < minimum -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a " ~ ("non-negative" if allow_zero else "positive")
            ~ " integer, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ value | int }}
{%- endmacro %}
