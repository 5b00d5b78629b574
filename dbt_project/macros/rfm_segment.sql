{#-
    Marketer-facing RFM segment from the three quintile scores (1-5, 5 best). fm = (F + M) / 2.
    First matching rule wins:
      no revenue in 365 days: new_customers if signed up < 30 days ago, else lost
      R >= 4 and F = 1                -> new_customers      (recent first purchases)
      R >= 4 and fm >= 4              -> champions          (recent, frequent, big spenders)
      R >= 3 and fm >= 3              -> loyal              (buy regularly, spend well)
      R >= 4                          -> potential_loyalist (recent, not yet frequent)
      R = 1 and fm >= 4               -> cant_lose_them     (were the best, gone quiet longest)
      R <= 2 and fm >= 3              -> at_risk            (good customers slipping away)
      R = 3                           -> needs_attention    (average, recency fading)
      R = 2                           -> hibernating        (low value, long quiet)
      otherwise                       -> lost
-#}
{% macro rfm_segment(r, f, m, has_revenue, tenure_days) -%}
    case
        when not {{ has_revenue }} and {{ tenure_days }} < 30 then 'new_customers'
        when not {{ has_revenue }} then 'lost'
        when {{ r }} >= 4 and {{ f }} = 1 then 'new_customers'
        when {{ r }} >= 4 and ({{ f }} + {{ m }}) / 2.0 >= 4 then 'champions'
        when {{ r }} >= 3 and ({{ f }} + {{ m }}) / 2.0 >= 3 then 'loyal'
        when {{ r }} >= 4 then 'potential_loyalist'
        when {{ r }} = 1 and ({{ f }} + {{ m }}) / 2.0 >= 4 then 'cant_lose_them'
        when {{ r }} <= 2 and ({{ f }} + {{ m }}) / 2.0 >= 3 then 'at_risk'
        when {{ r }} = 3 then 'needs_attention'
        when {{ r }} = 2 then 'hibernating'
        else 'lost'
    end
{%- endmacro %}
