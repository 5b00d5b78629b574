{#- An integer dbt var with a default; anything but a positive integer stops compilation. -#}
{% macro positive_int_var(name, default) -%}
    {%- set value = var(name, default) | string | trim -%}
    {%- if not modules.re.match('^[0-9]+$', value) or value | int < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a positive integer, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ value | int }}
{%- endmacro %}
