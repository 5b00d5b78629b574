"""Time axis of one generated company: days relative to the window start, as float64.

Day 0 is ``end_date - 730 days`` at 00:00 UTC; the data covers days [0, 730).  Customers who
signed up before the window have negative signup days.  Helpers turn day numbers into Arrow
timestamps/dates, add calendar months (subscription renewals), look up seasonal factors and
warp time so a regular purchase rhythm speeds up in November/December.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from retention.generator import params as P

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Incident:
    code: str
    start: float
    end: float
    device: int
    spec: P.Incident


@dataclass
class Calendar:
    end_date: date
    start_date: date = field(init=False)
    start_d: np.datetime64 = field(init=False)
    start_epoch_day: int = field(init=False)
    grid0: int = field(init=False)
    month_of_day: np.ndarray = field(init=False, repr=False)
    dom_of_day: np.ndarray = field(init=False, repr=False)
    usage_factor_day: np.ndarray = field(init=False, repr=False)
    warp_days: np.ndarray = field(init=False, repr=False)
    warp_cum: np.ndarray = field(init=False, repr=False)
    price_increase_day: float = field(init=False)
    incidents: tuple[Incident, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.start_date = self.end_date - timedelta(days=P.HISTORY_DAYS)
        self.start_d = np.datetime64(self.start_date.isoformat(), "D")
        self.start_epoch_day = (self.start_date - _EPOCH).days
        self.grid0 = -P.PRE_HISTORY_DAYS - 40
        days = np.arange(self.grid0, P.HISTORY_DAYS + 800, dtype=np.int64)
        month = (self.start_d + days.astype("timedelta64[D]")).astype("M8[M]").astype(np.int64) % 12
        self.month_of_day = month.astype(np.int8)
        dates = self.start_d + days.astype("timedelta64[D]")
        self.dom_of_day = (dates - dates.astype("M8[M]").astype("M8[D]")).astype(np.int16) + 1
        self.usage_factor_day = np.asarray(P.USAGE_MONTH_FACTOR)[month]
        order_factor = np.asarray(P.ORDER_MONTH_FACTOR)[month]
        self.warp_days = np.concatenate([days, [days[-1] + 1]]).astype(np.float64)
        self.warp_cum = np.concatenate([[0.0], np.cumsum(order_factor)])
        self.price_increase_day = float(P.HISTORY_DAYS - P.PRICE_INCREASE_DAYS_BEFORE_END)
        self.incidents = tuple(
            Incident(
                code=i.code,
                start=float(P.HISTORY_DAYS - i.days_before_end),
                end=float(P.HISTORY_DAYS - i.days_before_end + i.duration_days),
                device=P.DEVICES.index(i.device),
                spec=i,
            )
            for i in P.INCIDENTS
        )

    # --- lookups -------------------------------------------------------------------------
    def _idx(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(t).astype(np.int64) - self.grid0, 0, len(self.month_of_day) - 1)

    def month(self, t: np.ndarray) -> np.ndarray:
        """Calendar month 0..11 (0 = January) of each day number."""
        return self.month_of_day[self._idx(t)]

    def day_of_month(self, t: np.ndarray) -> np.ndarray:
        """Day of the month 1..31 of each day number."""
        return self.dom_of_day[self._idx(t)]

    def usage_factor(self, t: np.ndarray) -> np.ndarray:
        return self.usage_factor_day[self._idx(t)]

    def warp(self, t: np.ndarray) -> np.ndarray:
        """Real days -> 'shopping time' (runs faster in Nov/Dec)."""
        return np.interp(t, self.warp_days, self.warp_cum)

    def unwarp(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.warp_cum, self.warp_days)

    # --- calendar months -----------------------------------------------------------------
    def add_months(self, day0: np.ndarray, months: np.ndarray) -> np.ndarray:
        """Day number of (date of day0) + months calendar months (day of month clipped)."""
        d = self.start_d + np.asarray(day0, dtype=np.int64).astype("timedelta64[D]")
        m = d.astype("M8[M]")
        dom = (d - m.astype("M8[D]")).astype(np.int64)
        tm = m + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
        dim = ((tm + 1).astype("M8[D]") - tm.astype("M8[D]")).astype(np.int64)
        out = tm.astype("M8[D]") + np.minimum(dom, dim - 1).astype("timedelta64[D]")
        return (out - self.start_d).astype(np.int64)

    def first_anchor_at_or_after(
        self, day0: np.ndarray, step: np.ndarray, t: np.ndarray, min_k: int = 1
    ) -> np.ndarray:
        """Smallest renewal anchor day (day0 + k*step months, k >= min_k) whose time is >= t.

        Anchors carry the subscription's time of day: anchor time = anchor day + (t0 - day0).
        ``t`` is compared against the anchor day (the renewal date).
        """
        k0 = np.maximum(min_k, np.floor((t - day0) / (P.MONTH_DAYS * step)).astype(np.int64) - 1)
        best = np.full(len(day0), np.iinfo(np.int64).max, dtype=np.int64)
        for extra in range(5):
            cand = self.add_months(day0, (k0 + extra) * step)
            ok = (cand >= t) & (cand < best)
            best = np.where(ok, cand, best)
        return best

    # --- conversions ---------------------------------------------------------------------
    def to_us(self, t: np.ndarray) -> np.ndarray:
        """Day numbers -> microseconds since the epoch (whole seconds)."""
        secs = np.floor(np.nan_to_num(t, nan=0.0) * 86400.0).astype(np.int64)
        return (secs + self.start_epoch_day * 86400) * 1_000_000

    def to_epoch_day(self, day: np.ndarray) -> np.ndarray:
        return (np.asarray(day, dtype=np.int64) + self.start_epoch_day).astype(np.int32)

    def day_of(self, when: date) -> int:
        return (when - self.start_date).days
