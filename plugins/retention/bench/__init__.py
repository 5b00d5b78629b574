"""Benchmarks. Each ``bench_<area>.py`` exposes ``run(quick: bool) -> str`` (a Markdown section)."""
