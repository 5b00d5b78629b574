"""Regenerate the README's generated sections (settings table, raw contract) from their sources.

python -m retention.docs          # rewrite README.md in place
python -m retention.docs --check  # exit 1 if README.md is out of date (used by the tests)
"""

from __future__ import annotations

import argparse
import re
import sys

from retention.contract import contract_markdown
from retention.settings import PROJECT_ROOT, settings_table_markdown

README = PROJECT_ROOT / "README.md"
GENERATED = {"settings": settings_table_markdown, "contract": contract_markdown}


def render(text: str) -> str:
    for name, producer in GENERATED.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- generated:{name} --> section")
        text = pattern.sub(lambda m, p=producer: m.group(1) + p().rstrip() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention.docs")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md is out of date: run `python -m retention.docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
