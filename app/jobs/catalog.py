"""Imports every module that registers job kinds or clock scans, so each process knows them all."""
from __future__ import annotations

import importlib
import os

from app.config import ConfigError

JOB_MODULES = [
    "app.jobs.maintenance",
    "app.store.jobs",
    "app.shopify.ingest",
    "app.shopify.sync",
    "app.shopify.writeback",
    "app.shopify.scans",
    "app.woocommerce.ingest",
    "app.woocommerce.sync",
    "app.woocommerce.writeback",
    "app.woocommerce.scans",
    "app.automations.detection",
    "app.automations.engine",
    "app.automations.birthdays",
    "app.automations.browse",
    "app.automations.engagement",
    "app.automations.segments",
    "app.messaging.send",
    "app.messaging.double_opt_in",
    "app.storefront.retention",
    "app.shipping.batches",
    "app.shipping.tracking",
]


def load_job_kinds(extra: list[str] | None = None) -> None:
    """Import the built-in job modules and any named in EXTRA_JOB_MODULES (comma-separated)."""
    for module in JOB_MODULES + list(extra or []):
        importlib.import_module(module)
    for module in (name.strip() for name in os.environ.get("EXTRA_JOB_MODULES", "").split(",") if name.strip()):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"EXTRA_JOB_MODULES names {module!r}, which cannot be imported: {exc}") from None
