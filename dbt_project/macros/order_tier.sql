{#- Order-count tier used for order survival in the value method: 0, 1, 2-3, 4+. -#}
{% macro order_tier(orders_count) -%}
    case
        when {{ orders_count }} >= 4 then '4+'
        when {{ orders_count }} >= 2 then '2-3'
        when {{ orders_count }} = 1 then '1'
        else '0'
    end
{%- endmacro %}
