"""One chunk of customers, simulated with vectorised numpy (no per-event Python loops).

``simulate_chunk`` draws everything for customers ``first_no .. first_no + n - 1`` from its own
``numpy.random.Generator`` and returns Arrow tables that follow the raw contract, plus the ground
truth of who churned, when and why.  The steps, in order:

1. customers and their hidden traits (subscriber, price sensitivity, device, engagement, shopper);
2. a planned leaving time and reason per customer from competing monthly hazards, the price-increase
   shock for price-sensitive subscribers, then the product faults (victims may leave for
   service_failure);
3. subscriptions: leaving is snapped to the billing calendar (price churners cancel just before a
   renewal, involuntary churn follows a renewal whose three attempts failed), reactivations;
4. orders (a regular rhythm in seasonally warped time), lines, order payments; purchase-only churn
   = last order + 180 days, some of them come back;
5. subscription charges with late and failed attempts;
6. usage events by thinning a Poisson process with season, decline before leaving and abrupt stops;
7. support tickets (pre-sales inquiries, inquiries without an order before leaving, complaints about
   the faults, billing tickets after failures) and cancel-flow answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retention.generator import params as P
from retention.generator.timeline import Calendar

H = float(P.HISTORY_DAYS)
INF = np.inf
TS = pa.timestamp("us", tz="UTC")


# ------------------------------------------------------------------------------- helpers


def _p(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    """Offset of each segment in a flat array of segments with these lengths."""
    out = np.zeros(len(counts), dtype=np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=out[1:])
    return out


def _ids(prefix: str, nums: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(
        pa.array(np.asarray(nums, dtype=np.int64)).cast(pa.string()), width=width, padding="0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def _ts(cal: Calendar, t: np.ndarray) -> pa.Array:
    t = np.asarray(t, dtype=np.float64)
    mask = ~np.isfinite(t)
    return pa.array(cal.to_us(np.where(mask, 0.0, t)), type=TS, mask=mask if mask.any() else None)


def _cat(values: tuple[str | None, ...], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Strings by index into a small vocabulary (None entries and mask give nulls)."""
    vocab = pa.array(list(values), type=pa.string())
    idx = np.asarray(idx, dtype=np.int32)
    ind = pa.array(idx, type=pa.int32(), mask=mask if mask is not None and mask.any() else None)
    return vocab.take(ind)


def _money(cents: np.ndarray) -> pa.Array:
    return pa.array(np.round(np.asarray(cents, dtype=np.float64) / 100.0, 2), type=pa.float64())


