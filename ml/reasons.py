"""Reason codes: the top three drivers of each customer's risk, in words a marketer understands.

Method ("typical-value substitution", vectorised).  At training time, for every feature j we
measure the model's average raw score (log-odds, before calibration) over a reference sample of
customers when feature j is set to each value v of a quantile grid: the curve g_j(v) (a partial
dependence).  A customer's contribution of feature j is

    c_j(x) = g_j(x_j) - g_j(median_j)

i.e. how much the model's risk rises because this customer's value differs from the population's
typical (median) value.  Only features whose value is on the *risky side* count: c_j > 0, the value
differs from the median, is not null, and (for features with a documented direction) lies on that
direction's side.  Profile features (subscriber or not, earlier usage/order levels) shape the score but
are never listed: they say who the customer is, not what is going wrong.  The three largest contributions are the reason codes (contribution in log-odds
units), the highest one with a churn-reason category gives ``reason_category`` (features that say
*when* or *who* rather than *why*, like days to renewal, tenure or days since the last order -- which is
how purchase-only churn is defined, so it says "soon", not "why" -- carry no category; ``unknown``
when no categorised feature raises the risk).

Scoring needs one ``np.interp`` per feature (no extra model passes); the top three come from three
argmax passes, and the jsonb text is assembled by Arrow string kernels from pieces formatted once per
distinct (feature, shown value, context) and per distinct contribution (thousandths): no per-row Python.
A million customers take about 1.5-2.5 s of CPU (BENCHMARKS.md).  The exact local variant (re-scoring each customer with x_j set to the
median) is kept in :func:`local_contributions` to check the approximation on small samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml import config

if TYPE_CHECKING:
    import pyarrow as pa

TextFn = Callable[[np.ndarray, np.ndarray | None], list[str]]


def _plural(n: float, one: str, many: str | None = None) -> str:
    k = round(float(n))
    return f"{k} {one}" if k == 1 else f"{k} {many or one + 's'}"


def _fmt_count(one: str, many: str | None = None, suffix: str = "") -> TextFn:
    def fmt(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
        return [f"{_plural(x, one, many)}{suffix}" for x in v]

    return fmt


def _usage_30d(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return ["no usage in 30 days" if x <= 0 else f"only {_plural(x, 'use')} in 30 days" for x in v]


def _usage_trend(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return [
        "usage stopped in the last 30 days"
        if x <= -99.5
        else (f"usage down {abs(x):.0f}% in 30 days" if x < 0 else f"usage up {x:.0f}% in 30 days")
        for x in v
    ]


def _freq_drop(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return [f"orders down {x:.0f}% vs the months before" if x > 0 else "orders not growing" for x in v]


def _orders_90d(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return ["no orders in 90 days" if x <= 0 else f"only {_plural(x, 'order')} in 90 days" for x in v]


def _renewal(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    out = []
    for i, x in enumerate(v):
        when = "renewal today" if x <= 0 else f"renewal in {_plural(x, 'day')}"
        extra = str(ctx[i]) if ctx is not None and ctx[i] else ""
        out.append(when + extra)
    return out


def _with_context(texts: list[str], ctx: np.ndarray | None) -> list[str]:
    """Append each customer's context (e.g. the category or error code) in parentheses, if any."""
    return [t + (f" ({ctx[i]})" if ctx is not None and ctx[i] else "") for i, t in enumerate(texts)]


