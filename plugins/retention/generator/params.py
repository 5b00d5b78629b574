"""Constants of the simulated business: catalogue, plans, hazards, incidents, names.

Everything the simulation draws from lives here, so the planted mechanisms can be read (and
tuned) in one place.  Rates are per 30.44 days (one average month) unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

HISTORY_DAYS = 730  # the data covers [end_date - 730 days, end_date)
PRE_HISTORY_DAYS = 400  # customers who signed up before the window (their data starts with the window)
MONTH_DAYS = 30.44
PURCHASE_CHURN_DAYS = 180  # interfaces: purchase-only churn = last order + 180 days

# reason codes (index into REASONS); 0 = did not churn
REASONS: tuple[str, ...] = ("", "price", "quality_fit", "service_failure", "involuntary", "moved_no_need")
R_NONE, R_PRICE, R_QUALITY, R_SERVICE, R_INVOL, R_MOVED = range(6)
FEEDBACK_REASONS: tuple[str, ...] = ("price", "quality_fit", "service_failure", "moved_no_need", "other")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --- customers -------------------------------------------------------------------------------
COUNTRIES: tuple[tuple[str | None, str, float], ...] = (
    ("DE", "Europe/Berlin", 0.19),
    ("US", "America/New_York", 0.09),
    ("US", "America/Chicago", 0.05),
    ("US", "America/Los_Angeles", 0.06),
    ("GB", "Europe/London", 0.10),
    ("FR", "Europe/Paris", 0.08),
    ("NL", "Europe/Amsterdam", 0.04),
    ("ES", "Europe/Madrid", 0.05),
    ("IT", "Europe/Rome", 0.05),
    ("PL", "Europe/Warsaw", 0.03),
    ("SE", "Europe/Stockholm", 0.03),
    ("AT", "Europe/Vienna", 0.03),
    ("CH", "Europe/Zurich", 0.02),
    ("CA", "America/Toronto", 0.04),
    ("AU", "Australia/Sydney", 0.03),
    ("JP", "Asia/Tokyo", 0.03),
    ("BR", "America/Sao_Paulo", 0.03),
    ("IN", "Asia/Kolkata", 0.02),
    (None, "Europe/Berlin", 0.03),  # country unknown in the CRM
)
CHANNELS: tuple[tuple[str | None, float], ...] = (
    ("organic", 0.30),
    ("paid_search", 0.20),
    ("social", 0.17),
    ("referral", 0.12),
    ("partner", 0.08),
    ("email", 0.07),
    ("affiliate", 0.05),
    (None, 0.01),
)
FIRST_NAMES: tuple[str, ...] = _words(
    "anna ben clara david emma felix greta hugo ida jonas klara leon mia noah olivia paul quinn "
    "rosa samuel tara umar vera william xenia yusuf zoe lucas sofia mateo chloe liam amelie "
    "hana kenji priya arjun lena marco elena tomas"
)
LAST_NAMES: tuple[str, ...] = _words(
    "schmidt mueller smith johnson martin bernard rossi russo garcia lopez nowak kowalski "
    "jansen devries andersson nilsson huber gruber brown wilson taylor dubois moreau tanaka "
    "sato silva santos sharma patel fischer weber wagner becker hoffmann keller meier novak "
    "horvat costa lee"
)
SUBSCRIBER_SHARE = 0.60
PRICE_SENSITIVE_SHARE = 0.25
CONSENT_SHARE = 0.70
SUBSCRIBER_SHOPPER_SHARE = 0.50
# hidden device of the customer: the product faults hit one device cohort
DEVICES: tuple[str, ...] = ("web", "android", "ios", "smart_tv")
DEVICE_P: tuple[float, ...] = (0.45, 0.25, 0.15, 0.15)

# --- subscriptions ---------------------------------------------------------------------------
PLANS: tuple[str, ...] = ("basic", "standard", "premium")
PLAN_P: tuple[float, ...] = (0.45, 0.38, 0.17)
PLAN_MONTHLY_PRICE: tuple[float, ...] = (7.99, 12.99, 17.99)
YEARLY_SHARE = 0.20
YEARLY_MONTHS_CHARGED = 10  # a yearly plan costs ten monthly prices
PRICE_INCREASE_DAYS_BEFORE_END = 270  # list prices rise on this day (before the end date)
PRICE_INCREASE_FACTOR = 1.15
PRICE_SHOCK_CHURN_P = 0.45  # price-sensitive subscribers who leave at their first renewal at the new price

# competing monthly hazards of leaving, per reason (subscribers / purchase-only customers)
SUB_HAZARD = {R_QUALITY: 0.009, R_MOVED: 0.005, R_PRICE: 0.002, R_SERVICE: 0.002, R_INVOL: 0.005}
SHOP_HAZARD = {R_QUALITY: 0.008, R_MOVED: 0.005, R_PRICE: 0.002, R_SERVICE: 0.002}
PRICE_SENSITIVE_EXTRA_HAZARD = 0.010
LOW_ENGAGEMENT_QUALITY_FACTOR = 2.0

# reactivation: share of churners who come back, per reason
REACTIVATION_P = {R_PRICE: 0.22, R_QUALITY: 0.08, R_SERVICE: 0.12, R_INVOL: 0.30, R_MOVED: 0.04}

# --- payments --------------------------------------------------------------------------------
FAILURE_CODES: tuple[str, ...] = (
    "card_expired",
    "insufficient_funds",
    "do_not_honor",
    "card_declined",
    "processing_error",
)
LATE_CHARGE_P = 0.025
FAILED_RECOVERED_P = 0.03
INVOL_PRECURSOR_P = 0.55  # involuntary churners with an earlier late or failed-then-recovered charge
DUNNING_RETRY_DAYS: tuple[float, ...] = (0.0, 3.0, 7.0)  # the three attempts of a failing charge
DUNNING_CANCEL_DAYS = 10.0  # billing ends the subscription this long after the failed renewal

# --- shop ------------------------------------------------------------------------------------
CATEGORIES: tuple[str, ...] = ("accessories", "content_packs", "hardware", "gifts", "merch")
CATEGORY_P: tuple[float, ...] = (0.28, 0.30, 0.10, 0.14, 0.18)
CATEGORY_UNIT_PRICE: tuple[float, ...] = (24.0, 11.0, 119.0, 39.0, 29.0)
GIFTS = 3
ORDER_MONTH_FACTOR: tuple[float, ...] = (0.85, 0.85, 0.95, 0.95, 1.0, 0.9, 0.85, 0.85, 1.0, 1.05, 1.6, 1.8)
USAGE_MONTH_FACTOR: tuple[float, ...] = (1.05, 1.05, 1.0, 0.98, 0.95, 0.85, 0.72, 0.75, 0.95, 1.0, 1.05, 1.1)
SHOP_MEDIAN_GAP_DAYS = 45.0  # purchase-only customers
SUB_SHOP_MEDIAN_GAP_DAYS = 90.0  # subscribers who also shop
MAX_WARPED_GAP_DAYS = 120.0  # no unplanned 180-day gaps (those would be churn by definition)

# --- usage -----------------------------------------------------------------------------------
USAGE_RATE_PER_DAY = 0.149  # times the customer's engagement (mean 1); tuned for ~50 events/customer
EVENT_TYPES: tuple[str, ...] = ("login", "play", "search", "download", "error")
EVENT_P: tuple[float, ...] = (0.34, 0.33, 0.16, 0.145, 0.025)
BASE_ERROR_CODES: tuple[str, ...] = ("E-AUTH-401", "E-NET-TIMEOUT", "E-CHECKOUT-500", "E-DOWNLOAD-409")


@dataclass(frozen=True)
class Incident:
    """A product fault: an error code that hits one device cohort during a period."""

    code: str
    days_before_end: int  # start of the fault period
    duration_days: int
    device: str
    hit_p: float  # share of the cohort's active customers who hit it
    complain_p: float  # share of victims who open a technical ticket with the code
    unresolved_p: float  # share of complaints left unresolved
    churn_p_silent: float
    churn_p_resolved: float
    churn_p_unresolved: float


INCIDENTS: tuple[Incident, ...] = (
    Incident("E-PLAYBACK-502", 250, 21, "smart_tv", 0.85, 0.18, 0.55, 0.40, 0.12, 0.45),
    Incident("E-SYNC-013", 520, 14, "ios", 0.70, 0.15, 0.50, 0.30, 0.10, 0.40),
)

# --- support and cancel flow -----------------------------------------------------------------
TICKET_CATEGORIES: tuple[str, ...] = ("inquiry", "technical", "billing", "delivery", "account", "other")
BASE_TICKETS_PER_YEAR = 0.45
BASE_TICKET_P: tuple[float, ...] = (0.0, 0.32, 0.15, 0.15, 0.20, 0.18)
INQUIRY_BEFORE_ORDER_P = 0.10
NOISE_INQUIRIES_PER_YEAR = 0.08
CHURN_INQUIRY_P = {R_PRICE: 0.55, R_QUALITY: 0.65}
SATISFACTION_P_NORMAL: tuple[float, ...] = (0.05, 0.08, 0.17, 0.35, 0.35)
SATISFACTION_P_BAD: tuple[float, ...] = (0.35, 0.33, 0.20, 0.08, 0.04)
FEEDBACK_ANSWER_P = 0.55
FEEDBACK_TRUTHFUL_P = 0.72
DEFLECTED_P = 0.04  # live subscribers who went through the cancel flow, took the offer and stayed
OFFERS: tuple[str, ...] = ("discount_20", "pause", "free_month", "guided_setup")
FREE_TEXT: dict[str, tuple[str, ...]] = {
    "price": (
        "too expensive",
        "the new price is too high",
        "found a cheaper option",
        "can't justify the cost",
    ),
    "quality_fit": (
        "not what I expected",
        "not enough content for me",
        "hard to use",
        "missing features I need",
    ),
    "service_failure": (
        "playback kept failing",
        "too many errors",
        "support never fixed my problem",
        "app crashes all the time",
    ),
    "moved_no_need": (
        "moving abroad",
        "don't need it anymore",
        "no time to use it",
        "bought a different device",
    ),
    "other": ("other", "personal reasons", "no comment"),
}
