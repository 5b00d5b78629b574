"""Campaigns as code: load ``campaigns.yml``, validate it, return typed objects.

Validation has two layers, and every error names the campaign and the field:

* the JSON Schema in ``campaigns_schema.json`` (types, ranges, unknown fields, required fields);
* cross-field rules the schema cannot express: unique campaign and step ids, templates that exist
  in the delivery layer's ``templates/`` folder (``<name>.subject``, ``.txt``, ``.html``), audience builders that exist (``audiences.BUILDERS``) with the parameters they
  accept, the step layout each builder needs, and "no discount" rules (transactional messages and
  involuntary churn never carry an offer).

All problems are collected and raised together in one :class:`CampaignConfigError`, e.g.::

    campaign 'save_offers': field 'holdout_share' must be <= 0.5, got 0.9
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from retention.settings import get_settings

SCHEMA_PATH = Path(__file__).with_name("campaigns_schema.json")
TEMPLATES_DIR = Path(__file__).with_name("templates")
TEMPLATE_PARTS = ("subject", "txt", "html")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: reasons that must never be answered with a discount
NO_DISCOUNT_REASONS = frozenset({"involuntary"})


class CampaignConfigError(ValueError):
    """The campaigns file is invalid. ``problems`` lists every error, each naming campaign and field."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid campaigns config{where}:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Offer:
    code: str
    cost: float


@dataclass(frozen=True)
class Step:
    id: str
    template: str
    offer: Offer | None = None
    reasons: tuple[str, ...] = ()
    offset_days: int | None = None
    after_days: int | None = None


@dataclass(frozen=True)
class Campaign:
    id: str
    description: str
    builder: str
    params: dict[str, Any]
    priority: int
    channel: str
    category: str  # marketing | transactional
    holdout_share: float
    schedule_days: frozenset[str]  # subset of WEEKDAYS
    steps: tuple[Step, ...]
    global_holdout: bool = True
    let_go_reasons: tuple[str, ...] = ()
    route_to_dunning_reasons: tuple[str, ...] = ()

    def runs_on(self, day: date) -> bool:
        return WEEKDAYS[day.weekday()] in self.schedule_days

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"campaign {self.id!r} has no step {step_id!r}")


@dataclass(frozen=True)
class TeamAlertConfig:
    risk_tiers: tuple[str, ...] = ("high", "medium")
    key_account_team: str = "account_managers"
    payment_failed_team: str = "billing"
    reason_routes: dict[str, str] = field(
        default_factory=lambda: {"service_failure": "support", "involuntary": "billing"}
    )


@dataclass(frozen=True)
class CampaignConfig:
    campaigns: tuple[Campaign, ...]
    team_alerts: TeamAlertConfig
    source: str = ""

    def campaign(self, campaign_id: str) -> Campaign:
        for c in self.campaigns:
            if c.id == campaign_id:
                return c
        raise KeyError(f"no campaign {campaign_id!r}")


# --- validation --------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _fmt_path(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _describe(error: Any) -> str:  # jsonschema.ValidationError
    v, inst, expected = error.validator, error.instance, error.validator_value
    if v == "maximum":
        return f"must be <= {expected}, got {inst!r}"
    if v == "minimum":
        return f"must be >= {expected}, got {inst!r}"
    if v == "type":
        return f"must be of type {expected}, got {_type_name(inst)} {inst!r}"
    if v == "enum":
        return f"must be one of {expected}, got {inst!r}"
    if v == "const":
        return f"must be {expected!r}, got {inst!r}"
    if v == "pattern":
        return f"must match {expected!r}, got {inst!r}"
    if v == "minItems":
        return f"must have at least {expected} item(s)"
    if v == "uniqueItems":
        return "must not repeat items"
    if v == "minLength":
        return "must not be empty"
    if v == "oneOf":
        return f"has an invalid value {inst!r}"
    return error.message


def _schema_problems(raw: Any) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_schema())
    campaigns = raw.get("campaigns") if isinstance(raw, dict) else None
    problems: list[str] = []
    for error in sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        owner = "config"
        if len(path) >= 2 and path[0] == "campaigns" and isinstance(path[1], int):
            item = campaigns[path[1]] if isinstance(campaigns, list) else None
            cid = item.get("id") if isinstance(item, dict) else None
            owner = f"campaign {cid!r}" if isinstance(cid, str) else f"campaign #{path[1] + 1}"
            path = path[2:]
        elif path and path[0] == "team_alerts":
            owner, path = "team_alerts", path[1:]
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - allowed):
                problems.append(f"{owner}: unknown field {_fmt_path([*path, extra])!r}")
            continue
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            for name in missing:
                problems.append(f"{owner}: missing required field {_fmt_path([*path, name])!r}")
            continue
        where = f"field {_fmt_path(path)!r}" if path else "the file"
        problems.append(f"{owner}: {where} {_describe(error)}")
    return problems


def known_templates(folder: Path | None = None) -> set[str]:
    """Template names with all three parts (.subject, .txt, .html) in the templates folder."""
    folder = folder or TEMPLATES_DIR
    if not folder.is_dir():
        return set()
    names = {p.stem for p in folder.glob("*.subject") if not p.name.startswith("_")}
    return {n for n in names if all((folder / f"{n}.{part}").is_file() for part in TEMPLATE_PARTS)}


