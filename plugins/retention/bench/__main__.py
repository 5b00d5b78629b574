"""Run the benchmarks and write BENCHMARKS.md (machine and date included).

    python -m retention.bench [--quick] [--only AREA ...]

With ``--only``, the other areas' sections already in BENCHMARKS.md are kept.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import re
import sys
import time
import traceback
from datetime import UTC, datetime

from retention.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "BENCHMARKS.md"
_SECTION = re.compile(r"<!-- bench:(?P<area>[\w-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=area) -->", re.S)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def areas() -> list[str]:
    import retention.bench as pkg

    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(pkg.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention.bench")
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    parser.add_argument("--only", nargs="*", default=None, help="areas to run")
    args = parser.parse_args(argv)
    selected = args.only or areas()
    existing = {m["area"]: m["body"] for m in _SECTION.finditer(OUT.read_text())} if OUT.exists() else {}
    failed = 0
    for area in selected:
        started = time.perf_counter()
        print(f"== bench {area}", flush=True)
        try:
            body = importlib.import_module(f"retention.bench.bench_{area}").run(args.quick)
        except Exception:  # a broken benchmark is reported, the others still run
            failed += 1
            body = f"### {area}\n\nFAILED:\n\n```\n{traceback.format_exc()[-2000:]}\n```\n"
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        mode = "quick" if args.quick else "full"
        existing[area] = (
            f"{body.rstrip()}\n\n_Run {stamp} ({mode}, {time.perf_counter() - started:.0f} s)._\n"
        )
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m retention.bench`). Targets are the issues' targets; "
        "no test is timed.\n\n"
        f"Machine: {machine()}.\n\n"
    )
    sections = "\n".join(f"<!-- bench:{a} -->\n{existing[a]}<!-- /bench:{a} -->\n" for a in sorted(existing))
    OUT.write_text(header + sections)
    print(f"wrote {OUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
