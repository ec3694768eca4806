"""Label batch throughput: N orders through the `shipping.label_batch` job against the loopback FAN Courier fake, into one A4 4-up PDF, as labels/s and as a ratio to a bare pypdf merge of the same N single-label PDFs.

Usage (from the project root, with the project's virtualenv):
    python bench/labels.py              # 500 labels
    python bench/labels.py --quick      # 60 labels: a smoke run of a few seconds
    python bench/labels.py --labels N   # N labels
    python bench/labels.py --database-url postgresql+psycopg://...   # an existing, empty database (default: a scratch SQLite file)

What "ours" times: the whole job as a worker runs it: one transaction writing every order's idempotency key;
then rounds of 100 orders, each one create call per 50 AWBs to the fake courier over loopback HTTP (FAN takes a
list) and one transaction with the answers (shipments, progress, store write-back jobs, "shipped" signals); then
the labels fetched 50 per call (calls side by side) and composed four to an A4 sheet as they arrive.
The print stage alone (fetch + compose, no creates) is reported too. The baseline merges the same N one-page
label PDFs, already in memory, with PdfWriter.append: no HTTP, no database, no 4-up layout.
Peak memory is the process's peak resident set size (the fake courier runs in this process too). The fake's
sockets get TCP_NODELAY (tests/fake_couriers.py), as a real courier's server would not stall on a delayed ACK.
The last line printed is `ratio=<ours/bare merge time> baseline=<bare merge labels/s> ours=<job labels/s>`.
"""
from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from pypdf import PdfReader, PdfWriter  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench.support import say  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.jobs.catalog import load_job_kinds  # noqa: E402
from app.jobs.executors.local import LocalWorker  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import CourierAccount, LabelBatch, Shipment  # noqa: E402
from app.runtime import build_runtime  # noqa: E402
from app.shipping.accounts import courier_for  # noqa: E402
from app.shipping.batches import batch_shipments, create_batch, label_documents, write_print_file  # noqa: E402
from app.tenancy import shop_context  # noqa: E402
from tests.fake_couriers import FakeFanCourier  # noqa: E402
from tests.shipping_kit import open_ro_shop  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_job(runtime, shop_id: int, account_id: int, order_ids: list[int]) -> tuple[float, int]:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        batch_id = create_batch(session, shop_id, order_ids, session.get(CourierAccount, account_id)).id
    started = time.perf_counter()
    LocalWorker(runtime).run(max_jobs=1)  # the batch only; the write-back jobs it enqueued are not part of it
    elapsed = time.perf_counter() - started
    with runtime.sessions() as session, shop_context(shop_id):
        batch = session.get(LabelBatch, batch_id)
        if batch.status != "done" or batch.done_count != len(order_ids):
            raise RuntimeError(f"batch ended {batch.status} with {batch.done_count} labels: {batch.failures}")
        sheets = len(PdfReader(io.BytesIO(batch.print_file)).pages)
    expected = (len(order_ids) + 3) // 4
    if sheets != expected:
        raise RuntimeError(f"the print file has {sheets} sheets, expected {expected}")
    return elapsed, sheets


def print_stage(runtime, shop_id: int, account_id: int, order_ids: list[int]) -> float:
    """Fetch and compose again from the stored shipments: the part of the job a bare merge compares with."""
    with runtime.sessions() as session, shop_context(shop_id):
        account = session.get(CourierAccount, account_id)
        shipments = batch_shipments(session, account_id, order_ids)
    courier = courier_for(account)
    started = time.perf_counter()
    write_print_file(label_documents(courier, shipments, "pdf"), io.BytesIO(), "a4_4up", "pdf")
    return time.perf_counter() - started


def bare_merge(runtime, shop_id: int, account_id: int) -> float:
    """The same labels one PDF each (fetched first, untimed), merged with pypdf's PdfWriter.append."""
    with runtime.sessions() as session, shop_context(shop_id):
        account = session.get(CourierAccount, account_id)
        numbers = [s.tracking_numbers[0] for s in session.scalars(select(Shipment).order_by(Shipment.id))]
    courier = courier_for(account)
    singles = [courier.label([number], "pdf", "a6").content for number in numbers]
    started = time.perf_counter()
    writer = PdfWriter()
    for content in singles:
        writer.append(PdfReader(io.BytesIO(content)))
    writer.write(io.BytesIO())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 labels: a smoke run")
    parser.add_argument("--labels", type=int, default=500, help="number of labels (default 500)")
    parser.add_argument("--database-url", default=None, help="an empty database to use (default: scratch SQLite)")
    options = parser.parse_args()
    count = 60 if options.quick else options.labels
    if count < 1:
        parser.error("--labels must be at least 1")
    run_started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    url = options.database_url or f"sqlite:///{scratch / 'companion.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = Settings.from_env({"DATABASE_URL": url, "INSTANCE_DIR": str(scratch / "instance"),
                                  "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "x",
                                  "APP_ENV": "test", "LOG_LEVEL": "WARNING"}, testing=True)
    load_job_kinds()
    runtime = build_runtime(settings)
    rss_before = peak_rss_mb()
    try:
        with FakeFanCourier() as fake:
            shop_id, account_id, order_ids = open_ro_shop(runtime, fake, orders=count)
            elapsed, sheets = run_job(runtime, shop_id, account_id, order_ids)
            rss_job = peak_rss_mb()
            stage = print_stage(runtime, shop_id, account_id, order_ids)
            baseline_time = bare_merge(runtime, shop_id, account_id)
    finally:
        runtime.close()
    ours, baseline = count / elapsed, count / baseline_time
    say(f"database: {engine.dialect.name}; {count} orders, FAN Courier fake on loopback HTTP")
    say(f"label batch job: {count} labels in {elapsed:.2f}s = {ours:.1f} labels/s -> {sheets} A4 sheets, "
        f"peak RSS {rss_job:.0f} MB (was {rss_before:.0f} MB before the batch)")
    say(f"print stage alone (labels fetched 50 per call + A4 4-up compose): {stage:.3f}s, "
        f"ratio to the bare merge {stage / baseline_time:.2f}")
    say(f"bare pypdf merge of {count} single-label PDFs (in memory, one per page): {baseline_time:.3f}s = {baseline:.1f} labels/s")
    print(f"benchmark ran {time.perf_counter() - run_started:.1f}s", file=sys.stderr)
    say(f"ratio={elapsed / baseline_time:.3f} baseline={baseline:.1f} ours={ours:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
