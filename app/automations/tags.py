"""Tags on customers, set by hand through the API or by a flow's `tag` step; each change is a signal.

Tag names are matched without regard to case ("VIP" and "vip" are one tag to a shop owner); the first
spelling used is the one kept. A change a flow made says so in its signal (`source: flow`, `flow_id`, and
`caused_by`, the chain of flows that led to it), so no flow in that chain is started again by it
(app.automations.engine).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.automations.signals import emit_signal
from app.models import CustomerTag, Tag, utcnow

MAX_TAG_LENGTH = 128


class InvalidTag(ValueError):
    """A tag name that is empty or too long."""


def tag_name(raw: object) -> str:
    name = " ".join(str(raw or "").split()) if isinstance(raw, str) else ""
    if not name or len(name) > MAX_TAG_LENGTH:
        raise InvalidTag(f"a tag is a name of 1 to {MAX_TAG_LENGTH} characters")
    return name


def _find(session: Session, shop_id: int, name: str) -> Tag | None:
    return session.scalars(select(Tag).where(Tag.shop_id == shop_id, func.lower(Tag.name) == name.lower())
                           .order_by(Tag.id).limit(1)).first()


def ensure_tag(session: Session, shop_id: int, raw_name: str) -> Tag:
    """The shop's tag of that name in any case, created when new (two workers creating it at once get one row)."""
    name = tag_name(raw_name)
    tag = _find(session, shop_id, name)
    if tag is None:
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        session.execute(dialect_insert(Tag.__table__).values(shop_id=shop_id, name=name)
                        .on_conflict_do_nothing(index_elements=["shop_id", "name"]))
        tag = _find(session, shop_id, name)
    return tag


def signal_payload(tag: Tag, source: str, flow_id: int | None = None, caused_by: list[int] | None = None) -> dict:
    """`caused_by`: the flows, first to last, whose runs led to this change (app.automations.engine.cause_chain)."""
    return {"tag": tag.name, "source": source, **({"flow_id": flow_id} if flow_id is not None else {}),
            **({"caused_by": list(caused_by)} if caused_by else {})}


def add_tag(session: Session, shop_id: int, customer_id: int, raw_name: str, *, source: str = "api",
            flow_id: int | None = None, now: dt.datetime | None = None) -> bool:
    """Tag the customer; True when the tag is new to them (then `tag_added` is signalled)."""
    now = now or utcnow()
    tag = ensure_tag(session, shop_id, raw_name)
    held = session.scalars(select(CustomerTag.id).where(CustomerTag.shop_id == shop_id, CustomerTag.customer_id == customer_id,
                                                        CustomerTag.tag_id == tag.id)).first()
    if held is not None:
        return False
    session.add(CustomerTag(shop_id=shop_id, customer_id=customer_id, tag_id=tag.id, created_at=now))
    session.flush()
    emit_signal(session, shop_id, "tag_added", dedupe_key=f"tag_added:{customer_id}:{tag.id}:{now.timestamp()}",
                customer_id=customer_id, subject=("customer", customer_id), payload=signal_payload(tag, source, flow_id),
                now=now)
    return True


def remove_tag(session: Session, shop_id: int, customer_id: int, raw_name: str, *, source: str = "api",
               flow_id: int | None = None, caused_by: list[int] | None = None, now: dt.datetime | None = None) -> bool:
    """Untag the customer; True when they had the tag (then `tag_removed` is signalled)."""
    name, now = tag_name(raw_name), now or utcnow()
    tag = _find(session, shop_id, name)
    if tag is None:
        return False
    removed = session.execute(delete(CustomerTag.__table__).where(
        CustomerTag.__table__.c.shop_id == shop_id, CustomerTag.__table__.c.customer_id == customer_id,
        CustomerTag.__table__.c.tag_id == tag.id)).rowcount
    if not removed:
        return False
    emit_signal(session, shop_id, "tag_removed", dedupe_key=f"tag_removed:{customer_id}:{tag.id}:{now.timestamp()}",
                customer_id=customer_id, subject=("customer", customer_id),
                payload=signal_payload(tag, source, flow_id, caused_by), now=now)
    return True


def tags_of(session: Session, shop_id: int, customer_id: int) -> list[str]:
    return list(session.scalars(select(Tag.name).join(CustomerTag, (CustomerTag.tag_id == Tag.id)
                                                      & (CustomerTag.shop_id == Tag.shop_id))
                                .where(CustomerTag.shop_id == shop_id, CustomerTag.customer_id == customer_id)
                                .order_by(Tag.name)))
