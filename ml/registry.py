"""The model registry (``ops.model_registry``), model files and the promotion rule.

Statuses: ``challenger`` (just registered, being judged) -> ``champion`` (the one that scores; at most
one, enforced by a partial unique index) or ``rejected`` (below the quality floor, not better than the
champion, or lost to a sibling of the same training run).  A replaced champion becomes ``retired``;
``rollback`` retires the current champion and restores the one it replaced.  Every status change is
also written to ``ops.model_registry_events``.

Model files are written with skops (``skops.io.dump``) to ``<state_dir>/models/<version>/model.skops``;
loading checks the file's sha256 against the registry and accepts only the known safe types
(:data:`TRUSTED_TYPES` on top of skops' defaults).  Never pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg

from ml import config
from ml.errors import ArtefactError, NoChampionError

#: types a churn-model file may contain beyond skops' defaults (checked before loading)
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
)
STATUSES = ("challenger", "champion", "retired", "rejected")
_LOCK_KEY = 74_221_001  # advisory lock serialising promotions and rollbacks

REGISTRY_DDL = """
create schema if not exists {ops};
create table if not exists {ops}.model_registry (
    version                  text primary key,
    model_kind               text not null,
    trained_at               timestamptz not null,
    data_window_start        date not null,
    data_window_end          date not null,
    calibration_window_start date,
    calibration_window_end   date,
    validation_window_start  date not null,
    validation_window_end    date not null,
    feature_list_hash        text not null,
    feature_list             jsonb not null,
    metrics                  jsonb not null,
    training_profile         jsonb not null default '{{}}'::jsonb,
    artefact_path            text not null,
    artefact_sha256          text not null,
    status                   text not null check (status in ('challenger', 'champion', 'retired', 'rejected')),
    promoted_at              timestamptz,
    replaced_version         text,
    notes                    text not null default ''
);
create unique index if not exists model_registry_one_champion
    on {ops}.model_registry ((true)) where status = 'champion';
create table if not exists {ops}.model_registry_events (
    event_id    bigserial primary key,
    at          timestamptz not null default now(),
    version     text not null,
    from_status text,
    to_status   text not null,
    note        text not null default ''
);
"""


def _ops() -> str:
    from retention.settings import get_settings

    return f'"{get_settings().ops_schema}"'


def ensure_registry(conn: psycopg.Connection) -> None:
    conn.execute(REGISTRY_DDL.format(ops=_ops()))


def models_dir() -> Path:
    from retention.settings import get_settings

    return Path(get_settings().state_dir) / "models"


# --- files -------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_artefact(artefact: dict[str, Any], version: str) -> tuple[Path, str]:
    import skops.io as sio

    folder = models_dir() / version
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.skops"
    tmp = folder / "model.skops.tmp"
    sio.dump(artefact, tmp)
    tmp.replace(path)
    return path, sha256_file(path)


def load_artefact(path: str | Path, sha256: str) -> dict[str, Any]:
    """Load a model file after checking its sha256 and that it holds only trusted types."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"model file {path} does not exist")
    actual = sha256_file(path)
    if actual != sha256:
        raise ArtefactError(
            f"model file {path} has sha256 {actual[:12]}…, the registry expects {sha256[:12]}…"
        )
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise ArtefactError(
            f"model file {path} contains untrusted type(s) {', '.join(untrusted)}: not loaded"
        )
    artefact = sio.load(path, trusted=list(TRUSTED_TYPES))
    if not isinstance(artefact, dict) or "base" not in artefact or "features" not in artefact:
        raise ArtefactError(f"model file {path} is not a churn-model artefact")
    return artefact


# --- rows --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    version: str
    model_kind: str
    trained_at: datetime
    data_window_start: date
    data_window_end: date
    validation_window_start: date
    validation_window_end: date
    feature_list_hash: str
    feature_list: list[str]
    metrics: dict[str, Any]
    training_profile: dict[str, Any]
    artefact_path: str
    artefact_sha256: str
    status: str
    promoted_at: datetime | None
    replaced_version: str | None
    notes: str

    def load(self) -> dict[str, Any]:
        artefact = load_artefact(self.artefact_path, self.artefact_sha256)
        if list(artefact["features"]) != list(self.feature_list):
            raise ArtefactError(f"model file of {self.version} was trained on other features than registered")
        return artefact


_COLS = (
    "version, model_kind, trained_at, data_window_start, data_window_end, validation_window_start, "
    "validation_window_end, feature_list_hash, feature_list, metrics, training_profile, artefact_path, "
    "artefact_sha256, status, promoted_at, replaced_version, notes"
)


def _row(r: tuple) -> ModelRow:
    return ModelRow(*r)


def get_model(conn: psycopg.Connection, version: str) -> ModelRow | None:
    r = conn.execute(f"select {_COLS} from {_ops()}.model_registry where version = %s", (version,)).fetchone()
    return _row(r) if r else None


def get_champion(conn: psycopg.Connection) -> ModelRow | None:
    ensure_registry(conn)
    r = conn.execute(f"select {_COLS} from {_ops()}.model_registry where status = 'champion'").fetchone()
    return _row(r) if r else None


def list_models(conn: psycopg.Connection) -> list[ModelRow]:
    ensure_registry(conn)
    rows = conn.execute(
        f"select {_COLS} from {_ops()}.model_registry order by trained_at, version"
    ).fetchall()
    return [_row(r) for r in rows]


def lock(conn: psycopg.Connection) -> None:
    """Serialise registry changes (held until the transaction ends)."""
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _event(
    conn: psycopg.Connection, version: str, from_status: str | None, to_status: str, note: str
) -> None:
    conn.execute(
        f"insert into {_ops()}.model_registry_events (version, from_status, to_status, note) values (%s, %s, %s, %s)",
        (version, from_status, to_status, note),
    )


