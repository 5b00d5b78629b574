"""Subprocess helper of test_dag_integrity: parse every DAG file with all network blocked.

Prints one JSON document: per file, parse seconds and the DAGs found with their properties.
Run in a fresh interpreter so Airflow reads this environment, and so a DAG that opens a
socket at parse time (database, Variable, HTTP) fails loudly.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from retention.airflow_env import configure  # noqa: E402

configure()

import airflow  # noqa: E402, F401  (warm imports: the budget is for the DAG file itself)
import cosmos  # noqa: E402, F401
from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.lineage import get_hook_lineage_collector  # noqa: E402

get_hook_lineage_collector()  # loads Airflow's plugins once, as a DAG processor does at start-up

attempts: list[str] = []
_real_connect = socket.socket.connect


def _blocked(self: socket.socket, address: object) -> None:
    attempts.append(repr(address))
    raise OSError(f"network access at DAG parse time: {address!r}")


socket.socket.connect = _blocked  # type: ignore[method-assign]
socket.create_connection = lambda *a, **k: _blocked(None, a[0])  # type: ignore[assignment]


def _acyclic(dag: DAG) -> bool:
    """Kahn's algorithm over the task graph (Airflow also checks; this proves it independently)."""
    indegree = {t.task_id: len(t.upstream_task_ids) for t in dag.tasks}
    ready = [t for t, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        task_id = ready.pop()
        seen += 1
        for down in dag.get_task(task_id).downstream_task_ids:
            indegree[down] -= 1
            if indegree[down] == 0:
                ready.append(down)
    return seen == len(indegree)


from airflow.dag_processing.dagbag import DagBag  # noqa: E402

report: dict[str, dict] = {}
for path in sorted((ROOT / "dags").glob("*.py")):
    started, cpu_started = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    errors = "; ".join(f"{k}: {v}" for k, v in bag.import_errors.items()) or None
    dags = {}
    for dag_id, value in bag.dags.items():
        tasks = value.tasks
        dags[dag_id] = {
            "tags": sorted(value.tags),
            "owners": sorted({t.owner for t in tasks}),
            "retries": sorted({t.retries for t in tasks}),
            "doc_md": bool(value.doc_md),
            "n_tasks": len(tasks),
            "catchup": value.catchup,
            "cycle_free": _acyclic(value),
            "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in tasks},
        }
    report[path.name] = {"seconds": seconds, "cpu_seconds": cpu_seconds, "error": errors, "dags": dags}

print(json.dumps({"files": report, "network_attempts": attempts}))
