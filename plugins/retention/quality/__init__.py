"""Data quality: the Great Expectations gate (:mod:`retention.quality.gate`).

Importing this package is cheap: Great Expectations is imported only when a gate runs.
"""