def _semantic_problems(raw: dict[str, Any], templates_dir: Path | None) -> list[str]:
    from retention.outreach.audiences import BUILDERS

    problems: list[str] = []
    templates = known_templates(templates_dir)
    seen: dict[str, int] = {}
    for index, c in enumerate(raw["campaigns"]):
        cid = c["id"]
        owner = f"campaign {cid!r}"
        if cid in seen:
            problems.append(
                f"{owner}: field 'id' is duplicated (campaigns #{seen[cid] + 1} and #{index + 1})"
            )
        seen.setdefault(cid, index)
        builder_name = c["audience"]["builder"]
        builder = BUILDERS.get(builder_name)
        if builder is None:
            problems.append(
                f"{owner}: field 'audience.builder' names unknown builder {builder_name!r} "
                f"(known: {', '.join(sorted(BUILDERS))})"
            )
        else:
            for name, value in (c["audience"].get("params") or {}).items():
                if name not in builder.params:
                    problems.append(
                        f"{owner}: unknown field 'audience.params.{name}' for builder {builder_name!r} "
                        f"(known: {', '.join(sorted(builder.params)) or 'none'})"
                    )
                    continue
                kind = builder.params[name]
                if not _param_ok(value, kind):
                    problems.append(
                        f"{owner}: field 'audience.params.{name}' must be of type {kind}, "
                        f"got {_type_name(value)} {value!r}"
                    )
            problems += [f"{owner}: {p}" for p in builder.check_steps(c)]
        step_ids: set[str] = set()
        campaign_offer = c.get("offer")
        no_discount = set(c.get("route_to_dunning_reasons") or []) | NO_DISCOUNT_REASONS
        for si, step in enumerate(c["steps"]):
            fld = f"steps[{si}]"
            if step["id"] in step_ids:
                problems.append(f"{owner}: field '{fld}.id' is duplicated ({step['id']!r})")
            step_ids.add(step["id"])
            if step["template"] not in templates:
                problems.append(
                    f"{owner}: field '{fld}.template' names unknown template {step['template']!r} "
                    f"(no .subject/.txt/.html in {templates_dir or TEMPLATES_DIR})"
                )
            offer = step.get("offer", campaign_offer)
            if offer and c["category"] == "transactional":
                problems.append(
                    f"{owner}: field '{fld}.offer' is not allowed: transactional messages carry no offer"
                )
            bad = sorted(set(step.get("reasons") or []) & no_discount)
            if offer and bad:
                problems.append(
                    f"{owner}: field '{fld}.offer' is not allowed for reason(s) {bad}: "
                    f"involuntary churn is never answered with a discount"
                )
    return problems


def _param_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "str":
        return isinstance(value, str)
    return True


def validate_raw(raw: Any, source: str = "", templates_dir: Path | None = None) -> None:
    """Raise :class:`CampaignConfigError` listing every problem of a parsed campaigns document."""
    problems = _schema_problems(raw)
    if not problems:
        problems = _semantic_problems(raw, templates_dir)
    if problems:
        raise CampaignConfigError(problems, source)


def _build(raw: dict[str, Any], source: str) -> CampaignConfig:
    campaigns: list[Campaign] = []
    for c in raw["campaigns"]:
        default_offer = c.get("offer")
        steps = []
        for s in c["steps"]:
            offer = s.get("offer", default_offer)
            steps.append(
                Step(
                    id=s["id"],
                    template=s["template"],
                    offer=Offer(offer["code"], float(offer["cost"])) if offer else None,
                    reasons=tuple(s.get("reasons") or ()),
                    offset_days=s.get("offset_days"),
                    after_days=s.get("after_days"),
                )
            )
        schedule = c["schedule"]
        days = frozenset(WEEKDAYS) if schedule == "daily" else frozenset(schedule["days"])
        campaigns.append(
            Campaign(
                id=c["id"],
                description=" ".join(c["description"].split()),
                builder=c["audience"]["builder"],
                params=dict(c["audience"].get("params") or {}),
                priority=int(c["priority"]),
                channel=c["channel"],
                category=c["category"],
                holdout_share=float(c["holdout_share"]),
                schedule_days=days,
                steps=tuple(steps),
                global_holdout=bool(c.get("global_holdout", True)),
                let_go_reasons=tuple(c.get("let_go_reasons") or ()),
                route_to_dunning_reasons=tuple(c.get("route_to_dunning_reasons") or ()),
            )
        )
    ta = raw.get("team_alerts") or {}
    defaults = TeamAlertConfig()
    team = TeamAlertConfig(
        risk_tiers=tuple(ta.get("risk_tiers", defaults.risk_tiers)),
        key_account_team=ta.get("key_account_team", defaults.key_account_team),
        payment_failed_team=ta.get("payment_failed_team", defaults.payment_failed_team),
        reason_routes=dict(ta.get("reason_routes", defaults.reason_routes)),
    )
    return CampaignConfig(tuple(campaigns), team, source)


def parse_campaigns(text: str, source: str = "<string>", templates_dir: Path | None = None) -> CampaignConfig:
    """Parse and validate campaigns YAML text."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CampaignConfigError([f"config: not valid YAML: {exc}"], source) from None
    if not isinstance(raw, dict):
        raise CampaignConfigError([f"config: the file must be a mapping, got {_type_name(raw)}"], source)
    validate_raw(raw, source, templates_dir)
    return _build(raw, source)


def load_campaigns(path: str | Path | None = None) -> CampaignConfig:
    """Load and validate the campaigns file (default: setting ``RETENTION_CAMPAIGNS_FILE``)."""
    p = Path(path) if path is not None else Path(get_settings().campaigns_file)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CampaignConfigError([f"config: cannot read {p}: {exc.strerror}"], str(p)) from None
    return parse_campaigns(text, str(p))
