"""Operations endpoints: liveness, readiness (database, broker) and Prometheus metrics."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import func, select, text

from app.jobs.queue import jobs
from app.metrics import PROCESS_METRICS, render_gauges
from app.models import utcnow

health = Blueprint("health", __name__)
RECENT = dt.timedelta(minutes=5)


def _runtime():
    return current_app.extensions["companion"]


@health.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    runtime = _runtime()
    checks: dict[str, str] = {}
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    if runtime.settings.executor == "celery":
        try:
            runtime.executor.check()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


@health.get("/metrics")
def metrics():
    lines: list[str] = []
    with _runtime().engine.connect() as conn:
        by_state = conn.execute(select(jobs.c.kind, jobs.c.status, func.count()).group_by(jobs.c.kind, jobs.c.status)).all()
        lines += render_gauges("companion_jobs", "Job rows by kind and status.",
                               (({"kind": kind, "status": status}, count) for kind, status, count in by_state))
        now = utcnow()
        oldest = conn.execute(
            select(jobs.c.kind, func.min(jobs.c.due_at)).where(jobs.c.status == "queued", jobs.c.due_at <= now).group_by(jobs.c.kind)
        ).all()
        lines += render_gauges("companion_job_queue_lag_seconds", "Age of the oldest due job still waiting, by kind.",
                               (({"kind": kind}, (now - due).total_seconds()) for kind, due in oldest))
        recent = conn.execute(
            select(jobs.c.kind, jobs.c.due_at, jobs.c.started_at, jobs.c.finished_at)
            .where(jobs.c.status == "succeeded", jobs.c.finished_at >= now - RECENT)
            .order_by(jobs.c.finished_at.desc()).limit(5000)
        ).all()
    lines += _latency_summary(recent)
    for metric in PROCESS_METRICS:
        lines += metric.render()
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _latency_summary(rows) -> list[str]:
    """Start latency (due to started) and run time of jobs finished in the last five minutes."""
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    for kind, due_at, started_at, finished_at in rows:
        if started_at is None or finished_at is None:
            continue
        waits.setdefault(kind, []).append(max(0.0, (started_at - due_at).total_seconds()))
        runs.setdefault(kind, []).append(max(0.0, (finished_at - started_at).total_seconds()))
    lines = ["# HELP companion_job_latency_seconds Seconds from due to started, jobs finished in the last 5 minutes.",
             "# TYPE companion_job_latency_seconds summary"]
    for kind, values in sorted(waits.items()):
        lines += _quantiles("companion_job_latency_seconds", kind, values)
    lines += ["# HELP companion_job_run_seconds Seconds from started to finished, jobs finished in the last 5 minutes.",
              "# TYPE companion_job_run_seconds summary"]
    for kind, values in sorted(runs.items()):
        lines += _quantiles("companion_job_run_seconds", kind, values)
    return lines


def _quantiles(name: str, kind: str, values: list[float]) -> list[str]:
    ordered = sorted(values)
    out = []
    for q in (0.5, 0.9, 0.99):
        out.append(f'{name}{{kind="{kind}",quantile="{q}"}} {ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.6f}')
    out.append(f'{name}_count{{kind="{kind}"}} {len(ordered)}')
    out.append(f'{name}_sum{{kind="{kind}"}} {sum(ordered):.6f}')
    return out
