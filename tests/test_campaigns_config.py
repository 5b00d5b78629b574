"""Campaigns as code: the shipped file is valid; every bad config is an error naming campaign and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from retention.outreach.campaigns import CampaignConfigError, load_campaigns, parse_campaigns


def real_raw() -> dict[str, Any]:
    from retention.settings import get_settings

    return yaml.safe_load(Path(get_settings().campaigns_file).read_text())


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(CampaignConfigError) as info:
        parse_campaigns(yaml.safe_dump(raw), "bad.yml")
    assert "bad.yml" in str(info.value)
    return info.value.problems


def campaign(raw: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in raw["campaigns"] if c["id"] == cid)


def test_the_shipped_campaigns_file_is_valid() -> None:
    config = load_campaigns()
    ids = [c.id for c in config.campaigns]
    assert ids == ["dunning", "renewal_sequence", "proactive_service", "save_offers", "winback"]
    save = config.campaign("save_offers")
    assert save.holdout_share == 0.15 and save.category == "marketing" and save.channel == "email"
    assert save.step("discount").offer is not None and save.step("discount").offer.cost == 12.0
    assert save.let_go_reasons == ("moved_no_need",) and save.route_to_dunning_reasons == ("involuntary",)
    assert config.campaign("dunning").category == "transactional"
    assert all(s.offer is None for s in config.campaign("dunning").steps)
    renewal = config.campaign("renewal_sequence")
    assert [(s.id, s.offset_days) for s in renewal.steps] == [("t-7", -7), ("t-1", -1), ("t0", 0), ("t+7", 7)]
    assert config.campaign("winback").schedule_days == frozenset({"tue", "thu"})
    assert config.team_alerts.reason_routes["service_failure"] == "support"
    for c in config.campaigns:  # every campaign keeps a holdout except the transactional one
        assert c.holdout_share > 0 or c.category == "transactional"


def test_holdout_share_out_of_range_names_campaign_and_field() -> None:
    raw = real_raw()
    campaign(raw, "save_offers")["holdout_share"] = 0.9
    assert "campaign 'save_offers': field 'holdout_share' must be <= 0.5, got 0.9" in problems_of(raw)
    campaign(raw, "save_offers")["holdout_share"] = -0.1
    assert "campaign 'save_offers': field 'holdout_share' must be >= 0, got -0.1" in problems_of(raw)


def test_unknown_field() -> None:
    raw = real_raw()
    campaign(raw, "winback")["holdout"] = 0.1
    campaign(raw, "dunning")["steps"][0]["offer_code"] = "X"
    problems = problems_of(raw)
    assert "campaign 'winback': unknown field 'holdout'" in problems
    assert "campaign 'dunning': unknown field 'steps[0].offer_code'" in problems
    raw = real_raw()
    raw["extra"] = 1
    assert "config: unknown field 'extra'" in problems_of(raw)


def test_wrong_type() -> None:
    raw = real_raw()
    campaign(raw, "renewal_sequence")["priority"] = "high"
    campaign(raw, "save_offers")["steps"][0]["offer"]["cost"] = "twelve"
    problems = problems_of(raw)
    assert (
        "campaign 'renewal_sequence': field 'priority' must be of type integer, got string 'high'" in problems
    )
    assert (
        "campaign 'save_offers': field 'steps[0].offer' has an invalid value {'code': 'SAVE-20', 'cost': 'twelve'}"
        in problems
    )


def test_enum_and_missing_fields() -> None:
    raw = real_raw()
    campaign(raw, "winback")["channel"] = "sms"
    del campaign(raw, "dunning")["category"]
    campaign(raw, "save_offers")["schedule"] = {"days": ["mon", "someday"]}
    problems = problems_of(raw)
    assert "campaign 'winback': field 'channel' must be one of ['email'], got 'sms'" in problems
    assert "campaign 'dunning': missing required field 'category'" in problems
    assert any(
        p.startswith("campaign 'save_offers': field 'schedule' has an invalid value") for p in problems
    )


def test_unknown_template() -> None:
    raw = real_raw()
    campaign(raw, "renewal_sequence")["steps"][1]["template"] = "renewal_tomorrow"
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "campaign 'renewal_sequence': field 'steps[1].template' names unknown template 'renewal_tomorrow'"
    )


def test_duplicate_campaign_id() -> None:
    raw = real_raw()
    raw["campaigns"].append(copy.deepcopy(campaign(raw, "winback")))
    (problem,) = problems_of(raw)
    assert problem == "campaign 'winback': field 'id' is duplicated (campaigns #5 and #6)"


def test_duplicate_step_id() -> None:
    raw = real_raw()
    campaign(raw, "dunning")["steps"][1]["id"] = "dunning-1"
    assert "campaign 'dunning': field 'steps[1].id' is duplicated ('dunning-1')" in problems_of(raw)


def test_unknown_audience_builder_and_params() -> None:
    raw = real_raw()
    campaign(raw, "winback")["audience"]["builder"] = "everyone"
    campaign(raw, "save_offers")["audience"]["params"]["max_customers"] = 10
    campaign(raw, "dunning")["audience"]["params"]["lookback_days"] = "30"
    problems = problems_of(raw)
    assert any(
        p.startswith("campaign 'winback': field 'audience.builder' names unknown builder 'everyone' (known: ")
        for p in problems
    )
    assert any(
        p.startswith("campaign 'save_offers': unknown field 'audience.params.max_customers'")
        for p in problems
    )
    assert (
        "campaign 'dunning': field 'audience.params.lookback_days' must be of type int, got string '30'"
        in problems
    )


def test_builder_step_layout() -> None:
    raw = real_raw()
    del campaign(raw, "renewal_sequence")["steps"][2]["offset_days"]
    campaign(raw, "save_offers")["steps"][1]["reasons"] = ["price"]
    campaign(raw, "winback")["steps"].pop()
    problems = problems_of(raw)
    assert (
        "campaign 'renewal_sequence': field 'steps[2].offset_days' is required by builder 'renewal_calendar'"
        in problems
    )
    assert (
        "campaign 'save_offers': field 'steps[1].reasons' repeats reason 'price' (already in step 'discount')"
        in problems
    )
    assert (
        "campaign 'winback': field 'steps' must have exactly 2 step(s) for builder 'lapsed_customers'"
        in problems
    )


def test_no_discount_for_transactional_or_involuntary() -> None:
    raw = real_raw()
    campaign(raw, "dunning")["steps"][0]["offer"] = {"code": "SORRY-10", "cost": 3}
    campaign(raw, "save_offers")["route_to_dunning_reasons"] = []
    campaign(raw, "save_offers")["steps"][0]["reasons"] = ["price", "involuntary"]
    problems = problems_of(raw)
    assert (
        "campaign 'dunning': field 'steps[0].offer' is not allowed: transactional messages carry no offer"
        in problems
    )
    assert any(
        p.startswith(
            "campaign 'save_offers': field 'steps[0].offer' is not allowed for reason(s) ['involuntary']"
        )
        for p in problems
    )


def test_unnamed_campaign_and_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    raw = real_raw()
    del raw["campaigns"][0]["id"]
    assert "campaign #1: missing required field 'id'" in problems_of(raw)
    with pytest.raises(CampaignConfigError, match="not valid YAML"):
        parse_campaigns("campaigns: [unclosed", "x.yml")
    with pytest.raises(CampaignConfigError, match="must be a mapping, got array"):
        parse_campaigns("- 1\n- 2\n", "x.yml")
    with pytest.raises(CampaignConfigError, match="cannot read"):
        load_campaigns(tmp_path / "missing.yml")


def test_several_problems_are_reported_together() -> None:
    raw = real_raw()
    campaign(raw, "save_offers")["holdout_share"] = 0.9
    campaign(raw, "winback")["priority"] = 1.5
    assert len(problems_of(raw)) == 2


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from retention.outreach.cli import main

    assert main(["validate"]) == 0
    assert "ok save_offers" in capsys.readouterr().out
    raw = real_raw()
    campaign(raw, "save_offers")["holdout_share"] = 0.9
    bad = tmp_path / "campaigns.yml"
    bad.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(bad)]) == 1
    assert "campaign 'save_offers': field 'holdout_share' must be <= 0.5, got 0.9" in capsys.readouterr().err


def test_planner_refuses_a_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from retention.outreach.cli import main
    from retention.settings import get_settings

    raw = real_raw()
    campaign(raw, "winback")["audience"]["builder"] = "everyone"
    bad = tmp_path / "campaigns.yml"
    bad.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETENTION_CAMPAIGNS_FILE", str(bad))
    get_settings.cache_clear()
    assert main(["plan", "--date", "2026-03-10"]) == 1  # fails before touching any database
    assert "unknown builder 'everyone'" in capsys.readouterr().err
