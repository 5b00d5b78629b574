"""Model metrics: discrimination, calibration, lift and profit at a contact budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml import config


def calibration_bins(
    y: np.ndarray, p: np.ndarray, bins: int = config.CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted, observed churn rate (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append(
                {
                    "bin_low": round(float(edges[b]), 3),
                    "bin_high": round(float(edges[b + 1]), 3),
                    "count": int(m.sum()),
                    "mean_predicted": round(float(p[m].mean()), 4),
                    "observed_rate": round(float(y[m].mean()), 4),
                }
            )
    return out


def top_share_mask(p: np.ndarray, share: float) -> np.ndarray:
    """The top ``share`` of rows by score (ties broken by position, exactly ceil(share * n) rows)."""
    k = max(1, int(np.ceil(share * len(p))))
    order = np.argsort(-p, kind="stable")
    mask = np.zeros(len(p), dtype=bool)
    mask[order[:k]] = True
    return mask


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    base = float(np.mean(y))
    if base == 0:
        return float("nan")
    return float(np.mean(y[top_share_mask(p, 0.10)]) / base)


def profit_at_budget(
    y: np.ndarray,
    p: np.ndarray,
    customer_value: np.ndarray,
    reason: np.ndarray,
    budgets: Sequence[float] = config.CONTACT_BUDGETS,
) -> list[dict[str, float]]:
    """Contact the top k% by churn probability; saved value of the actual churners contacted minus the
    offer cost of everyone contacted (save rate and offer cost by reason: ml.config)."""
    save = np.array([config.EXPECTED_SAVE_RATE.get(r, config.EXPECTED_SAVE_RATE["unknown"]) for r in reason])
    cost = np.array([config.OFFER_COST.get(r, config.OFFER_COST["unknown"]) for r in reason])
    value = np.nan_to_num(np.asarray(customer_value, dtype=float), nan=0.0)
    out = []
    for share in budgets:
        m = top_share_mask(p, share)
        saved = float(np.sum((y[m] == 1) * value[m] * save[m]))
        spent = float(np.sum(cost[m]))
        out.append(
            {
                "contact_share": share,
                "contacted": int(m.sum()),
                "churners_reached": int(np.sum(y[m])),
                "expected_saved_value": round(saved, 2),
                "offer_cost": round(spent, 2),
                "profit": round(saved - spent, 2),
            }
        )
    return out


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    customer_value: np.ndarray | None = None,
    reason: np.ndarray | None = None,
) -> dict[str, object]:
    """Every number of the model card for one set of validation predictions."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    out: dict[str, object] = {
        "rows": len(y),
        "positives": int(y.sum()),
        "churn_rate": round(float(y.mean()), 5),
        "roc_auc": round(float(roc_auc_score(y, p)), 5),
        "pr_auc": round(float(average_precision_score(y, p)), 5),
        "brier": round(float(brier_score_loss(y, p)), 5),
        "top_decile_lift": round(top_decile_lift(y, p), 4),
        "calibration": calibration_bins(y, p),
    }
    if customer_value is not None and reason is not None:
        out["profit"] = profit_at_budget(y, p, customer_value, reason)
    return out


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of two bucket-share vectors."""
    e = np.clip(np.asarray(expected, dtype=float), eps, None)
    a = np.clip(np.asarray(actual, dtype=float), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))
