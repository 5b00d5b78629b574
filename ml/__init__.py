"""Churn model: training, calibration, reason codes, registry, scoring and monitoring.

Thin API the DAGs call (each imports its heavy dependencies lazily, this package imports nothing heavy):

* ``ml.train.train_and_maybe_promote(url=None) -> dict``
* ``ml.score.score(url=None, as_of=None) -> dict``
* ``ml.monitor.monitor(url=None) -> dict``
* ``ml.registry.has_champion(url=None) -> bool``

CLI: ``retention train``, ``retention score [--as-of DATE]``,
``retention models list|rollback|monitor|card VERSION`` (ml/cli.py).
"""
