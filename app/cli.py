"""Operator commands: `python -m app <command>` (or `flask --app app <command>`)."""
from __future__ import annotations

import datetime as dt
import json
import sys

import click
from flask import Flask, current_app
from sqlalchemy import select, update

from app.jobs.queue import enqueue, jobs
from app.jobs.registry import BadJobArguments, UnknownJobKind
from app.models import Job, Shop, SyncRun, utcnow


def _runtime():
    return current_app.extensions["companion"]


def register_commands(app: Flask) -> None:
    from app.shipping.cli import couriers_group, set_warehouse_code

    shops_group.add_command(set_warehouse_code)
    for command in (db_group, worker, clock, jobs_group, shops_group, keys_group, couriers_group):
        app.cli.add_command(command)


@click.group("db", help="Database schema migrations.")
def db_group():
    pass


@db_group.command("upgrade", help="Migrate the database up to REVISION (default: the newest).")
@click.argument("revision", default="head")
def db_upgrade(revision: str):
    from app.migrate import current_revision, upgrade

    runtime = _runtime()
    upgrade(runtime.engine, revision)
    click.echo(f"database at revision {current_revision(runtime.engine)}")


@db_group.command("downgrade", help="Migrate the database down to REVISION ('base' empties it).")
@click.argument("revision")
def db_downgrade(revision: str):
    from app.migrate import current_revision, downgrade

    runtime = _runtime()
    downgrade(runtime.engine, revision)
    click.echo(f"database at revision {current_revision(runtime.engine)}")


@db_group.command("check", help="Fail if the database is not at the newest migration or differs from the models.")
def db_check():
    from app.migrate import current_revision, head_revision, schema_differences

    runtime = _runtime()
    current, head = current_revision(runtime.engine), head_revision()
    if current != head:
        raise click.ClickException(f"database is at revision {current}, the newest is {head}: run `python -m app db upgrade`")
    differences = schema_differences(runtime.engine)
    if differences:
        raise click.ClickException(f"models and migrations differ: {differences}")
    click.echo(f"database at revision {current}; models match")


@click.command("worker", help="Run a worker that executes jobs (local executor, or a Celery worker).")
@click.option("--batch-size", default=8, show_default=True, help="Jobs claimed at once by the local executor.")
@click.option("--concurrency", default=2, show_default=True, help="Celery worker processes (celery executor).")
@click.option("--exit-when-idle", is_flag=True, help="Stop once no job is due (local executor).")
def worker(batch_size: int, concurrency: int, exit_when_idle: bool):
    runtime = _runtime()
    if runtime.settings.executor == "celery":
        from app.jobs.executors.celery_executor import run_worker

        run_worker(runtime.settings, concurrency=concurrency)
        return
    from app.jobs.executors.local import LocalWorker

    local_worker = LocalWorker(runtime, batch_size=batch_size)
    local_worker.install_signal_handlers()
    local_worker.run(exit_when_idle=exit_when_idle)


@click.command("clock", help="Run the clock: periodic scans, led by one clock process at a time.")
def clock():
    from app.clock import Clock

    the_clock = Clock(_runtime())
    the_clock.install_signal_handlers()
    the_clock.run()


@click.group("jobs", help="Inspect and steer background jobs.")
def jobs_group():
    pass


@jobs_group.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "dead", "cancelled"]))
@click.option("--kind")
@click.option("--shop", "shop_id", type=int)
@click.option("--limit", default=50, show_default=True)
def jobs_list(status, kind, shop_id, limit):
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    if shop_id:
        query = query.where(Job.shop_id == shop_id)
    with _runtime().sessions() as session:
        rows = session.scalars(query).all()
    click.echo(f"{'id':>8}  {'kind':<28} {'shop':>5}  {'status':<10} {'attempts':>8}  {'due (UTC)':<20} last error")
    for job in rows:
        error = (job.last_error or "").splitlines()[0][:60] if job.last_error else ""
        click.echo(f"{job.id:>8}  {job.kind:<28} {job.shop_id or '-':>5}  {job.status:<10} "
                   f"{job.attempts:>4}/{job.max_attempts:<3}  {job.due_at:%Y-%m-%d %H:%M:%S}  {error}")


@jobs_group.command("retry", help="Queue dead or cancelled jobs again, with a fresh set of attempts.")
@click.argument("job_ids", nargs=-1, type=int, required=True)
def jobs_retry(job_ids):
    with _runtime().sessions.begin() as session:
        changed = session.execute(
            update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status.in_(["dead", "cancelled"]))
            .values(status="queued", attempts=0, due_at=utcnow(), finished_at=None, dispatched_at=None, locked_by=None)
            .returning(jobs.c.id)
        ).scalars().all()
        session.info.setdefault("enqueued_job_ids", []).extend(changed)
    _report(job_ids, changed, "queued again", "not dead or cancelled")


