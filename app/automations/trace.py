"""Decision traces: every choice an automation makes, with the gate that made it, kept per customer."""
from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import AutomationDecision, utcnow


def record_decision(session: Session, shop_id: int, decision: str, *, customer_id: int | None = None,
                    flow_run_id: int | None = None, subject: tuple[str, int | None] | None = None,
                    step: str | None = None, now=None, **detail) -> None:
    """Write one decision row; `detail` holds ids, statuses and reasons only (never an address)."""
    session.add(AutomationDecision(**decision_row(shop_id, decision, customer_id=customer_id, flow_run_id=flow_run_id,
                                                  subject=subject, step=step, now=now, **detail)))


def decision_row(shop_id: int, decision: str, *, customer_id: int | None = None, flow_run_id: int | None = None,
                 subject: tuple[str, int | None] | None = None, step: str | None = None, now=None, **detail) -> dict:
    """The columns of one decision, for `record_decisions` (a batch of work writes its decisions at once)."""
    return dict(shop_id=shop_id, customer_id=customer_id, flow_run_id=flow_run_id,
                subject_type=subject[0] if subject else None, subject_id=subject[1] if subject else None,
                step=step, decision=decision[:48],
                detail={k: (str(v) if not isinstance(v, (int, float, bool, list, dict, type(None))) else v)
                        for k, v in detail.items()},
                created_at=now or utcnow())


def record_decisions(session: Session, rows: list[dict]) -> None:
    """Write decision rows (from `decision_row`) with one executemany (pipelined by the PostgreSQL driver)."""
    if rows:
        table = AutomationDecision.__table__
        session.execute(insert(table), rows)
