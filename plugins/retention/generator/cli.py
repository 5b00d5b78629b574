"""``retention generate OUT_DIR --customers N --seed S [--end-date D] [--format F] [--chunk-customers K]``."""

from __future__ import annotations

import argparse
import sys

from retention.generator.api import FORMATS, GeneratorError, generate, parse_end_date


def _end_date(text: str) -> object:
    try:
        return parse_end_date(text)
    except GeneratorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retention generate",
        description="Write a seeded, realistic subscription-plus-shop company as raw contract files "
        "(with the planted churn reasons in OUT_DIR/ground_truth/).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (replaced atomically)")
    parser.add_argument("--customers", type=int, required=True, help="number of customers (>= 1)")
    parser.add_argument("--seed", type=int, required=True, help="random seed (>= 0); same seed, same bytes")
    parser.add_argument(
        "--end-date",
        type=_end_date,
        default=None,
        help="last day of history is the day before this (YYYY-MM-DD; default: today, UTC)",
    )
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="file format (default parquet)")
    parser.add_argument(
        "--chunk-customers",
        type=int,
        default=50000,
        help="customers simulated and written per chunk (memory bound; default 50000)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = generate(
            args.out_dir,
            customers=args.customers,
            seed=args.seed,
            end_date=args.end_date,
            fmt=args.format,
            chunk_customers=args.chunk_customers,
        )
    except GeneratorError as exc:
        print(f"retention generate: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
