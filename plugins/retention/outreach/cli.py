"""``retention outreach <subcommand>``: plan, dry-run, digest, why, validate, batches (+ delivery's
preview and send).

Subcommands are a dict of ``name -> ("module", "function", help)``, imported lazily when run, so
each part of outreach registers its own without importing the others. Each function takes
``argv: list[str]`` and returns an exit code.

HOOK for the delivery layer: add ``send`` (and, if you render templates, repoint ``preview``) to
:data:`SUBCOMMANDS` with a line like ``"send": ("retention.outreach.outbox", "send_main", "...")``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": (
        "retention.outreach.cli",
        "plan_main",
        "decide today's outreach, write the decision log, enqueue",
    ),
    "dry-run": (
        "retention.outreach.cli",
        "dry_run_main",
        "decide today's outreach, write nothing, show samples",
    ),
    "digest": ("retention.outreach.cli", "digest_main", "write and deliver the human teams' daily digests"),
    "why": ("retention.outreach.cli", "why_main", "every decision about one customer on one day"),
    "validate": ("retention.outreach.cli", "validate_main", "validate campaigns.yml"),
    "batches": ("retention.outreach.cli", "batches_main", "batch keys with pending messages for a day"),
    # --- delivery layer (hook: the delivery engineer adds or repoints its subcommands here)
    "preview": ("retention.outreach.render", "preview_main", "render one template with a context"),
    "send": ("retention.outreach.outbox", "send_main", "send pending outbox batches exactly once"),
}


def _day_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"retention outreach {prog}", description=description)
    p.add_argument("--date", default=None, help="ISO day (default: RETENTION_AS_OF or today)")
    return p


def _error(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def plan_main(argv: list[str]) -> int:
    from retention.outreach.campaigns import CampaignConfigError
    from retention.outreach.planner import PlanError, plan_day

    p = _day_parser("plan", "Decide today's outreach, write the decision log and enqueue the messages.")
    p.add_argument("--dry-run", action="store_true", help="decide but write nothing")
    args = p.parse_args(argv)
    try:
        result = plan_day(day=args.date, dry_run=args.dry_run)
    except (CampaignConfigError, PlanError, ValueError) as exc:
        return _error(exc)
    print(result.summary())
    print(f"enqueued with: {result.enqueued_with}{' (dry run: rolled back)' if args.dry_run else ''}")
    return 0


def dry_run_main(argv: list[str]) -> int:
    from retention.outreach.campaigns import CampaignConfigError
    from retention.outreach.planner import PlanError, plan_day

    p = _day_parser("dry-run", "Dry-run the plan and show sample messages (nothing is written).")
    p.add_argument("--limit", type=int, default=5, help="sample messages per batch")
    args = p.parse_args(argv)
    try:
        result = plan_day(day=args.date, dry_run=True)
    except (CampaignConfigError, PlanError, ValueError) as exc:
        return _error(exc)
    print(result.summary())
    for key, msgs in sorted(result.batches.items()):
        print(f"\n[{key}] {len(msgs)} message(s)")
        for m in msgs[: args.limit]:
            offer = f" offer={m.offer_code}" if m.offer_code else ""
            print(f"  {m.customer_id} {m.template} send_at={m.send_at.isoformat()}{offer}")
    return 0


def digest_main(argv: list[str]) -> int:
    from retention.outreach.campaigns import CampaignConfigError
    from retention.outreach.team_alerts import TeamAlertError, run_digests
    from retention.settings import SettingsError

    p = _day_parser("digest", "Write (and deliver) the human teams' daily digests.")
    p.add_argument("--no-send", action="store_true", help="write the files only")
    args = p.parse_args(argv)
    try:
        result = run_digests(day=args.date, send=not args.no_send)
    except (CampaignConfigError, TeamAlertError, SettingsError, ValueError) as exc:
        return _error(exc)
    if result.note:
        print(result.note)
    for team, customers in sorted(result.teams.items()):
        print(
            f"{team}: {len(customers)} customer(s) -> {result.paths[team]} [{result.delivered.get(team, '')}]"
        )
    return 0


def why_main(argv: list[str]) -> int:
    from retention.outreach.planner import why

    p = _day_parser("why", "Why did this customer get (or not get) a message? Every decision of the day.")
    p.add_argument("customer_id")
    args = p.parse_args(argv)
    try:
        rows = why(args.customer_id, args.date)
    except ValueError as exc:
        return _error(exc)
    if not len(rows):
        print(f"no decisions about customer {args.customer_id!r} on that day: no campaign considered them")
        return 0
    for r in rows.to_dict("records"):
        state = f" [outbox: {r['outbox_state']}]" if isinstance(r["outbox_state"], str) else ""
        print(
            f"{r['decided_on']} {r['campaign_id']}/{r['step']}: {r['outcome']} — {r['detail'] or ''}{state}"
        )
    return 0


def validate_main(argv: list[str]) -> int:
    from retention.outreach.campaigns import CampaignConfigError, load_campaigns

    p = argparse.ArgumentParser(prog="retention outreach validate", description="Validate campaigns.yml.")
    p.add_argument("path", nargs="?", default=None)
    args = p.parse_args(argv)
    try:
        config = load_campaigns(args.path)
    except CampaignConfigError as exc:
        return _error(exc)
    for c in config.campaigns:
        print(f"ok {c.id}: {len(c.steps)} step(s), priority {c.priority}, holdout {c.holdout_share:.0%}")
    return 0


def batches_main(argv: list[str]) -> int:
    from retention.outreach.planner import batches_for_day

    args = _day_parser("batches", "Batch keys with pending messages planned on a day.").parse_args(argv)
    for key in batches_for_day(day=args.date):
        print(key)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"} or argv[0] not in SUBCOMMANDS:
        print("usage: retention outreach <subcommand> [args]\n")
        for name, (_, _, text) in SUBCOMMANDS.items():
            print(f"  {name:10} {text}")
        return 0 if not argv or argv[0] in {"-h", "--help", "help"} else 2
    module, func, _ = SUBCOMMANDS[argv[0]]
    try:
        target = getattr(importlib.import_module(module), func)
    except (ModuleNotFoundError, AttributeError) as exc:
        print(
            f"error: subcommand {argv[0]!r} needs {module}.{func}, which is not available: {exc}",
            file=sys.stderr,
        )
        return 2
    return int(target(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
