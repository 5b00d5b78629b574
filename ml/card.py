"""Model card (Markdown) of one model version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml import config


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render(info: dict[str, Any]) -> str:
    """``info``: version, model_kind, trained_at, window (SplitPlan.as_dict()), rows, features,
    feature_list_hash, metrics, champion_metrics (or None), decision, status, settings."""
    m = info["metrics"]
    w = info["window"]
    lines = [
        f"# Model card: {info['version']}",
        "",
        f"- Kind: `{info['model_kind']}` "
        + (
            "(logistic regression on RFM features, the baseline)"
            if info["model_kind"] == "logreg_rfm"
            else "(histogram gradient boosting on all features)"
        ),
        f"- Trained at: {info['trained_at']}",
        f"- Status after this run: **{info['status']}** ({info['decision']})",
        f"- Label: churned within {info['settings']['churn_horizon_days']} days after the as-of date",
        "",
        "## Data windows (time split, never random)",
        "",
        "| window | as-of dates | rows | churn rate |",
        "|---|---|---|---|",
        f"| training | {w['train_start']} .. {w['train_end']} ({w['train_dates']} dates) | "
        f"{info['rows']['train']} | {_fmt(info['rates']['train'])} |",
        f"| calibration | {w['calib_start']} .. {w['calib_end']} | {info['rows']['calib']} | "
        f"{_fmt(info['rates']['calib'])} |",
        f"| validation | {w['valid_start']} .. {w['valid_end']} | {info['rows']['valid']} | "
        f"{_fmt(info['rates']['valid'])} |",
        "",
        f"Validation starts {w['purge_days']} days (the label horizon) or more after the last training and "
        "calibration as-of date, so no label used for fitting reaches into the validation window.",
        "",
        "## Validation metrics",
        "",
        "| metric | this model | champion on the same window |",
        "|---|---|---|",
    ]
    champ = info.get("champion_metrics") or {}
    for key in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
        lines.append(f"| {key} | {_fmt(m[key])} | {_fmt(champ[key]) if key in champ else '–'} |")
    lines += [
        "",
        f"Calibration: **{m['calibration_method']}** (Brier on validation by method: "
        + ", ".join(f"{k} {v:.5f}" for k, v in m["calibration_brier_by_method"].items())
        + ").",
        "",
        "### Calibration curve (validation)",
        "",
        "| probability bin | customers | mean predicted | observed churn rate |",
        "|---|---|---|---|",
    ]
    for b in m["calibration"]:
        lines.append(
            f"| {b['bin_low']:.1f}–{b['bin_high']:.1f} | {b['count']} | {b['mean_predicted']:.4f} | "
            f"{b['observed_rate']:.4f} |"
        )
    lines += [
        "",
        "### Profit at a contact budget (validation)",
        "",
        "| contacted share | customers | churners reached | expected saved value | offer cost | profit |",
        "|---|---|---|---|---|---|",
    ]
    for p in m.get("profit", []):
        lines.append(
            f"| {p['contact_share']:.0%} | {p['contacted']} | {p['churners_reached']} | "
            f"{p['expected_saved_value']:.2f} | {p['offer_cost']:.2f} | {p['profit']:.2f} |"
        )
    lines += [
        "",
        "Assumptions (ml/config.py): expected save rate and offer cost by reason category (from the model's "
        "reason codes); customer value = today's `dim_customers.customer_value`.",
        "",
        "| reason | expected save rate | offer cost |",
        "|---|---|---|",
        *[
            f"| {r} | {config.EXPECTED_SAVE_RATE[r]:.2f} | {config.OFFER_COST[r]:.2f} |"
            for r in config.REASONS
        ],
        "",
        "## Promotion rule",
        "",
        f"Promoted only if validation {config.FLOOR_METRIC} >= {info['settings']['quality_floor_auc']} and "
        f"{config.PROMOTION_METRIC} beats the champion's on the same window by "
        f">= {info['settings']['promotion_margin']}.",
        "",
        "## Features",
        "",
        f"{len(info['features'])} features, list hash `{info['feature_list_hash'][:16]}`: "
        + ", ".join(f"`{f}`" for f in info["features"]),
        "",
        "Reason codes: typical-value substitution on the model's partial-dependence curves (ml/reasons.py).",
        "",
    ]
    return "\n".join(lines)


def write(folder: Path, info: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_card.md"
    path.write_text(render(info))
    return path
