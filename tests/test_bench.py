"""The dbt benchmark's verdict line: what BENCHMARKS.md says of the targets comes from the numbers."""

from __future__ import annotations

from retention.bench.bench_dbt import TARGET_DAY_S, TARGET_FULL_S, DbtRun, SizeResult, _status


def _result(customers: int, full_s: float, day_s: float) -> SizeResult:
    return SizeResult(
        customers=customers,
        rows={"usage_events": 0, "orders": 0},
        generate_s=0.0,
        load_s=0.0,
        full=DbtRun(seconds=full_s),
        day=DbtRun(seconds=day_s),
        held_rows=0,
        materializations={},
        indexes={},
    )


def test_status_names_each_target_met_or_not_from_the_1m_size() -> None:
    lines = _status([_result(100_000, 9_999.0, 9_999.0), _result(1_000_000, TARGET_FULL_S, TARGET_DAY_S + 1)])
    assert lines[0] == (
        f"Targets, 1M customers: full build {TARGET_FULL_S:.0f} s (target {TARGET_FULL_S:.0f}): met; "
        f"one day {TARGET_DAY_S + 1:.0f} s (target {TARGET_DAY_S:.0f}): **not met**."
    )


def test_status_is_empty_without_the_1m_size() -> None:
    assert _status([_result(5_000, 1.0, 1.0)]) == []