@jobs_group.command("cancel", help="Cancel queued jobs (a running job finishes its attempt).")
@click.argument("job_ids", nargs=-1, type=int, required=True)
def jobs_cancel(job_ids):
    with _runtime().sessions.begin() as session:
        changed = session.execute(
            update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == "queued")
            .values(status="cancelled", finished_at=utcnow()).returning(jobs.c.id)
        ).scalars().all()
    _report(job_ids, changed, "cancelled", "not queued")


def _report(asked, changed, done: str, refused: str) -> None:
    for job_id in asked:
        click.echo(f"job {job_id}: {done if job_id in changed else refused}")
    if len(changed) != len(set(asked)):
        sys.exit(1)


@jobs_group.command("enqueue", help="Queue a job by hand: ARGS is a JSON object of the kind's arguments.")
@click.argument("kind")
@click.argument("args", default="{}")
@click.option("--shop", "shop_id", type=int)
@click.option("--delay", default=0.0, help="Seconds from now until the job is due.")
def jobs_enqueue(kind, args, shop_id, delay):
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="ARGS") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="ARGS")
    try:
        with _runtime().sessions.begin() as session:
            job_id = enqueue(session, kind, shop_id=shop_id, due_at=utcnow() + dt.timedelta(seconds=delay), **parsed)
    except (UnknownJobKind, BadJobArguments) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"job {job_id} queued")


@click.group("shops", help="Connected shops.")
def shops_group():
    pass


@shops_group.command("list")
def shops_list():
    with _runtime().sessions() as session:
        shops = session.scalars(select(Shop).order_by(Shop.id)).all()
    click.echo(f"{'id':>5}  {'platform':<12} {'status':<13} {'time zone':<18} domain")
    for shop in shops:
        click.echo(f"{shop.id:>5}  {shop.platform:<12} {shop.status:<13} {shop.timezone:<18} {shop.domain}")


@shops_group.command("sync-status", help="Progress of a shop's sync runs; --follow redraws until they finish.")
@click.argument("shop_id", type=int)
@click.option("--follow", is_flag=True)
@click.option("--interval", default=2.0, show_default=True)
def shops_sync_status(shop_id: int, follow: bool, interval: float):
    import time

    from app.tenancy import shop_context

    while True:
        with _runtime().sessions() as session, shop_context(shop_id):
            runs = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(12)).all()
        lines = [_progress_line(run) for run in reversed(runs)]
        click.echo("\n".join(lines) if lines else f"shop {shop_id} has no sync runs")
        if not follow or all(run.status in ("done", "failed") for run in runs):
            return
        time.sleep(interval)
        click.echo(f"\x1b[{len(lines)}A", nl=False)


def _progress_line(run) -> str:
    total = run.records_total
    if total:
        filled = min(30, int(30 * run.records_done / total))
        bar = "[" + "#" * filled + "." * (30 - filled) + f"] {run.records_done}/{total}"
    else:
        bar = f"{run.records_done} records"
    error = f"  {run.error}" if run.error else ""
    return f"{run.kind:<9} {run.resource:<20} {run.status:<10} {bar}{error}\x1b[K"


@shops_group.command("data-exports", help="Customer data exports of a shop; --show KEY prints one as JSON.")
@click.argument("shop_id", type=int)
@click.option("--show", "request_key")
def shops_data_exports(shop_id: int, request_key: str | None):
    from app.models import DataExport
    from app.tenancy import shop_context

    with _runtime().sessions() as session, shop_context(shop_id):
        exports = session.scalars(select(DataExport).order_by(DataExport.id)).all()
    if request_key:
        for export in exports:
            if export.request_key == request_key:
                click.echo(json.dumps(export.content, indent=2, ensure_ascii=False))
                return
        raise click.ClickException(f"shop {shop_id} has no data export {request_key!r}")
    for export in exports:
        click.echo(f"{export.request_key:<30} {export.status:<8} {export.requested_at:%Y-%m-%d %H:%M} UTC")


@click.group("keys", help="Encryption keys for stored credentials.")
def keys_group():
    pass


@keys_group.command("generate", help="Print a new Fernet key to put first in FERNET_KEYS.")
def keys_generate():
    from app.crypto import generate_key

    click.echo(generate_key())


@keys_group.command("rotate", help="Re-encrypt every stored secret with the first key of FERNET_KEYS.")
@click.option("--batch-size", default=500, show_default=True)
def keys_rotate(batch_size: int):
    from app.secrets_rotation import rotate_all

    counts = rotate_all(_runtime().engine, batch_size=batch_size)
    for column, count in counts.items():
        click.echo(f"{column}: {count} re-encrypted")