def _categories(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return _with_context([f"stopped buying {_plural(x, 'category', 'categories')}" for x in v], ctx)


def _errors(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
    return _with_context([f"hit {_plural(x, 'error')} in 30 days" for x in v], ctx)


def _simple(template: str, scale: float = 1.0) -> TextFn:
    def fmt(v: np.ndarray, ctx: np.ndarray | None) -> list[str]:
        return [template.format(x * scale) for x in v]

    return fmt


@dataclass(frozen=True)
class ReasonSpec:
    feature: str
    direction: int  # +1: higher is riskier, -1: lower is riskier, 0: the model decides
    category: str | None  # churn reason the feature points to (None: timing/profile, not a reason)
    text: TextFn
    decimals: int = 0  # rounding of the value shown (texts of equal rounded values are shared)
    shown: bool = True  # False: a profile feature (who, not why) never listed as a driver


REASON_SPECS: dict[str, ReasonSpec] = {
    s.feature: s
    for s in (
        ReasonSpec("tenure_days", -1, None, _simple("customer for only {:.0f} days")),
        ReasonSpec(
            "is_subscriber",
            0,
            None,
            lambda v, c: ["no subscription" if x < 0.5 else "subscriber" for x in v],
            shown=False,
        ),
        ReasonSpec("plan_price_monthly", +1, "price", _simple("plan costs {:.2f} a month"), 2),
        ReasonSpec("days_to_renewal", -1, None, _renewal),
        ReasonSpec("recency_days", +1, None, _simple("no order in {:.0f} days")),
        ReasonSpec("frequency_orders_365d", -1, None, _fmt_count("order", suffix=" in the last year")),
        ReasonSpec("monetary_365d", -1, None, _simple("spent only {:.0f} in the last year")),
        ReasonSpec("discount_share_365d", +1, "price", _simple("{:.0f}% of spend on discount", 100.0), 2),
        ReasonSpec("usage_events_30d", -1, "moved_no_need", _usage_30d),
        ReasonSpec(
            "usage_events_prior_90d_per30", 0, None, _simple("usage was {:.0f} a month before"), shown=False
        ),
        ReasonSpec("usage_trend_pct", -1, "quality_fit", _usage_trend),
        ReasonSpec("orders_90d", -1, "quality_fit", _orders_90d),
        ReasonSpec(
            "orders_prior_270d_per90",
            0,
            None,
            _simple("ordered {:.1f} times a quarter before"),
            1,
            shown=False,
        ),
        ReasonSpec("purchase_freq_drop_pct", +1, "quality_fit", _freq_drop),
        ReasonSpec("categories_dropped_count", +1, "quality_fit", _categories),
        ReasonSpec(
            "inquiries_without_order_30d",
            +1,
            "price",
            _fmt_count("inquiry", "inquiries", " without an order"),
        ),
        ReasonSpec("late_payments_90d", +1, "involuntary", _fmt_count("late payment", suffix=" in 90 days")),
        ReasonSpec(
            "failed_payments_90d", +1, "involuntary", _fmt_count("failed payment", suffix=" in 90 days")
        ),
        ReasonSpec(
            "payment_failed_unrecovered",
            +1,
            "involuntary",
            lambda v, c: ["payment failed and not recovered" if x >= 0.5 else "payment recovered" for x in v],
        ),
        ReasonSpec("open_tickets", +1, "service_failure", _fmt_count("open support ticket")),
        ReasonSpec("unresolved_tickets", +1, "service_failure", _fmt_count("unresolved ticket")),
        ReasonSpec(
            "low_satisfaction_90d",
            +1,
            "service_failure",
            _fmt_count("low satisfaction rating", suffix=" in 90 days"),
        ),
        ReasonSpec("error_events_30d", +1, "service_failure", _errors),
    )
}
assert set(REASON_SPECS) == set(config.FEATURES), "every feature needs a reason spec"

#: value-dependent categories: usage that stopped completely is an abrupt stop (moved / no longer needs
#: it), a partial decline is quality/fit
CATEGORY_OVERRIDES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "usage_trend_pct": (lambda v: v <= -99.5, "moved_no_need"),
}


# --- reference curves (training time) -------------------------------------------------------------
def build_reference(
    raw_score: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    features: Sequence[str],
    *,
    rows: int | None = None,
    grid_points: int | None = None,
    seed: int = 0,
    curve_fn: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per feature: the median, a quantile grid and the model's mean raw score on that grid.

    ``curve_fn(j, values)``, when given, computes the mean raw score itself; otherwise the model is run
    on a reference sample of ``rows`` rows with feature j set to each value (the interventional partial
    dependence; sklearn's faster tree 'recursion' differs from it noticeably).  Returns arrays only
    (``medians`` (p,), ``grid`` (p, g), ``curve`` (p, g)) so the artefact stays a plain, skops-safe
    structure.  Grids with fewer distinct values are padded by repetition."""
    rows = config.REASON_REFERENCE_ROWS if rows is None else rows
    grid_points = config.REASON_GRID_POINTS if grid_points is None else grid_points
    rng = np.random.default_rng(seed)
    ref = X[rng.choice(len(X), size=min(rows, len(X)), replace=False)] if len(X) > rows else X
    p = len(features)
    medians = np.zeros(p)
    grid = np.zeros((p, grid_points))
    curve = np.zeros((p, grid_points))
    qs = np.linspace(0.0, 1.0, grid_points)
    for j in range(p):
        col = X[:, j]
        col = col[~np.isnan(col)]
        if col.size == 0:
            continue
        medians[j] = float(np.median(col))
        values = np.unique(np.concatenate([np.quantile(col, qs, method="nearest"), [medians[j]]]))
        if values.size > grid_points:  # the median was added: drop the closest non-median point
            values = np.unique(np.concatenate([np.quantile(col, qs[:-1], method="nearest"), [medians[j]]]))
            values = values[:grid_points]
        if curve_fn is not None:
            means = np.asarray(curve_fn(j, values), dtype=np.float64).ravel()
        else:
            stacked = np.repeat(ref[None, :, :], values.size, axis=0)
            stacked[:, :, j] = values[:, None]
            means = raw_score(stacked.reshape(-1, p)).reshape(values.size, len(ref)).mean(axis=1)
        pad = grid_points - values.size
        grid[j] = np.concatenate([values, np.full(pad, values[-1])])
        curve[j] = np.concatenate([means, np.full(pad, means[-1])])
    return {"medians": medians, "grid": grid, "curve": curve}


def contributions(X: np.ndarray, features: Sequence[str], reference: dict[str, np.ndarray]) -> np.ndarray:
    """(n, p) contributions in log-odds; 0 where the feature is not on the risky side."""
    medians, grid, curve = reference["medians"], reference["grid"], reference["curve"]
    out = np.zeros(X.shape, dtype=np.float64)
    for j, name in enumerate(features):
        spec = REASON_SPECS[name]
        if not spec.shown:
            continue
        x = X[:, j]
        med = medians[j]
        if spec.direction > 0:
            side = x > med  # NaN compares False: unknown values are never drivers
        elif spec.direction < 0:
            side = x < med
        else:
            side = (x > med) | (x < med)
        idx = np.flatnonzero(side)  # only rows on the risky side are looked up (few for count features)
        c = np.interp(x[idx], grid[j], curve[j]) - np.interp(med, grid[j], curve[j])
        keep = c >= config.REASON_MIN_CONTRIBUTION
        out[idx[keep], j] = c[keep]
    return out


def local_contributions(
    raw_score: Callable[[np.ndarray], np.ndarray], X: np.ndarray, features: Sequence[str], medians: np.ndarray
) -> np.ndarray:
    """Exact local deltas: raw(x) - raw(x with x_j := median_j), same risky-side rules (slow: p passes)."""
    base = raw_score(X)
    out = np.zeros(X.shape, dtype=np.float64)
    for j, name in enumerate(features):
        if not REASON_SPECS[name].shown:
            continue
        Xj = X.copy()
        Xj[:, j] = medians[j]
        c = base - raw_score(Xj)
        x = X[:, j]
        direction = REASON_SPECS[name].direction
        ok = (c >= config.REASON_MIN_CONTRIBUTION) & (x != medians[j]) & ~np.isnan(x)
        if direction:
            ok &= np.sign(x - medians[j]) == direction
        out[:, j] = np.where(ok, c, 0.0)
    return out


# --- reason codes (scoring time) -------------------------------------------------------------------
@dataclass
class ReasonCodes:
    top_features: np.ndarray  # (n, 3) feature index, -1 = no driver in that slot
    top_contrib: np.ndarray  # (n, 3)
    category: np.ndarray  # (n,) object: reason category
    json_arrow: pa.StringArray | None  # jsonb text of the list of {"feature","text","contribution"}
    category_code: np.ndarray | None = None  # (n,) index into config.REASONS

    @property
    def json(self) -> np.ndarray:
        """The JSON texts as a numpy array of Python strings (empty when built without JSON)."""
        if self.json_arrow is None:
            return np.empty(0, dtype=object)
        return self.json_arrow.to_numpy(zero_copy_only=False)


def top_k(C: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest positive entries of each row, largest first: (feature index or -1, value or 0).
    k argmax passes over a copy (with p around 20 columns, cheaper than argpartition + sort)."""
    n, p = C.shape
    k = min(k, p)
    rows = np.arange(n)
    work = C.copy()
    top = np.full((n, k), -1, dtype=np.int64)
    top_c = np.zeros((n, k))
    for slot in range(k):
        j = work.argmax(axis=1)
        v = work[rows, j]
        hit = v > 0
        top[hit, slot] = j[hit]
        top_c[hit, slot] = v[hit]
        work[rows, j] = 0.0
    return top, top_c


def top_reasons(
    X: np.ndarray,
    features: Sequence[str],
    reference: dict[str, np.ndarray],
    context: pd.DataFrame | None = None,
    k: int = 3,
    with_json: bool = True,
) -> ReasonCodes:
    """Top-k drivers, their words, and the reason category (all vectorised)."""
    C = contributions(X, features, reference)
    top, top_c = top_k(C, k)
    code = category_codes(C, X, features)
    category = np.array(config.REASONS, dtype=object)[code]
    json = _json_lists(X, features, top, top_c, context) if with_json else None
    return ReasonCodes(top, top_c, category, json, code)


def category_codes(C: np.ndarray, X: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """Index into config.REASONS of each row's reason category: the category of the largest categorised
    contribution (value-dependent overrides applied), ``unknown`` when none."""
    n, p = C.shape
    reasons = list(config.REASONS)
    unknown = reasons.index("unknown")
    if p == 0:
        return np.full(n, unknown, dtype=np.int64)
    rows = np.arange(n)
    cat_code = np.array(
        [reasons.index(REASON_SPECS[f].category) if REASON_SPECS[f].category else -1 for f in features]
    )
    Cc = C * (cat_code >= 0)[None, :]
    best = Cc.argmax(axis=1)
    has = Cc[rows, best] > 0
    code = np.where(has, cat_code[best], unknown)
    for name, (test, override) in CATEGORY_OVERRIDES.items():
        if name in features:
            j = list(features).index(name)
            hit = np.flatnonzero(has & (best == j))
            code[hit] = np.where(test(X[hit, j]), reasons.index(override), code[hit])
    return code


def _context_for(
    name: str, rows: np.ndarray, X: np.ndarray, features: Sequence[str], context: pd.DataFrame | None
) -> np.ndarray | None:
    """Extra words some texts carry (renewal + price talk, which categories, which error codes)."""
    if name == "days_to_renewal":
        idx = {f: i for i, f in enumerate(features)}
        words = np.full(rows.size, "", dtype=object)
        if "discount_share_365d" in idx:
            words = np.where(
                X[rows, idx["discount_share_365d"]] >= 0.3, " after buying mostly on discount", words
            )
        if "inquiries_without_order_30d" in idx:
            words = np.where(
                X[rows, idx["inquiries_without_order_30d"]] > 0, " after asking about prices", words
            )
        return words
    if context is None:
        return None
    col = {"categories_dropped_count": "top_dropped_category", "error_events_30d": "recent_error_codes"}.get(
        name
    )
    if col is None or col not in context.columns:
        return None
    codes, uniques = pd.factorize(context[col].iloc[rows], use_na_sentinel=True)
    cleaned = np.array([_safe(v) for v in uniques] + [""], dtype=object)  # code -1 (null) -> ""
    return cleaned[codes]


def _safe(v: object) -> str:
    """Context words go into JSON text: keep letters, digits and a few separators only."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    text = str(v)[:60]
    return "".join(ch for ch in text if ch.isalnum() or ch in " ,-_./").strip()


def _coded_texts(
    name: str, values: np.ndarray, ctx: np.ndarray | None, decimals: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """(code per value, words per code): each distinct (rounded value, context) is formatted once
    (hash factorisation, no sort)."""
    spec = REASON_SPECS[name]
    shown = np.round(values, spec.decimals if decimals is None else decimals)
    v_codes, v_uniq = pd.factorize(shown)
    if ctx is None:
        return v_codes, list(spec.text(np.asarray(v_uniq, dtype=float), None))
    c_codes, c_uniq = pd.factorize(ctx)
    width = max(len(c_uniq), 1)
    codes, k_uniq = pd.factorize(v_codes.astype(np.int64) * width + c_codes)
    u_vals = np.asarray(v_uniq, dtype=float)[k_uniq // width]
    u_ctx = np.asarray(c_uniq, dtype=object)[k_uniq % width]
    return codes, list(spec.text(u_vals, u_ctx))


def texts_for(
    name: str, values: np.ndarray, ctx: np.ndarray | None, decimals: int | None = None
) -> np.ndarray:
    """Words for many values of one feature (rounded to ``decimals``, default the spec's)."""
    codes, words = _coded_texts(name, np.asarray(values, dtype=float), ctx, decimals)
    return np.array(words, dtype=object)[codes]


def _json_lists(
    X: np.ndarray,
    features: Sequence[str],
    top: np.ndarray,
    top_c: np.ndarray,
    context: pd.DataFrame | None,
) -> pa.StringArray:
    """JSON text of each row's reason list, assembled by Arrow string kernels.

    Slot s of a row is a prefix (``[{`` for the first slot, ``, {`` after it, then
    ``"feature": ..., "text": ..., "contribution": ``) looked up per distinct (feature, rounded value,
    context), plus the contribution text (``0.123}``) looked up per distinct value in thousandths.
    Python formats only those distinct pieces, never a row; Arrow concatenates them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, k = top.shape
    milli = np.rint(top_c * 1000.0).astype(np.int64)
    if n and milli.max() <= 1_000_000:
        m_text = [f"{m / 1000:.3f}}}" for m in range(int(milli.max()) + 1)]
    else:
        m_uniq, m_inv = np.unique(milli, return_inverse=True)
        m_text = [f"{m / 1000:.3f}}}" for m in m_uniq.tolist()]
        milli = m_inv.reshape(n, k)
    contrib_text = pa.array(m_text, pa.string())
    pieces = []
    for slot in range(k):
        idx = top[:, slot]
        lead = "[{" if slot == 0 else ", {"
        prefixes: list[str] = []
        pid = np.full(n, -1, dtype=np.int64)
        for j in np.flatnonzero(np.bincount(idx[idx >= 0], minlength=len(features))).tolist():
            rows = np.flatnonzero(idx == j)
            name = features[j]
            codes, words = _coded_texts(name, X[rows, j], _context_for(name, rows, X, features, context))
            pid[rows] = codes + len(prefixes)
            prefixes.extend(f'{lead}"feature": "{name}", "text": "{w}", "contribution": ' for w in words)
        none = pid < 0
        pre = pc.take(pa.array(prefixes, pa.string()), pa.array(pid, mask=none))
        con = pc.take(contrib_text, pa.array(milli[:, slot], mask=none))
        pieces.append(pc.binary_join_element_wise(pre, con, ""))  # null where the slot has no driver
    if k == 0:
        return pa.array(["[]"] * n, pa.string())
    # drivers fill the slots in order: an empty first slot is "[", empty later slots are ""
    pieces[0] = pc.fill_null(pieces[0], "[")
    return pc.binary_join_element_wise(
        *pieces, pa.scalar("]"), "", null_handling="replace", null_replacement=""
    )
