"""``retention train`` / ``retention score`` / ``retention models``: the churn model's command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _fail(exc: Exception) -> int:
    print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


def train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="retention train", description="train challengers, promote if better"
    )
    parser.parse_args(argv)
    from ml.errors import ModelError
    from ml.train import train_and_maybe_promote

    try:
        _print_json(train_and_maybe_promote())
    except ModelError as exc:
        return _fail(exc)
    return 0


def score_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="retention score", description="score customers with the champion")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="as-of date (YYYY-MM-DD)")
    parser.add_argument("--no-monitor", action="store_true", help="skip the drift/realised-AUC report")
    args = parser.parse_args(argv)
    from ml.errors import ModelError
    from ml.monitor import monitor
    from ml.score import score

    try:
        result = score(as_of=args.as_of)
        if not args.no_monitor:
            result["monitoring"] = monitor(as_of=date.fromisoformat(result["as_of_date"]))
        _print_json(result)
    except ModelError as exc:
        return _fail(exc)
    return 0


def models_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="retention models", description="the model registry")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="print the registry")
    sub.add_parser("rollback", help="retire the champion and restore the previous one")
    sub.add_parser("monitor", help="write and print the monitoring report of the latest scores")
    card = sub.add_parser("card", help="print a version's model card")
    card.add_argument("version")
    args = parser.parse_args(argv)
    from ml import registry
    from ml.errors import ModelError
    from retention.db import connect

    try:
        if args.action == "list":
            with connect() as conn:
                print(registry.format_table(registry.list_models(conn)))
        elif args.action == "rollback":
            with connect() as conn:
                _print_json(registry.rollback(conn))
        elif args.action == "monitor":
            from ml.monitor import monitor

            _print_json(monitor())
        else:
            path = registry.models_dir() / args.version / "model_card.md"
            if not path.is_file():
                print(f"error: no model card for version {args.version!r} ({path})", file=sys.stderr)
                return 1
            print(path.read_text())
    except ModelError as exc:
        return _fail(exc)
    return 0