def register(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    """Insert a challenger (``row`` holds the ModelRow fields except status/promotion)."""
    ensure_registry(conn)
    conn.execute(
        f"""insert into {_ops()}.model_registry
            (version, model_kind, trained_at, data_window_start, data_window_end, calibration_window_start,
             calibration_window_end, validation_window_start, validation_window_end, feature_list_hash,
             feature_list, metrics, training_profile, artefact_path, artefact_sha256, status, notes)
            values (%(version)s, %(model_kind)s, %(trained_at)s, %(data_window_start)s, %(data_window_end)s,
                    %(calibration_window_start)s, %(calibration_window_end)s, %(validation_window_start)s,
                    %(validation_window_end)s, %(feature_list_hash)s, %(feature_list)s, %(metrics)s,
                    %(training_profile)s, %(artefact_path)s, %(artefact_sha256)s, 'challenger', %(notes)s)""",
        {
            **row,
            "feature_list": json.dumps(list(row["feature_list"])),
            "metrics": json.dumps(row["metrics"], default=_json_default),
            "training_profile": json.dumps(row["training_profile"], default=_json_default),
            "notes": row.get("notes", ""),
        },
    )
    _event(conn, row["version"], None, "challenger", "registered")


def _json_default(v: object) -> object:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, date | datetime):
        return v.isoformat()
    raise TypeError(f"cannot store {type(v).__name__} in the registry")


def set_status(conn: psycopg.Connection, version: str, status: str, note: str) -> None:
    before = get_model(conn, version)
    conn.execute(
        f"update {_ops()}.model_registry set status = %s, notes = case when notes = '' then %s "
        "else notes || '; ' || %s end where version = %s",
        (status, note, note, version),
    )
    _event(conn, version, before.status if before else None, status, note)


def promote(conn: psycopg.Connection, version: str, note: str) -> str | None:
    """Make ``version`` the champion; the old champion (returned) is retired."""
    lock(conn)
    old = get_champion(conn)
    if old is not None:
        set_status(conn, old.version, "retired", f"replaced by {version}")
    conn.execute(
        f"update {_ops()}.model_registry set status = 'champion', promoted_at = now(), replaced_version = %s, "
        "notes = case when notes = '' then %s else notes || '; ' || %s end where version = %s",
        (old.version if old else None, note, note, version),
    )
    _event(conn, version, "challenger", "champion", note)
    return old.version if old else None


def rollback(conn: psycopg.Connection) -> dict[str, str]:
    """Retire the champion and restore the champion it replaced (its file is verified first)."""
    lock(conn)
    current = get_champion(conn)
    if current is None:
        raise NoChampionError("the registry has no champion: nothing to roll back")
    if not current.replaced_version:
        raise NoChampionError(
            f"champion {current.version} replaced no earlier champion: nothing to roll back to"
        )
    previous = get_model(conn, current.replaced_version)
    if previous is None:
        raise NoChampionError(f"previous champion {current.replaced_version} is not in the registry")
    previous.load()  # refuse to roll back to a missing or altered file
    set_status(conn, current.version, "retired", f"rolled back to {previous.version}")
    conn.execute(
        f"update {_ops()}.model_registry set status = 'champion', promoted_at = now(), "
        "notes = notes || '; restored by rollback' where version = %s",
        (previous.version,),
    )
    _event(conn, previous.version, previous.status, "champion", f"rollback from {current.version}")
    return {"retired": current.version, "champion": previous.version}


# --- the promotion rule ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger: dict[str, Any],
    champion_same_window: dict[str, Any] | None,
    *,
    margin: float,
    floor_auc: float,
) -> Decision:
    """A challenger is promoted only if its validation ROC AUC is at least the quality floor and (when a
    champion exists) its PR AUC beats the champion's PR AUC *on the same validation window* by
    ``margin``."""
    auc = float(challenger[config.FLOOR_METRIC])
    if not auc >= floor_auc:
        return Decision(
            False, f"validation {config.FLOOR_METRIC} {auc:.4f} is below the quality floor {floor_auc}"
        )
    if champion_same_window is None:
        return Decision(True, f"no champion; {config.FLOOR_METRIC} {auc:.4f} >= floor {floor_auc}")
    mine = float(challenger[config.PROMOTION_METRIC])
    theirs = float(champion_same_window[config.PROMOTION_METRIC])
    if mine >= theirs + margin:
        return Decision(
            True, f"{config.PROMOTION_METRIC} {mine:.4f} beats the champion's {theirs:.4f} by >= {margin}"
        )
    return Decision(
        False,
        f"{config.PROMOTION_METRIC} {mine:.4f} does not beat the champion's {theirs:.4f} by {margin} "
        "on the same validation window",
    )


# --- thin API ----------------------------------------------------------------------------------------
def has_champion(url: str | None = None) -> bool:
    from retention.db import connect

    with connect(url) as conn:
        return get_champion(conn) is not None


def format_table(rows: list[ModelRow]) -> str:
    head = f"{'version':40} {'kind':11} {'status':10} {'roc_auc':>7} {'pr_auc':>7} {'brier':>7}  validation  promoted"
    lines = [head, "-" * len(head)]
    for r in rows:
        m = r.metrics
        promoted = r.promoted_at.strftime("%Y-%m-%d %H:%M") if r.promoted_at else ""
        lines.append(
            f"{r.version:40} {r.model_kind:11} {r.status:10} {m.get('roc_auc', float('nan')):7.4f} "
            f"{m.get('pr_auc', float('nan')):7.4f} {m.get('brier', float('nan')):7.4f}  "
            f"{r.validation_window_end}  {promoted}"
        )
    return "\n".join(lines)
