"""Segmented outreach: campaigns as code, guardrails, holdouts, exactly-once delivery, webhook."""