def renewal_process(
    rng: np.random.Generator,
    owner: np.ndarray,
    w_start: np.ndarray,
    w_end: np.ndarray,
    mean_gap: np.ndarray,
    shape: float,
    max_gap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Points at w_start, then + gamma(shape) gaps (mean mean_gap, at most max_gap), while < w_end.

    Vectorised over owners; loops only over rounds (a round draws enough gaps for most owners,
    the few that need more continue in the next round).  Returns (owner, time) arrays.
    """
    outs_o: list[np.ndarray] = []
    outs_t: list[np.ndarray] = []
    o, cur, end, g, mg = owner, w_start, w_end, mean_gap, max_gap
    alive = cur < end
    o, cur, end, g, mg = o[alive], cur[alive], end[alive], g[alive], mg[alive]
    while len(o):
        n = np.minimum(np.ceil((end - cur) / g * 1.25).astype(np.int64) + 3, 2000)
        rep = np.repeat(np.arange(len(o)), n)
        gaps = np.minimum(rng.gamma(shape, 1.0 / shape, rep.size) * g[rep], mg[rep])
        gaps = np.maximum(gaps, 0.05)
        starts = _segment_starts(n)
        gaps[starts] = 0.0
        cs = np.cumsum(gaps)
        base = cs[starts]
        t = cur[rep] + (cs - base[rep])
        keep = t < end[rep]
        outs_o.append(o[rep[keep]])
        outs_t.append(t[keep])
        last = t[starts + n - 1]
        nxt = last + np.maximum(np.minimum(rng.gamma(shape, 1.0 / shape, len(o)) * g, mg), 0.05)
        more = (last < end) & (nxt < end)
        o, cur, end, g, mg = o[more], nxt[more], end[more], g[more], mg[more]
    if not outs_o:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(outs_o), np.concatenate(outs_t)


def _uniform_in(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + rng.random(len(lo)) * np.maximum(hi - lo, 0.0)


@dataclass
class ChunkResult:
    tables: dict[str, pa.Table]
    truth: pa.Table


# ------------------------------------------------------------------------------- the chunk


def simulate_chunk(
    rng: np.random.Generator, cal: Calendar, chunk_index: int, first_no: int, n: int, id_width: int
) -> ChunkResult:
    sim = _Chunk(rng, cal, chunk_index, first_no, n, id_width)
    return sim.run()


class _Chunk:
    def __init__(
        self, rng: np.random.Generator, cal: Calendar, chunk_index: int, first_no: int, n: int, id_width: int
    ) -> None:
        self.rng = rng
        self.cal = cal
        self.chunk = chunk_index
        self.first_no = first_no
        self.n = n
        self.id_width = id_width
        self.id_base = chunk_index * 10**9  # text ids: chunk-local sequence, unique across chunks
        self.ev_base = chunk_index * 10**10  # usage event ids (bigint)

    # ------------------------------------------------------------------ 1. customers
    def customers(self) -> None:
        rng, n = self.rng, self.n
        pre = rng.random(n) < 0.22
        self.signup = np.where(
            pre, -rng.uniform(1.0, P.PRE_HISTORY_DAYS, n), (H - 3.0) * rng.random(n) ** 0.85
        )
        self.a = np.maximum(self.signup, 0.0)
        self.pre = pre
        self.is_sub = rng.random(n) < P.SUBSCRIBER_SHARE
        self.price_sens = rng.random(n) < P.PRICE_SENSITIVE_SHARE
        self.device = rng.choice(len(P.DEVICES), n, p=_p(P.DEVICE_P))
        self.engagement = rng.gamma(2.0, 0.5, n)
        self.shopper = ~self.is_sub | (rng.random(n) < P.SUBSCRIBER_SHOPPER_SHARE)
        self.country = rng.choice(len(P.COUNTRIES), n, p=_p(tuple(c[2] for c in P.COUNTRIES)))
        self.channel = rng.choice(len(P.CHANNELS), n, p=_p(tuple(c[1] for c in P.CHANNELS)))
        self.consent = rng.random(n) < P.CONSENT_SHARE
        self.fname = rng.integers(0, len(P.FIRST_NAMES), n)
        self.lname = rng.integers(0, len(P.LAST_NAMES), n)
        self.capital = rng.random(n) < 0.08
        self.fav1 = rng.choice(len(P.CATEGORIES), n, p=_p(P.CATEGORY_P))
        self.fav2 = rng.choice(len(P.CATEGORIES), n, p=_p(P.CATEGORY_P))
        # shopping rhythm (warped days between orders)
        buyer_only = ~self.is_sub
        med = np.where(buyer_only, P.SHOP_MEDIAN_GAP_DAYS, P.SUB_SHOP_MEDIAN_GAP_DAYS)
        self.gap = np.exp(np.log(med) + 0.4 * rng.standard_normal(n))
        self.gap = np.where(buyer_only, np.clip(self.gap, 14.0, 100.0), np.clip(self.gap, 30.0, 200.0))
        self.max_gap = np.where(buyer_only, P.MAX_WARPED_GAP_DAYS, 260.0)
        self.gap_shape = np.where(buyer_only, 4.0, 2.0)
        first_off = np.where(buyer_only & ~pre, rng.uniform(0.0, 2.0, n), rng.random(n) * self.gap)
        self.first_order_w = self.cal.warp(self.a) + first_off
        self.first_order = self.cal.unwarp(self.first_order_w)
        ids = _ids("C", self.first_no + np.arange(n), self.id_width)
        self.customer_ids = ids

    # ------------------------------------------------------------------ 2. planned leaving
    def plan(self) -> None:
        rng, n, cal = self.rng, self.n, self.cal
        # subscription 1
        self.sub_start = np.where(self.pre, self.signup, self.signup + rng.uniform(0.0, 2.0, n))
        self.sub_day0 = np.floor(self.sub_start).astype(np.int64)
        self.sub_tod = self.sub_start - self.sub_day0
        self.plan_idx = rng.choice(len(P.PLANS), n, p=_p(P.PLAN_P))
        self.step = np.where(rng.random(n) < P.YEARLY_SHARE, 12, 1).astype(np.int64)

        reasons = (P.R_PRICE, P.R_QUALITY, P.R_SERVICE, P.R_INVOL, P.R_MOVED)
        times = np.full((len(reasons), n), INF)
        low_eng = self.engagement < 0.5
        t0_sub = np.maximum(self.sub_start, 0.0)
        for j, r in enumerate(reasons):
            h_sub = np.full(n, P.SUB_HAZARD.get(r, 0.0))
            h_shop = np.full(n, P.SHOP_HAZARD.get(r, 0.0))
            if r == P.R_PRICE:
                h_sub = h_sub + self.price_sens * P.PRICE_SENSITIVE_EXTRA_HAZARD
                h_shop = h_shop + self.price_sens * P.PRICE_SENSITIVE_EXTRA_HAZARD
            if r == P.R_QUALITY:
                h_sub = np.where(low_eng, h_sub * P.LOW_ENGAGEMENT_QUALITY_FACTOR, h_sub)
                h_shop = np.where(low_eng, h_shop * P.LOW_ENGAGEMENT_QUALITY_FACTOR, h_shop)
            h = np.where(self.is_sub, h_sub, h_shop)
            t0 = np.where(self.is_sub, t0_sub, self.a)
            draw = rng.exponential(1.0, n)
            with np.errstate(divide="ignore"):
                times[j] = np.where(h > 0, t0 + draw * P.MONTH_DAYS / np.maximum(h, 1e-12), INF)
        # the price increase: price-sensitive subscribers leave at their first renewal at the new price
        pi = cal.price_increase_day
        shock = (
            self.is_sub
            & self.price_sens
            & (self.sub_start < pi - 20)
            & (rng.random(n) < P.PRICE_SHOCK_CHURN_P)
        )
        j_price = reasons.index(P.R_PRICE)
        times[j_price] = np.where(shock, np.minimum(times[j_price], pi), times[j_price])
        first = np.argmin(times, axis=0)
        self.plan_t = times[first, np.arange(n)]
        self.plan_r = np.where(np.isfinite(self.plan_t), np.asarray(reasons)[first], P.R_NONE)
        self.price_shock = shock & (self.plan_r == P.R_PRICE) & (self.plan_t == pi)

        # product faults: victims (a device cohort active in the fault period)
        self.victim = np.full(n, -1, dtype=np.int64)
        self.first_err = np.full(n, INF)
        self.complained = np.zeros(n, bool)
        self.unresolved = np.zeros(n, bool)
        self.victim_churn = np.zeros(n, bool)
        for k, inc in enumerate(cal.incidents):
            s = inc.spec
            hit = (
                (self.device == inc.device)
                & (self.a < inc.end - 2)
                & (self.plan_t > inc.end + 5)
                & (self.victim < 0)
                & (rng.random(n) < s.hit_p)
            )
            complain = hit & (rng.random(n) < s.complain_p)
            unresolved = complain & (rng.random(n) < s.unresolved_p)
            p_churn = np.where(
                unresolved, s.churn_p_unresolved, np.where(complain, s.churn_p_resolved, s.churn_p_silent)
            )
            churn = hit & (rng.random(n) < p_churn)
            t_sf = inc.start + rng.uniform(3.0, 12.0, n) + rng.exponential(35.0, n)
            lo = np.maximum(inc.start, self.a)
            first_err = lo + rng.random(n) * np.minimum(5.0, inc.end - lo)
            self.victim = np.where(hit, k, self.victim)
            self.first_err = np.where(hit, first_err, self.first_err)
            self.complained |= complain
            self.unresolved |= unresolved
            take = churn & (t_sf < self.plan_t)
            self.plan_t = np.where(take, t_sf, self.plan_t)
            self.plan_r = np.where(take, P.R_SERVICE, self.plan_r)
            self.victim_churn |= take
        # purchase-only customers leave after their first order at the earliest
        buyer_only = ~self.is_sub
        self.plan_t = np.where(buyer_only, np.maximum(self.plan_t, self.first_order + 1.0), self.plan_t)

    # ------------------------------------------------------------------ 3. subscriptions
    def subscriptions(self) -> None:
        rng, n, cal = self.rng, self.n, self.cal
        sub = self.is_sub
        t = self.plan_t
        r = self.plan_r
        cancel = np.full(n, INF)
        fail_day = np.full(n, INF)  # renewal whose three attempts failed (involuntary)
        finite = np.isfinite(t) & sub
        # involuntary: the renewal at or after the planned time fails; billing cancels 10-13 days later
        inv = finite & (r == P.R_INVOL)
        if inv.any():
            fa = cal.first_anchor_at_or_after(self.sub_day0[inv], self.step[inv], t[inv]).astype(np.float64)
            fail_day[inv] = fa
            cancel[inv] = fa + self.sub_tod[inv] + P.DUNNING_CANCEL_DAYS + rng.uniform(0.0, 3.0, inv.sum())
        # price: cancel in the last days before a renewal
        pr = finite & (r == P.R_PRICE)
        if pr.any():
            an = cal.first_anchor_at_or_after(self.sub_day0[pr], self.step[pr], t[pr]).astype(np.float64)
            cancel[pr] = an + self.sub_tod[pr] - rng.uniform(0.3, 6.0, pr.sum())
        other = finite & ~inv & ~pr
        cancel[other] = t[other]
        self.cancel = cancel
        self.fail_day = fail_day
        self.sub_churned = sub & (cancel < H)
        self.dunning_open = sub & inv & (fail_day + self.sub_tod < H) & ~(cancel < H)

        # leaving time L: what decline and stops are relative to
        self.leave = np.where(sub, cancel, self.plan_t)
        # usage stops
        stop = self.leave.copy()
        moved = self.plan_r == P.R_MOVED
        stop = np.where(sub & moved, self.leave - rng.uniform(10.0, 40.0, n), stop)
        stop = np.where(sub & (self.plan_r == P.R_INVOL), fail_day + self.sub_tod + 3.0, stop)
        self.usage_stop = np.maximum(stop, self.a)

        # cancel-flow inquiries without an order (price / quality_fit)
        p_inq = np.zeros(n)
        for reason, p in P.CHURN_INQUIRY_P.items():
            p_inq = np.where(self.plan_r == reason, p, p_inq)
        self.churn_inq = np.isfinite(self.plan_t) & (rng.random(n) < p_inq)
        # orders stop ~60 days before a subscriber leaves when they shop around first
        ostop = np.where(sub, np.where(self.churn_inq, self.leave - 60.0, self.usage_stop), self.plan_t)
        self.order_stop = np.minimum(ostop, H)

        # reactivation of churned subscribers: a new monthly subscription after a gap
        p_re = np.zeros(n)
        for reason, p in P.REACTIVATION_P.items():
            p_re = np.where(self.plan_r == reason, p, p_re)
        react = cancel + rng.uniform(20.0, 240.0, n)
        self.react = np.where(self.sub_churned & (rng.random(n) < p_re) & (react < H - 1.0), react, INF)

    # ------------------------------------------------------------------ 4. orders
    def orders(self) -> None:
        rng, n, cal = self.rng, self.n, self.cal
        idx = np.arange(n)
        shop = self.shopper
        w_end = self.cal.warp(np.minimum(self.order_stop, H))
        parts_o: list[np.ndarray] = []
        parts_t: list[np.ndarray] = []
        # purchase-only customers keep a regular rhythm (shape 4); subscribers shop irregularly (shape 2)
        for group, shape in ((shop & ~self.is_sub, 4.0), (shop & self.is_sub, 2.0)):
            g = idx[group]
            o, tw = renewal_process(
                rng, g, self.first_order_w[g], w_end[g], self.gap[g], shape, self.max_gap[g]
            )
            parts_o.append(o)
            parts_t.append(cal.unwarp(tw))
        o1 = np.concatenate(parts_o)
        t1 = np.concatenate(parts_t)
        # purchase-only churn: last order + 180 days
        buyer_only = ~self.is_sub
        last = np.full(n, -INF)
        np.maximum.at(last, o1, t1)
        churned_at = last + P.PURCHASE_CHURN_DAYS
        self.po_churned = (
            buyer_only & np.isfinite(last) & np.isfinite(self.plan_t) & (self.plan_t < H) & (churned_at < H)
        )
        self.last_order1 = last
        self.churned_at = np.where(self.sub_churned, self.cancel, np.where(self.po_churned, churned_at, INF))
        p_re = np.zeros(n)
        for reason, p in P.REACTIVATION_P.items():
            p_re = np.where(self.plan_r == reason, p, p_re)
        react_po = churned_at + rng.uniform(1.0, 150.0, n)
        po_react = self.po_churned & (rng.random(n) < p_re) & (react_po < H - 1.0)
        self.react = np.where(po_react, react_po, self.react)
        # orders after reactivation
        again = np.isfinite(self.react) & shop
        o2, t2w = renewal_process(
            rng,
            idx[again],
            cal.warp(self.react[again]) + rng.uniform(0.0, 3.0, again.sum()),
            np.full(again.sum(), cal.warp(np.array([H]))[0]),
            self.gap[again],
            4.0,
            np.full(again.sum(), P.MAX_WARPED_GAP_DAYS),
        )
        owner = np.concatenate([o1, o2])
        when = np.concatenate([t1, cal.unwarp(t2w)])
        when = np.minimum(when, H - 1e-6)
        order = np.lexsort((when, owner))
        self.o_owner = owner[order]
        self.o_time = when[order]
        self._order_lines()

    def _order_lines(self) -> None:
        rng, cal = self.rng, self.cal
        no = len(self.o_owner)
        owner, t = self.o_owner, self.o_time
        month = cal.month(t)
        nlines = 1 + np.minimum(rng.poisson(0.6, no), 4)
        lo = np.repeat(np.arange(no), nlines)
        nl = lo.size
        lowner = owner[lo]
        u = rng.random(nl)
        cat = np.where(
            u < 0.55,
            self.fav1[lowner],
            np.where(u < 0.8, self.fav2[lowner], rng.choice(len(P.CATEGORIES), nl, p=_p(P.CATEGORY_P))),
        )
        xmas = np.isin(month[lo], (10, 11)) & (rng.random(nl) < 0.30)
        cat = np.where(xmas, P.GIFTS, cat)
        # categories dropped before leaving: only the favourite category in the last 120 days
        near_leave = (
            (t[lo] > self.leave[lowner] - 120.0)
            & (t[lo] < self.leave[lowner])
            & np.isfinite(self.plan_t[lowner])
        )
        cat = np.where(near_leave, self.fav1[lowner], cat)
        qty = 1 + rng.poisson(0.3, nl)
        unit = np.asarray(P.CATEGORY_UNIT_PRICE)[cat] * np.exp(0.3 * rng.standard_normal(nl))
        unit_cents = np.maximum(np.round(unit) * 100 - 1, 99).astype(np.int64)
        gross = unit_cents * qty
        # discounts: price-sensitive customers mostly buy on discount; Black Friday week for all
        ps = self.price_sens[owner]
        disc_order = np.where(ps, rng.random(no) < 0.65, rng.random(no) < 0.12)
        rate = np.where(ps, rng.uniform(0.15, 0.35, no), rng.uniform(0.05, 0.15, no))
        dom = cal.day_of_month(t)
        black_friday = (month == 10) & (dom >= 22) & (rng.random(no) < 0.8)
        rate = np.where(black_friday, np.maximum(rate, 0.2), rate)
        disc_order = disc_order | black_friday
        rate = np.where(disc_order, rate, 0.0)
        ldisc = np.round(gross * rate[lo]).astype(np.int64)
        lamount = gross - ldisc
        self.ol_order = lo
        self.ol_cat = cat
        self.ol_qty = qty
        self.ol_amount = lamount
        self.ol_disc = ldisc
        self.o_amount = np.bincount(lo, weights=lamount, minlength=no).astype(np.int64)
        self.o_disc = np.bincount(lo, weights=ldisc, minlength=no).astype(np.int64)

    # ------------------------------------------------------------------ 5. subscription charges
    def subscription_rows(self) -> None:
        rng, n, cal = self.rng, self.n, self.cal
        s1 = np.flatnonzero(self.is_sub)
        s2 = np.flatnonzero(self.is_sub & np.isfinite(self.react))
        nsub = len(s1) + len(s2)
        self.sb_owner = np.concatenate([s1, s2])
        self.sb_seq = np.concatenate([np.ones(len(s1), np.int64), np.full(len(s2), 2, np.int64)])
        start = np.concatenate([self.sub_start[s1], self.react[s2]])
        self.sb_start = start
        day0 = np.floor(start).astype(np.int64)
        tod = start - day0
        step = np.concatenate([self.step[s1], np.ones(len(s2), np.int64)])
        plan = np.concatenate(
            [self.plan_idx[s1], np.where(self.plan_r[s2] == P.R_PRICE, 0, self.plan_idx[s2])]
        )
        self.sb_plan = plan
        self.sb_step = step
        cancel = np.concatenate([self.cancel[s1], np.full(len(s2), INF)])
        cancel = np.where(cancel < H, cancel, INF)
        self.sb_cancel = cancel
        reason = np.concatenate([self.plan_r[s1], np.zeros(len(s2), np.int64)])
        fail_day = np.concatenate([self.fail_day[s1], np.full(len(s2), INF)])
        is_inv = np.isfinite(fail_day) & (fail_day + tod < H)
        # charges at every anchor before min(cancel, end); one more anchor for the renewal date
        limit = np.minimum(cancel, H)
        k_n = np.floor((limit - day0) / (28.0 * step)).astype(np.int64) + 3
        k_n = np.maximum(k_n, 1)
        rep = np.repeat(np.arange(nsub), k_n)
        k = np.arange(rep.size) - np.repeat(_segment_starts(k_n), k_n)
        anchor = cal.add_months(day0[rep], k * step[rep]).astype(np.float64)
        due = anchor + tod[rep]
        # renewal date: first anchor >= cancel (voluntary), the failed renewal (involuntary), or the
        # first anchor on/after the end date (live)
        target = np.where(np.isfinite(cancel), cancel, H)
        cand = np.where(
            (k > 0) & (np.where(np.isfinite(cancel[rep]), due, anchor) >= target[rep]), anchor, INF
        )
        renewal = np.full(nsub, INF)
        np.minimum.at(renewal, rep, cand)
        renewal = np.where(is_inv, fail_day, renewal)
        self.sb_renewal = renewal.astype(np.int64)
        # price per period: the price increase applies to charges due on/after its day
        monthly = np.asarray(P.PLAN_MONTHLY_PRICE)[plan[rep]]
        factor = np.where(anchor >= cal.price_increase_day, P.PRICE_INCREASE_FACTOR, 1.0)
        mult = np.where(step[rep] == 12, P.YEARLY_MONTHS_CHARGED, 1)
        price_cents = np.round(monthly * factor * 100.0).astype(np.int64) * mult
        charged = (due < limit[rep]) & (due >= 0.0) & (due < H)
        # the current price: price at the last charged anchor (or the next one if none charged)
        cur = np.where(anchor < renewal[rep], price_cents, -1)
        sub_price = np.zeros(nsub, np.int64)
        np.maximum.at(sub_price, rep, cur)
        base_price = np.round(np.asarray(P.PLAN_MONTHLY_PRICE)[plan] * 100.0).astype(np.int64) * np.where(
            step == 12, P.YEARLY_MONTHS_CHARGED, 1
        )
        self.sb_price = np.where(sub_price > 0, sub_price, base_price)
        # cancel reason filled in with the cancel flow answers (feedback step)
        self.sb_reason = reason
        self.sb_is_inv = is_inv

        # --- payment attempts of the charges
        c_rep = rep[charged]
        c_due = due[charged]
        c_amt = price_cents[charged]
        nc = len(c_rep)
        fail_charge = is_inv[c_rep] & (anchor[charged] == fail_day[c_rep])
        # precursors for involuntary churners: late or failed-then-recovered charges in the last 100 days
        pre_window = is_inv[c_rep] & ~fail_charge & (c_due > fail_day[c_rep] - 100.0)
        u = rng.random(nc)
        late = (u < P.LATE_CHARGE_P) | (pre_window & (u < P.INVOL_PRECURSOR_P * 0.4))
        recovered = ~late & (
            (u > 1.0 - P.FAILED_RECOVERED_P) | (pre_window & (u > 1.0 - P.INVOL_PRECURSOR_P * 0.6))
        )
        recovered &= ~fail_charge
        late &= ~fail_charge
        # attempts: normal 1; late 1 (later); recovered 2 or 3; failing 3
        third = recovered & (rng.random(nc) < 0.2)
        n_att = np.where(fail_charge, 3, np.where(recovered, np.where(third, 3, 2), 1))
        arep = np.repeat(np.arange(nc), n_att)
        att = np.arange(arep.size) - np.repeat(_segment_starts(n_att), n_att) + 1
        delay = np.asarray((0.0, *P.DUNNING_RETRY_DAYS[1:]))[np.minimum(att - 1, 2)]
        late_shift = np.where(late[arep], rng.uniform(1.0, 6.0, arep.size), 0.0)
        attempted = c_due[arep] + delay + late_shift + rng.uniform(0.0, 0.02, arep.size)
        last_att = att == n_att[arep]
        failed = fail_charge[arep] | (recovered[arep] & ~last_att)
        status = np.where(failed, 1, 0)  # 0 succeeded 1 failed 2 refunded
        status = np.where(~failed & (rng.random(arep.size) < 0.003), 2, status)
        code = np.where(
            fail_charge[arep],
            rng.choice(len(P.FAILURE_CODES), arep.size, p=_p((0.45, 0.30, 0.12, 0.10, 0.03))),
            rng.choice(len(P.FAILURE_CODES), arep.size, p=_p((0.15, 0.45, 0.15, 0.15, 0.10))),
        )
        ok = attempted < H
        self.pay_sub = dict(
            sub=c_rep[arep][ok],
            due=c_due[arep][ok],
            attempted=attempted[ok],
            attempt=att[ok],
            amount=c_amt[arep][ok],
            status=status[ok],
            code=code[ok],
        )
        # first failure time per customer (billing tickets)
        first_fail = np.full(n, INF)
        fmask = ok & failed
        np.minimum.at(first_fail, self.sb_owner[c_rep[arep][fmask]], attempted[fmask])
        self.first_fail = first_fail

    # ------------------------------------------------------------------ 6. usage
    def usage(self) -> None:
        rng, n, cal = self.rng, self.n, self.cal
        lam = P.USAGE_RATE_PER_DAY * self.engagement * np.where(self.is_sub, 1.25, 0.75)
        smax = float(max(P.USAGE_MONTH_FACTOR))
        # segment 1: [a, usage_stop), segment 2: [react, end); segments interleaved per customer so
        # the events come out ordered by (customer, time) without a sort: sorted uniforms are drawn
        # as normalised cumulative sums of exponentials within each segment
        e1 = np.minimum(self.usage_stop, H)
        s2 = np.where(np.isfinite(self.react), self.react, H)
        seg_s = np.empty(2 * n)
        seg_e = np.empty(2 * n)
        seg_s[0::2], seg_s[1::2] = self.a, s2
        seg_e[0::2], seg_e[1::2] = e1, H
        seg_o = np.repeat(np.arange(n), 2)
        seg_two = np.tile(np.array([False, True]), n)
        length = np.maximum(seg_e - seg_s, 0.0)
        cnt = rng.poisson(lam[seg_o] * smax * length)
        cnt1 = cnt + 1
        rep1 = np.repeat(np.arange(2 * n), cnt1)
        gaps = rng.exponential(1.0, rep1.size)
        cs = np.cumsum(gaps)
        starts = _segment_starts(cnt1)
        ends = starts + cnt1 - 1
        base = cs[starts] - gaps[starts]
        total = cs[ends] - base
        pts = np.ones(rep1.size, bool)
        pts[ends] = False
        rep = rep1[pts]
        t = seg_s[rep] + (cs[pts] - base[rep]) / total[rep] * length[rep]
        del rep1, gaps, cs, pts
        own = seg_o[rep]
        # decline before leaving
        r = self.plan_r[own]
        leave = self.leave[own]
        mult = np.ones(rep.size)
        decl_days = np.where(r == P.R_QUALITY, 60.0 + 30.0 * ((own * 7919) % 97) / 96.0, 60.0)
        floor = np.select(
            [r == P.R_QUALITY, r == P.R_PRICE, r == P.R_SERVICE], [0.12, 0.55, 0.3], default=1.0
        )
        ds = np.where(
            (r == P.R_SERVICE) & (self.victim[own] >= 0),
            self.first_err[own],
            np.where(r == P.R_SERVICE, leave - 45.0, leave - decl_days),
        )
        with np.errstate(invalid="ignore"):
            frac = np.nan_to_num(np.clip((t - ds) / np.maximum(leave - ds, 1.0), 0.0, 1.0))
        declining = np.isin(r, (P.R_QUALITY, P.R_PRICE, P.R_SERVICE)) & ~seg_two[rep]
        mult = np.where(declining, 1.0 - (1.0 - floor) * frac, mult)
        accept = rng.random(rep.size) * smax < cal.usage_factor(t) * mult
        own, t = own[accept], t[accept]
        m = own.size
        etype = rng.choice(len(P.EVENT_TYPES), m, p=_p(P.EVENT_P))
        ecode = np.where(etype == 4, rng.integers(0, len(P.BASE_ERROR_CODES), m), -1)
        # the faults: victims' error events with the incident's code
        vic = np.flatnonzero(self.victim >= 0)
        codes = list(P.BASE_ERROR_CODES) + [i.code for i in cal.incidents]
        if len(vic):
            inc_end = np.asarray([i.end for i in cal.incidents])[self.victim[vic]]
            hi = np.minimum(inc_end, self.usage_stop[vic])
            lo = self.first_err[vic]
            k = np.where(hi > lo, 1 + rng.poisson(3.0, len(vic)), 0)
            vrep = np.repeat(np.arange(len(vic)), k)
            vt = lo[vrep] + rng.random(vrep.size) * (hi - lo)[vrep]
            vt[_segment_starts(k)[k > 0]] = lo[k > 0]
            v_own = vic[vrep]
            v_code = len(P.BASE_ERROR_CODES) + self.victim[vic][vrep]
            v_order = np.lexsort((vt, v_own))
            v_own, vt, v_code = v_own[v_order], vt[v_order], v_code[v_order]
            # merge into the (customer, time)-ordered events
            pos = np.searchsorted(own * 1024.0 + t, v_own * 1024.0 + vt)
            own = np.insert(own, pos, v_own)
            t = np.insert(t, pos, vt)
            etype = np.insert(etype, pos, 4)
            ecode = np.insert(ecode, pos, v_code)
        self.ev = dict(owner=own, t=t, etype=etype, code=ecode)
        self.error_codes = tuple(codes)

    # ------------------------------------------------------------------ 7. tickets
    def tickets(self) -> None:
        rng, n = self.rng, self.n
        parts: list[dict[str, np.ndarray]] = []

        def add(
            owner: np.ndarray,
            t: np.ndarray,
            cat: np.ndarray | int,
            code: np.ndarray | int = -1,
            bad: np.ndarray | bool = False,
            unresolved: np.ndarray | bool | None = None,
        ) -> None:
            m = len(owner)
            if m == 0:
                return
            parts.append(
                dict(
                    owner=np.asarray(owner, np.int64),
                    t=np.asarray(t, np.float64),
                    cat=np.broadcast_to(np.asarray(cat, np.int64), (m,)).copy(),
                    code=np.broadcast_to(np.asarray(code, np.int64), (m,)).copy(),
                    bad=np.broadcast_to(np.asarray(bad, bool), (m,)).copy(),
                    unres=(
                        np.broadcast_to(np.asarray(unresolved, bool), (m,)).copy()
                        if unresolved is not None
                        else rng.random(m) < 0.05
                    ),
                )
            )

        active_end = np.minimum(self.usage_stop, H)
        span = np.maximum(active_end - self.a, 0.0)
        # baseline tickets
        k = rng.poisson(P.BASE_TICKETS_PER_YEAR * span / 365.0)
        o = np.repeat(np.arange(n), k)
        cat = rng.choice(len(P.TICKET_CATEGORIES), o.size, p=_p(P.BASE_TICKET_P))
        cat = np.where((cat == 3) & ~self.shopper[o], 4, cat)  # delivery only for shoppers
        code = np.where(
            (cat == 1) & (rng.random(o.size) < 0.3), rng.integers(0, len(P.BASE_ERROR_CODES), o.size), -1
        )
        add(o, _uniform_in(rng, self.a[o], active_end[o]), cat, code)
        # noise: inquiries without an order from customers who stay
        k = rng.poisson(P.NOISE_INQUIRIES_PER_YEAR * span / 365.0)
        o = np.repeat(np.arange(n), k)
        add(o, _uniform_in(rng, self.a[o], active_end[o]), 0)
        # pre-sales inquiries followed by an order
        sel = rng.random(len(self.o_owner)) < P.INQUIRY_BEFORE_ORDER_P
        o = self.o_owner[sel]
        add(o, np.maximum(self.o_time[sel] - rng.uniform(0.2, 5.0, sel.sum()), self.a[o]), 0)
        # inquiries without an order before leaving (price / quality_fit)
        ci = np.flatnonzero(self.churn_inq)
        k = 1 + np.minimum(rng.poisson(1.2, len(ci)), 3)
        o = ci[np.repeat(np.arange(len(ci)), k)]
        sub = self.is_sub[o]
        lo = np.where(sub, self.leave[o] - 58.0, self.plan_t[o])
        hi = np.where(
            sub, self.leave[o] - 2.0, np.minimum(self.plan_t[o] + 90.0, self.last_order1[o] + 175.0)
        )
        add(o, _uniform_in(rng, lo, hi), 0)
        # complaints about the faults
        c = np.flatnonzero(self.complained)
        add(
            c,
            self.first_err[c] + rng.uniform(0.1, 3.0, len(c)),
            1,
            len(P.BASE_ERROR_CODES) + self.victim[c],
            True,
            self.unresolved[c],
        )
        # service failures without a fault: an unresolved ticket before leaving
        sf = np.flatnonzero(
            (self.plan_r == P.R_SERVICE)
            & (self.victim < 0)
            & np.isfinite(self.plan_t)
            & (rng.random(n) < 0.75)
        )
        cat = np.where(self.shopper[sf] & (rng.random(len(sf)) < 0.4), 3, 1)
        add(sf, self.leave[sf] - rng.uniform(5.0, 40.0, len(sf)), cat, -1, True, rng.random(len(sf)) < 0.7)
        # quality_fit: a disappointed ticket
        qf = np.flatnonzero((self.plan_r == P.R_QUALITY) & np.isfinite(self.plan_t) & (rng.random(n) < 0.3))
        add(qf, self.leave[qf] - rng.uniform(10.0, 90.0, len(qf)), 5, -1, True)
        # billing tickets after a failed charge
        bf = np.flatnonzero(np.isfinite(self.first_fail) & (rng.random(n) < 0.35))
        add(bf, self.first_fail[bf] + rng.uniform(0.05, 3.0, len(bf)), 2)

        tk = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else None
        if tk is None:
            self.tk = None
            return
        keep = (tk["t"] < H) & (tk["t"] >= np.maximum(self.a[tk["owner"]], 0.0))
        tk = {key: v[keep] for key, v in tk.items()}
        m = len(tk["owner"])
        resolve = tk["t"] + np.exp(np.log(1.5) + 1.0 * rng.standard_normal(m))
        open_recent = (H - tk["t"] < 14.0) & (rng.random(m) < 0.4)
        unres = tk["unres"] | open_recent | (resolve >= H)
        resolved_at = np.where(unres, INF, resolve)
        rated = ~unres & (rng.random(m) < 0.55)
        sat = (
            np.where(
                tk["bad"],
                rng.choice(5, m, p=_p(P.SATISFACTION_P_BAD)),
                rng.choice(5, m, p=_p(P.SATISFACTION_P_NORMAL)),
            )
            + 1
        )
        sat = np.where(rated, sat, 0)
        order = np.lexsort((tk["t"], tk["owner"]))
        self.tk = dict(
            owner=tk["owner"][order],
            t=tk["t"][order],
            resolved=resolved_at[order],
            cat=tk["cat"][order],
            code=tk["code"][order],
            sat=sat[order],
        )

    # ------------------------------------------------------------------ 8. cancel flow
    def feedback(self) -> None:
        rng = self.rng
        nsub = len(self.sb_owner)
        vol = np.isfinite(self.sb_cancel) & ~self.sb_is_inv & (self.sb_seq == 1)
        answer = vol & (rng.random(nsub) < P.FEEDBACK_ANSWER_P)
        true_fb = np.select(
            [
                self.sb_reason == P.R_PRICE,
                self.sb_reason == P.R_QUALITY,
                self.sb_reason == P.R_SERVICE,
                self.sb_reason == P.R_MOVED,
            ],
            [0, 1, 2, 3],
            default=4,
        )
        truthful = rng.random(nsub) < P.FEEDBACK_TRUTHFUL_P
        shift = rng.integers(1, 5, nsub)
        stated = np.where(truthful, true_fb, (true_fb + shift) % 5)
        a_idx = np.flatnonzero(answer)
        st = stated[a_idx]
        offer = np.select([st == 0, st == 1, st == 2, st == 3], [0, 3, 2, 1], default=1)
        offer = np.where(rng.random(len(a_idx)) < 0.2, -1, offer)
        t_ans = self.sb_cancel[a_idx] - rng.uniform(0.0005, 0.01, len(a_idx))
        # deflected: live subscribers who opened the cancel flow, took the offer and stayed
        live = ~np.isfinite(self.sb_cancel)
        d_idx = np.flatnonzero(live & (rng.random(nsub) < P.DEFLECTED_P))
        d_lo = np.maximum(self.sb_start[d_idx], 0.0)
        d_t = _uniform_in(rng, d_lo, np.full(len(d_idx), H - 0.5))
        d_st = rng.choice(5, len(d_idx), p=_p((0.5, 0.25, 0.1, 0.05, 0.1)))
        d_offer = np.where(d_st == 0, 0, rng.choice(3, len(d_idx)))
        self.fb = dict(
            sub=np.concatenate([a_idx, d_idx]),
            t=np.concatenate([t_ans, d_t]),
            stated=np.concatenate([st, d_st]),
            offer=np.concatenate([offer, d_offer]),
            accepted=np.concatenate([np.zeros(len(a_idx), bool), np.ones(len(d_idx), bool)]),
        )
        # subscriptions.cancel_reason: payment_failed by billing, else the stated reason (if any)
        cr = np.full(nsub, -1)
        cr[a_idx] = st
        self.sb_cancel_reason = np.where(self.sb_is_inv & np.isfinite(self.sb_cancel), 5, cr)

    # ------------------------------------------------------------------ 9. tables
    def build(self) -> ChunkResult:
        cal, rng = self.cal, self.rng
        n = self.n
        cid = self.customer_ids
        # customers
        nums = self.first_no + np.arange(n)
        emails = [
            f"{P.FIRST_NAMES[f].capitalize() if c else P.FIRST_NAMES[f]}.{P.LAST_NAMES[ln]}+{num}@example.com"
            for f, ln, num, c in zip(
                self.fname.tolist(), self.lname.tolist(), nums.tolist(), self.capital.tolist(), strict=True
            )
        ]
        customers = pa.table(
            {
                "customer_id": cid,
                "signup_at": _ts(cal, self.signup),
                "email": pa.array(emails, type=pa.string()),
                "country": _cat(tuple(c[0] for c in P.COUNTRIES), self.country),
                "time_zone": _cat(tuple(c[1] for c in P.COUNTRIES), self.country),
                "marketing_consent": pa.array(self.consent, type=pa.bool_()),
                "acquisition_channel": _cat(tuple(c[0] for c in P.CHANNELS), self.channel),
            }
        )
        # subscriptions
        sb_custnum = self.first_no + self.sb_owner
        digits = pc.utf8_lpad(pa.array(sb_custnum).cast(pa.string()), width=self.id_width, padding="0")
        sub_ids = pc.binary_join_element_wise("S", digits, "-", pa.array(self.sb_seq).cast(pa.string()), "")
        reason_vocab = (*P.FEEDBACK_REASONS, "payment_failed")
        cr = self.sb_cancel_reason
        subscriptions = pa.table(
            {
                "subscription_id": sub_ids,
                "customer_id": cid.take(pa.array(self.sb_owner)),
                "plan": _cat(P.PLANS, self.sb_plan),
                "price": _money(self.sb_price),
                "billing_period": _cat(("month", "year"), (self.sb_step == 12).astype(np.int32)),
                "started_at": _ts(cal, self.sb_start),
                "renewal_date": pa.array(cal.to_epoch_day(self.sb_renewal), type=pa.date32()),
                "cancelled_at": _ts(cal, self.sb_cancel),
                "cancel_reason": _cat(reason_vocab, np.maximum(cr, 0), cr < 0),
            }
        )
        # orders and lines
        no = len(self.o_owner)
        order_ids = _ids("O", self.id_base + np.arange(no), 12)
        orders = pa.table(
            {
                "order_id": order_ids,
                "customer_id": cid.take(pa.array(self.o_owner)),
                "ordered_at": _ts(cal, self.o_time),
                "amount": _money(self.o_amount),
                "discount_amount": _money(self.o_disc),
            }
        )
        nl = len(self.ol_order)
        order_lines = pa.table(
            {
                "order_line_id": _ids("L", self.id_base + np.arange(nl), 12),
                "order_id": order_ids.take(pa.array(self.ol_order)),
                "category": _cat(P.CATEGORIES, self.ol_cat),
                "quantity": pa.array(self.ol_qty.astype(np.int32), type=pa.int32()),
                "amount": _money(self.ol_amount),
                "discount_amount": _money(self.ol_disc),
            }
        )
        # payments: subscription charges + order payments
        ps = self.pay_sub
        op_fail = rng.random(no) < 0.015
        op_n = np.where(op_fail, 2, 1)
        orep = np.repeat(np.arange(no), op_n)
        oatt = np.arange(orep.size) - np.repeat(_segment_starts(op_n), op_n) + 1
        o_att_t = (
            self.o_time[orep]
            + rng.uniform(0.0, 0.0007, orep.size)
            + (oatt - 1) * rng.uniform(0.001, 0.02, orep.size)
        )
        o_att_t = np.minimum(o_att_t, H - 1e-6)
        o_status = np.where(op_fail[orep] & (oatt == 1), 1, 0)
        o_status = np.where((o_status == 0) & (rng.random(orep.size) < 0.005), 2, o_status)
        o_code = rng.choice(len(P.FAILURE_CODES), orep.size, p=_p((0.1, 0.5, 0.15, 0.2, 0.05)))
        p_owner = np.concatenate([self.sb_owner[ps["sub"]], self.o_owner[orep]])
        p_sub = np.concatenate([ps["sub"], np.full(orep.size, -1)])
        p_due = np.concatenate([ps["due"], self.o_time[orep]])
        p_att = np.concatenate([ps["attempted"], o_att_t])
        p_no = np.concatenate([ps["attempt"], oatt])
        p_amt = np.concatenate([ps["amount"], self.o_amount[orep]])
        p_status = np.concatenate([ps["status"], o_status])
        p_code = np.concatenate([ps["code"], o_code])
        order = np.lexsort((p_no, p_due, p_owner))
        p_owner, p_sub, p_due, p_att, p_no, p_amt, p_status, p_code = (
            x[order] for x in (p_owner, p_sub, p_due, p_att, p_no, p_amt, p_status, p_code)
        )
        npay = len(p_owner)
        sub_mask = p_sub < 0
        payments = pa.table(
            {
                "payment_id": _ids("P", self.id_base + np.arange(npay), 12),
                "customer_id": cid.take(pa.array(p_owner)),
                "subscription_id": sub_ids.take(
                    pa.array(np.maximum(p_sub, 0), mask=sub_mask if sub_mask.any() else None)
                )
                if len(sub_ids)
                else pa.nulls(npay, pa.string()),
                "due_at": _ts(cal, p_due),
                "attempted_at": _ts(cal, p_att),
                "attempt_number": pa.array(p_no.astype(np.int32), type=pa.int32()),
                "amount": _money(p_amt),
                "status": _cat(("succeeded", "failed", "refunded"), p_status),
                "failure_code": _cat(P.FAILURE_CODES, p_code, p_status != 1),
            }
        )
        # usage events
        ev = self.ev
        ne = len(ev["owner"])
        usage_events = pa.table(
            {
                "event_id": pa.array(self.ev_base + np.arange(ne, dtype=np.int64), type=pa.int64()),
                "customer_id": cid.take(pa.array(ev["owner"])),
                "occurred_at": _ts(cal, ev["t"]),
                "event_type": _cat(P.EVENT_TYPES, ev["etype"]),
                "error_code": _cat(self.error_codes, np.maximum(ev["code"], 0), ev["code"] < 0),
            }
        )
        # support tickets
        tk = self.tk
        nt = len(tk["owner"]) if tk else 0
        if tk:
            support_tickets = pa.table(
                {
                    "ticket_id": _ids("T", self.id_base + np.arange(nt), 12),
                    "customer_id": cid.take(pa.array(tk["owner"])),
                    "opened_at": _ts(cal, tk["t"]),
                    "resolved_at": _ts(cal, tk["resolved"]),
                    "category": _cat(P.TICKET_CATEGORIES, tk["cat"]),
                    "error_code": _cat(self.error_codes, np.maximum(tk["code"], 0), tk["code"] < 0),
                    "satisfaction": pa.array(
                        tk["sat"].astype(np.int32), type=pa.int32(), mask=tk["sat"] == 0
                    ),
                }
            )
        else:
            support_tickets = None
        # cancellation feedback
        fb = self.fb
        order = np.lexsort((fb["t"], fb["sub"]))
        fb = {k: v[order] for k, v in fb.items()}
        nf = len(fb["sub"])
        stated = fb["stated"]
        text_choice = rng.integers(0, 4, nf)
        texts = []
        for s_, c_ in zip(stated.tolist(), text_choice.tolist(), strict=True):
            options = P.FREE_TEXT[P.FEEDBACK_REASONS[s_]]
            texts.append(options[c_ % len(options)])
        no_text = rng.random(nf) < 0.25
        feedback = pa.table(
            {
                "feedback_id": _ids("F", self.id_base + np.arange(nf), 12),
                "customer_id": cid.take(pa.array(self.sb_owner[fb["sub"]])),
                "subscription_id": sub_ids.take(pa.array(fb["sub"])),
                "submitted_at": _ts(cal, fb["t"]),
                "reason_category": _cat(P.FEEDBACK_REASONS, stated),
                "free_text": pa.array(texts, type=pa.string(), mask=no_text if no_text.any() else None),
                "offer_shown": _cat(P.OFFERS, np.maximum(fb["offer"], 0), fb["offer"] < 0),
                "offer_accepted": pa.array(fb["accepted"], type=pa.bool_()),
            }
        )
        tables = {
            "customers": customers,
            "subscriptions": subscriptions,
            "orders": orders,
            "order_lines": order_lines,
            "payments": payments,
            "usage_events": usage_events,
            "cancellation_feedback": feedback,
        }
        if support_tickets is not None:
            tables["support_tickets"] = support_tickets
        return ChunkResult(tables, self.truth(cid))

    def truth(self, cid: pa.Array) -> pa.Table:
        churned = np.flatnonzero(self.churned_at < H)
        r = self.plan_r[churned]
        mech: list[str] = []
        codes = [i.code for i in self.cal.incidents]
        for i, reason in zip(churned.tolist(), r.tolist(), strict=True):
            buyer_only = not self.is_sub[i]
            if reason == P.R_PRICE:
                text = "price-sensitive (mostly discounted orders)"
                if buyer_only:
                    text += "; stopped ordering"
                else:
                    text += "; cancelled just before a renewal"
                    if self.price_shock[i]:
                        text += " after the price increase"
            elif reason == P.R_QUALITY:
                text = "usage declined over the last 60-90 days"
            elif reason == P.R_SERVICE:
                if self.victim[i] >= 0:
                    how = (
                        "complained, unresolved"
                        if self.unresolved[i]
                        else "complained, resolved"
                        if self.complained[i]
                        else "silent"
                    )
                    text = f"hit by product fault {codes[self.victim[i]]} ({how})"
                else:
                    text = "unresolved support problem before leaving"
            elif reason == P.R_INVOL:
                text = "card failed at renewal, 3 attempts failed, billing cancelled (payment_failed)"
            else:
                text = "usage stopped abruptly (moved / no longer needed)"
            if self.churn_inq[i]:
                text += "; inquiries without an order before leaving"
            if buyer_only:
                text += "; purchase-only: churn = last order + 180 days"
            if np.isfinite(self.react[i]):
                text += "; reactivated later"
            mech.append(text)
        return pa.table(
            {
                "customer_id": cid.take(pa.array(churned)),
                "churned_at": _ts(self.cal, self.churned_at[churned]),
                "true_reason": _cat(P.REASONS, r),
                "mechanism": pa.array(mech, type=pa.string()),
            }
        )

    def run(self) -> ChunkResult:
        self.customers()
        self.plan()
        self.subscriptions()
        self.orders()
        self.subscription_rows()
        self.usage()
        self.tickets()
        self.feedback()
        return self.build()
