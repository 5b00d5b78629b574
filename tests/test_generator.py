"""The seeded demo-company generator: determinism, contract, integrity and the planted mechanisms."""

from __future__ import annotations

import filecmp
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retention.contract import load_contract
from retention.generator import MECHANISMS, generate, load_truth, main, read_truth
from retention.generator.output import BIG_TABLES, arrow_type

END = date(2026, 6, 30)
END_TS = pd.Timestamp(END, tz="UTC")
REASONS = {"price", "quality_fit", "service_failure", "involuntary", "moved_no_need"}
DAY = pd.Timedelta(days=1)


def _read(folder: Path, table: str) -> pa.Table:
    single = folder / f"{table}.parquet"
    return pq.read_table(single if single.exists() else folder / table)


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "company"
    report = generate(out, customers=3000, seed=11, end_date=END, chunk_customers=1200)
    assert report.rows["customers"] == 3000
    return out


@pytest.fixture(scope="module")
def frames(company: Path) -> dict[str, pd.DataFrame]:
    names = [t for t in load_contract() if t != "email_events"]
    out = {name: _read(company, name).to_pandas() for name in names}
    out["truth"] = read_truth(company).to_pandas()
    return out


def _all_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_gives_identical_files(tmp_path: Path, fmt: str) -> None:
    a = generate(tmp_path / "a", customers=400, seed=5, end_date=END, fmt=fmt, chunk_customers=150)
    b = generate(tmp_path / "b", customers=400, seed=5, end_date=END, fmt=fmt, chunk_customers=150)
    files = _all_files(tmp_path / "a")
    assert files == _all_files(tmp_path / "b")
    assert len([f for f in files if f.parts[0] == "usage_events"]) == 3  # one part per chunk
    for rel in files:
        assert filecmp.cmp(tmp_path / "a" / rel, tmp_path / "b" / rel, shallow=False), rel
    assert a.rows == b.rows


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", customers=300, seed=1, end_date=END)
    generate(tmp_path / "b", customers=300, seed=2, end_date=END)
    for table in ("customers", "usage_events", "orders"):
        assert not _read(tmp_path / "a", table).equals(_read(tmp_path / "b", table)), table


# ----------------------------------------------------------------------------- contract


def test_layout_columns_and_types_match_the_contract(company: Path) -> None:
    contract = load_contract()
    assert not (company / "email_events.parquet").exists()  # the webhook fills it
    for name, table in contract.items():
        if name == "email_events":
            continue
        if name in BIG_TABLES:
            parts = sorted((company / name).iterdir())
            assert [p.name for p in parts] == [
                "part-00000.parquet",
                "part-00001.parquet",
                "part-00002.parquet",
            ]
        else:
            assert (company / f"{name}.parquet").is_file(), name
        data = _read(company, name)
        assert data.num_rows > 0, name
        assert data.schema.names == table.column_names, name
        for col in table.columns:
            arr = data.column(col.name)
            assert arr.type == arrow_type(col), (name, col.name, arr.type)
            if not col.nullable:
                assert arr.null_count == 0, (name, col.name)
            values = arr.to_numpy(zero_copy_only=False)
            if col.min is not None:
                assert np.nanmin(values.astype(float)) >= col.min, (name, col.name)
            if col.allowed:
                assert set(pd.Series(values).dropna()) <= set(col.allowed), (name, col.name)
            if col.kind == "numeric":
                assert np.allclose(values, np.round(values, 2)), (name, col.name)
    truth = read_truth(company)
    assert truth.schema.names == ["customer_id", "churned_at", "true_reason", "mechanism"]


def test_csv_layout_is_accepted_by_the_loader_discovery(tmp_path: Path) -> None:
    from retention.loader import check_headers, discover

    out = tmp_path / "csv"
    generate(out, customers=200, seed=3, end_date=END, fmt="csv")
    assert (out / "customers.csv").is_file()
    assert (out / "usage_events" / "part-00000.csv").is_file()
    assert (out / "ground_truth" / "churn_truth.parquet").is_file()
    found = discover(out)
    assert set(found) == {t for t in load_contract() if t != "email_events"}
    for ts in found.values():
        check_headers(ts)
    header = (out / "payments" / "part-00000.csv").read_text().splitlines()[0]
    assert header.replace('"', "").split(",") == load_contract()["payments"].column_names


