"""Reading a bulk operation's JSONL result as a stream: each parent with the child lines that follow it."""
from __future__ import annotations

import json
from typing import Callable, Iterable, Iterator, TypeVar

from connectors.errors import InvalidPayload

T = TypeVar("T")


def group_bulk_lines(lines: Iterable[bytes | str], build: Callable[[dict, list[dict]], T]) -> Iterator[T]:
    """Yield `build(parent, children)` per top-level object; holds one parent's lines in memory, never the file.

    Children (lines with `__parentId`) must follow their parent, which Shopify guarantees when the operation
    was started with groupObjects; anything else is refused rather than silently mis-assigned.
    """
    parent: dict | None = None
    children: list[dict] = []
    for number, raw in enumerate(lines, start=1):
        if not raw or not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            raise InvalidPayload(f"bulk result line {number} is not JSON") from None
        if not isinstance(item, dict):
            raise InvalidPayload(f"bulk result line {number} is not an object")
        parent_id = item.pop("__parentId", None)
        if parent_id is None:
            if parent is not None:
                yield build(parent, children)
            parent, children = item, []
        elif parent is not None and parent_id == parent.get("id"):
            children.append(item)
        else:
            raise InvalidPayload(f"bulk result line {number}: child of {parent_id} does not follow its parent")
    if parent is not None:
        yield build(parent, children)
