-- partition 1 of the weekly point-in-time features (macro customer_features_weekly_part)
{{ customer_features_weekly_part(1) }}