def test_keys_are_unique_and_references_resolve(frames: dict[str, pd.DataFrame]) -> None:
    contract = load_contract()
    for name, table in contract.items():
        if name in frames:
            df = frames[name]
            assert not df.duplicated(list(table.primary_key)).any(), name
    customers = set(frames["customers"].customer_id)
    subs = frames["subscriptions"]
    orders = frames["orders"]
    for name in (
        "subscriptions",
        "orders",
        "payments",
        "usage_events",
        "support_tickets",
        "cancellation_feedback",
    ):
        assert set(frames[name].customer_id) <= customers, name
    assert set(frames["order_lines"].order_id) == set(orders.order_id)  # every order has lines
    pay = frames["payments"]
    assert set(pay.subscription_id.dropna()) <= set(subs.subscription_id)
    owner = subs.set_index("subscription_id").customer_id
    linked = pay.dropna(subset=["subscription_id"])
    assert (owner.loc[linked.subscription_id].to_numpy() == linked.customer_id.to_numpy()).all()
    assert set(frames["cancellation_feedback"].subscription_id.dropna()) <= set(subs.subscription_id)
    assert set(frames["truth"].customer_id) <= customers
    # amounts: an order is the sum of its lines
    sums = frames["order_lines"].groupby("order_id")[["amount", "discount_amount"]].sum()
    o = orders.set_index("order_id")
    assert np.allclose(sums.loc[o.index, "amount"], o.amount)
    assert np.allclose(sums.loc[o.index, "discount_amount"], o.discount_amount)
    # everything happens inside the history window, before the end date
    for name, col in (
        ("orders", "ordered_at"),
        ("usage_events", "occurred_at"),
        ("payments", "attempted_at"),
        ("support_tickets", "opened_at"),
    ):
        ts = frames[name][col]
        assert ts.max() < END_TS and ts.min() >= END_TS - 730 * DAY, name


def test_business_shape(frames: dict[str, pd.DataFrame]) -> None:
    cust = frames["customers"]
    n = len(cust)
    assert cust.customer_id.iloc[0] == "C0000001"
    assert cust.email.str.fullmatch(r"[A-Za-z]+\.[a-z]+\+\d+@example\.com").all()
    assert 0.65 < cust.marketing_consent.mean() < 0.75
    assert 0.55 < frames["subscriptions"].customer_id.nunique() / n < 0.65
    assert 40 < len(frames["usage_events"]) / n < 60  # ~50 usage events per customer
    ev = frames["usage_events"]
    errors = ev[ev.event_type == "error"]
    assert errors.error_code.notna().all() and ev[ev.event_type != "error"].error_code.isna().all()
    tk = frames["support_tickets"]
    assert set(tk.category) == {"inquiry", "technical", "billing", "delivery", "account", "other"}
    assert 0.02 < tk.resolved_at.isna().mean() < 0.3
    assert tk.satisfaction.dropna().between(1, 5).all()
    pay = frames["payments"]
    assert (pay.attempted_at >= pay.due_at).all()
    assert (pay.attempted_at > pay.due_at + DAY).any()  # late payments
    assert set(pay[pay.status == "failed"].attempt_number) >= {1, 2, 3}
    assert (
        pay[pay.status == "failed"].failure_code.notna().all()
        and pay[pay.status != "failed"].failure_code.isna().all()
    )
    subs = frames["subscriptions"]
    live = subs[subs.cancelled_at.isna()]
    overdue = live[pd.to_datetime(live.renewal_date) < pd.Timestamp(END)]
    assert len(overdue) < 0.02 * len(live)  # only subscriptions in dunning (renewal failed, retries running)
    assert set(overdue.subscription_id) <= set(pay[pay.status == "failed"].subscription_id)
    done = subs[subs.cancelled_at.notna()]
    assert (pd.to_datetime(done.renewal_date) > done.started_at.dt.tz_localize(None)).all()


# ----------------------------------------------------------------------------- churn ground truth


def _derived_churn(frames: dict[str, pd.DataFrame]) -> pd.Series:
    """Churn per the interfaces' definition, from the raw data alone."""
    subs = frames["subscriptions"].sort_values("started_at")
    first = subs.groupby("customer_id").first()
    sub_churn = first.cancelled_at.dropna()
    orders = frames["orders"]
    po = orders[~orders.customer_id.isin(set(subs.customer_id))].sort_values(["customer_id", "ordered_at"])
    prev = po.groupby("customer_id").ordered_at.shift()
    gap = po.ordered_at - prev
    lapse_gap = prev[gap >= 180 * DAY].groupby(po.customer_id[gap >= 180 * DAY]).min() + 180 * DAY
    last = po.groupby("customer_id").ordered_at.max()
    lapse_end = last[END_TS - last >= 180 * DAY] + 180 * DAY
    return pd.concat([sub_churn, pd.concat([lapse_gap, lapse_end]).groupby(level=0).min()])


def test_truth_matches_the_churn_definition_and_covers_every_reason(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"].set_index("customer_id")
    assert set(truth.true_reason) == REASONS
    assert truth.mechanism.str.len().min() > 10
    derived = _derived_churn(frames)
    assert set(derived.index) == set(truth.index)
    assert (truth.churned_at.loc[derived.index] == derived).all()
    # overall monthly churn of a few percent (churners per month / customers signed up)
    n = len(frames["customers"])
    per_month = (
        truth.churned_at[truth.churned_at >= END_TS - 365 * DAY]
        .groupby(truth.churned_at.dt.tz_localize(None).dt.to_period("M"))
        .size()
    )
    assert 0.01 < per_month.mean() / n < 0.05
    assert len(MECHANISMS) >= 8


def _usage_ratio(events: pd.DataFrame, ref: pd.Series) -> pd.Series:
    """Events per day in the 60 days before ref / per day in the 90 days before that."""
    e = events[events.customer_id.isin(ref.index)]
    days = (ref.loc[e.customer_id].to_numpy() - e.occurred_at.to_numpy()) / np.timedelta64(1, "D")
    g = (
        pd.DataFrame(
            {
                "c": e.customer_id.to_numpy(),
                "last": (days > 0) & (days <= 60),
                "prior": (days > 60) & (days <= 150),
            }
        )
        .groupby("c")
        .sum()
    )
    g = g[g.prior >= 5]
    return (g["last"] / 60) / (g["prior"] / 90)


def test_churners_usage_declines_before_they_leave(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"]
    subscribers = set(frames["subscriptions"].customer_id)
    churners = truth[truth.customer_id.isin(subscribers)].set_index("customer_id").churned_at
    stayers = frames["customers"].customer_id[~frames["customers"].customer_id.isin(truth.customer_id)]
    ref = pd.Series(END_TS, index=stayers.to_numpy())
    r_churn = _usage_ratio(frames["usage_events"], churners)
    r_stay = _usage_ratio(frames["usage_events"], ref)
    assert r_churn.median() < r_stay.median() - 0.1
    by_reason = truth.set_index("customer_id").true_reason
    quality = r_churn[by_reason.loc[r_churn.index] == "quality_fit"]
    moved = r_churn[by_reason.loc[r_churn.index] == "moved_no_need"]
    assert quality.median() < 0.7 * r_stay.median()
    assert moved.median() < 0.8 * r_stay.median()


def test_inquiries_without_an_order_precede_churn(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"]
    inq = frames["support_tickets"]
    inq = inq[inq.category == "inquiry"]
    orders = frames["orders"][["customer_id", "ordered_at"]].sort_values("ordered_at")

    def without_order(rows: pd.DataFrame) -> float:
        """Share of inquiries with no order in the 30 days after them."""
        nxt = pd.merge_asof(
            rows.sort_values("opened_at"),
            orders,
            left_on="opened_at",
            right_on="ordered_at",
            by="customer_id",
            direction="forward",
            allow_exact_matches=False,
        )
        return float((nxt.ordered_at.isna() | (nxt.ordered_at > nxt.opened_at + 30 * DAY)).mean())

    leavers = truth[truth.true_reason.isin(["price", "quality_fit"])].set_index("customer_id").churned_at
    before = inq[inq.customer_id.isin(leavers.index)]
    before = before[
        (leavers.loc[before.customer_id].to_numpy() - before.opened_at.to_numpy())
        .astype("timedelta64[D]")
        .astype(int)
        <= 240
    ]
    stayers = inq[~inq.customer_id.isin(truth.customer_id)]
    assert len(before) > 100
    assert without_order(before) > 0.7
    assert without_order(stayers) < 0.5


def test_failed_payments_precede_involuntary_churn(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"]
    invol = truth[truth.true_reason == "involuntary"].set_index("customer_id").churned_at
    assert len(invol) > 20
    subs = frames["subscriptions"]
    cancelled = subs[subs.customer_id.isin(invol.index) & subs.cancelled_at.isin(invol.to_numpy())]
    assert (cancelled.cancel_reason == "payment_failed").all() and len(cancelled) == len(invol)
    assert set(subs.cancel_reason.dropna()) - {"payment_failed"} <= {
        "price",
        "quality_fit",
        "service_failure",
        "moved_no_need",
        "other",
    }
    pay = frames["payments"]
    failed = pay[(pay.status == "failed") & pay.customer_id.isin(invol.index)]
    failed = failed[failed.attempted_at < invol.loc[failed.customer_id].to_numpy()]
    last_fail = failed.groupby("customer_id").attempted_at.max()
    assert set(last_fail.index) == set(invol.index)
    gap = invol.loc[last_fail.index] - last_fail
    assert (gap > pd.Timedelta(0)).all() and (gap < 15 * DAY).all()
    attempts = failed.groupby("customer_id").attempt_number.max()
    assert (attempts == 3).all()
    # voluntary churners rarely have failed payments right before leaving
    others = truth[truth.true_reason != "involuntary"].set_index("customer_id").churned_at
    of = pay[(pay.status == "failed") & pay.customer_id.isin(others.index)]
    of = of[
        (others.loc[of.customer_id].to_numpy() - of.attempted_at.to_numpy()) / np.timedelta64(1, "D") < 15
    ]
    assert of.customer_id.nunique() < 0.1 * len(others)


def test_silent_fault_victims_outnumber_complainers_and_churn_more(frames: dict[str, pd.DataFrame]) -> None:
    ev = frames["usage_events"]
    tk = frames["support_tickets"]
    truth = frames["truth"].set_index("customer_id").churned_at
    code = "E-PLAYBACK-502"
    hit = ev[ev.error_code == code]
    onset = hit.occurred_at.min()
    assert END_TS - 260 * DAY < onset < END_TS - 240 * DAY
    assert hit.occurred_at.max() < onset + 22 * DAY  # the fault period
    victims = set(hit.customer_id)
    complaints = tk[tk.error_code == code]
    assert (complaints.category == "technical").all()
    complainers = set(complaints.customer_id)
    assert complainers <= victims
    silent = victims - complainers
    assert len(silent) > 3 * len(complainers) > 0
    assert complaints.resolved_at.isna().mean() > 0.3  # often unresolved

    def churn_rate(ids: set[str]) -> float:
        t = truth.reindex(sorted(ids))
        return float(((t > onset) & (t <= onset + 120 * DAY)).mean())

    signed = frames["customers"].set_index("customer_id").signup_at
    active = set(signed[signed < onset].index) - set(truth[truth <= onset].index)
    assert churn_rate(silent) > 1.8 * churn_rate(active - victims)
    reasons = frames["truth"].set_index("customer_id").true_reason
    churned_victims = [c for c in silent if c in truth.index and onset < truth[c] <= onset + 120 * DAY]
    assert (reasons.loc[churned_victims] == "service_failure").mean() > 0.6


def test_price_churners_leave_at_renewal(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"].set_index("customer_id")
    subs = frames["subscriptions"]
    first = subs[subs.subscription_id.str.endswith("-1")].set_index("customer_id")

    def lead_days(reason: str) -> pd.Series:
        ids = first.index.intersection(truth.index[truth.true_reason == reason])
        s = first.loc[ids]
        return (pd.to_datetime(s.renewal_date) - s.cancelled_at.dt.tz_localize(None).dt.normalize()).dt.days

    price, quality = lead_days("price"), lead_days("quality_fit")
    assert len(price) > 50
    assert price.between(0, 7).mean() > 0.85
    assert quality.between(0, 7).mean() < 0.4
    # after the price increase (270 days before the end) price churn spikes
    increase = END_TS - 270 * DAY
    pc = truth[truth.true_reason == "price"].churned_at
    after = ((pc > increase - 10 * DAY) & (pc < increase + 40 * DAY)).sum() / 50
    typical = ((pc < increase - 60 * DAY) & (pc > increase - 360 * DAY)).sum() / 300
    assert after > 3 * typical
    # price churners are discount shoppers
    orders = frames["orders"]
    share = orders.discount_amount / (orders.amount + orders.discount_amount)
    is_price = orders.customer_id.isin(truth.index[truth.true_reason == "price"])
    assert share[is_price].mean() > 2 * share[~is_price].mean()


def test_reactivations_exist(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames["truth"].set_index("customer_id").churned_at
    subs = frames["subscriptions"]
    again = subs[subs.customer_id.isin(truth.index)]
    again = again[again.started_at > truth.loc[again.customer_id].to_numpy()]
    orders = frames["orders"]
    later = orders[orders.customer_id.isin(truth.index)]
    later = later[later.ordered_at > truth.loc[later.customer_id].to_numpy()]
    assert again.customer_id.nunique() > 20
    assert later.customer_id.nunique() > 20
    assert frames["truth"].mechanism.str.contains("reactivated").sum() >= again.customer_id.nunique()


def test_seasonality(frames: dict[str, pd.DataFrame]) -> None:
    orders = frames["orders"]
    year = orders[orders.ordered_at >= END_TS - 365 * DAY]
    per_day = year.groupby(year.ordered_at.dt.month).size() / year.groupby(
        year.ordered_at.dt.month
    ).ordered_at.apply(lambda s: s.dt.days_in_month.iloc[0])
    assert per_day.loc[[11, 12]].min() > 1.25 * per_day.mean()
    ev = frames["usage_events"]
    ev = ev[ev.occurred_at >= END_TS - 365 * DAY]
    monthly = ev.groupby(ev.occurred_at.dt.month).size()
    assert monthly.loc[[7, 8]].max() < 0.85 * monthly.loc[[3, 4, 5]].mean()


def test_cancel_flow_answers_are_mostly_but_not_always_right(frames: dict[str, pd.DataFrame]) -> None:
    fb = frames["cancellation_feedback"]
    truth = frames["truth"]
    answered = fb[~fb.offer_accepted].merge(truth, on="customer_id")
    match = (answered.reason_category == answered.true_reason).mean()
    assert 0.55 < match < 0.9
    voluntary = truth[
        (truth.true_reason != "involuntary") & truth.customer_id.isin(frames["subscriptions"].customer_id)
    ]
    assert 0.35 < len(answered) / len(voluntary) < 0.75  # not every churner answers
    stayed = fb[fb.offer_accepted]
    assert len(stayed) > 0 and not stayed.customer_id.isin(truth.customer_id[truth.churned_at < END_TS]).all()
    assert fb[fb.offer_accepted].offer_shown.notna().all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("customers", [0, -5])
def test_rejects_non_positive_customers(tmp_path: Path, customers: int) -> None:
    with pytest.raises(ValueError, match="customers must be >= 1"):
        generate(tmp_path / "out", customers=customers, seed=1, end_date=END)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="end date must be YYYY-MM-DD"):
        generate(tmp_path / "out", customers=10, seed=1, end_date="2026-13-45")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        generate(tmp_path / "out", customers=10, seed=1, end_date=date(1900, 1, 1))
    with pytest.raises(ValueError, match="format must be one of"):
        generate(tmp_path / "out", customers=10, seed=1, end_date=END, fmt="xlsx")
    with pytest.raises(ValueError, match="seed must be"):
        generate(tmp_path / "out", customers=10, seed=-1, end_date=END)
    with pytest.raises(ValueError, match="customers must be an integer"):
        generate(tmp_path / "out", customers=2.5, seed=1, end_date=END)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "--customers", "0", "--seed", "1", "--end-date", "2026-06-30"]) == 2
    assert "customers must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "out"), "--customers", "10", "--seed", "1", "--end-date", "30/06/2026"])
    assert exc.value.code == 2
    assert "end date must be YYYY-MM-DD" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_company(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert (
        main([str(out), "--customers", "50", "--seed", "4", "--end-date", "2026-06-30", "--format", "csv"])
        == 0
    )
    assert "generated 50 customers" in capsys.readouterr().out
    manifest = json.loads((out / "ground_truth" / "manifest.json").read_text())
    assert manifest["customers"] == 50 and manifest["format"] == "csv" and manifest["rows"]["customers"] == 50


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot create the parent"):
        generate(blocker / "out", customers=10, seed=1, end_date=END)
    with pytest.raises(ValueError, match="exists and is not a folder"):
        generate(blocker, customers=10, seed=1, end_date=END)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and was not written by the generator"):
        generate(foreign, customers=10, seed=1, end_date=END)
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "foreign"]


def test_failure_midway_leaves_no_half_written_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retention.generator.api as api

    out = tmp_path / "out"
    generate(out, customers=30, seed=1, end_date=END)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = api.simulate_chunk
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "simulate_chunk", flaky)
    with pytest.raises(OSError, match="disk full"):
        generate(out, customers=30, seed=2, end_date=END, chunk_customers=10)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # old output intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    monkeypatch.setattr(api, "simulate_chunk", real)
    generate(out, customers=30, seed=2, end_date=END, chunk_customers=10)  # replaces the old output
    assert json.loads((out / "ground_truth" / "manifest.json").read_text())["seed"] == 2


# ----------------------------------------------------------------------------- load_truth


def test_load_truth(fresh_db: str, company: Path) -> None:
    import psycopg

    from retention.settings import get_settings

    schema = get_settings().truth_schema
    expected = read_truth(company)
    with psycopg.connect(fresh_db) as conn:
        assert load_truth(company, conn) == expected.num_rows
        assert load_truth(company, conn) == expected.num_rows  # replaces, does not append
        conn.commit()
        rows = conn.execute(
            f'select count(*), count(distinct customer_id), min(churned_at) from "{schema}".churn_truth'
        ).fetchone()
        reasons = {r[0] for r in conn.execute(f'select distinct true_reason from "{schema}".churn_truth')}
    assert rows[0] == rows[1] == expected.num_rows
    assert rows[2] == pd.Timestamp(pc_min(expected)).to_pydatetime()
    assert reasons == REASONS


def pc_min(table: pa.Table) -> object:
    return table.column("churned_at").to_pandas().min()


def test_load_truth_rejects_a_folder_without_truth(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no ground truth"):
        load_truth(tmp_path, object())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_generated_company_loads_into_raw(fresh_db: str, tmp_path: Path, fmt: str) -> None:
    """The loader (another part, same contract) accepts both layouts as they are."""
    import psycopg

    from retention.loader import load_directory
    from retention.settings import get_settings

    out = tmp_path / fmt
    report = generate(out, customers=150, seed=9, end_date=END, fmt=fmt, chunk_customers=60)
    load_directory(out, url=fresh_db)
    raw = get_settings().raw_schema
    with psycopg.connect(fresh_db) as conn:
        for table, count in report.rows.items():
            assert conn.execute(f"select count(*) from {raw}.{table}").fetchone()[0] == count, table
