"""Job kinds: a registered function per kind of work, with its retry, lease and pacing settings."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable


class UnknownJobKind(LookupError):
    pass


class BadJobArguments(ValueError):
    """The stored arguments do not fit the kind's function; retrying would not help."""


@dataclass(frozen=True)
class JobKind:
    name: str
    func: Callable[..., Any]
    max_attempts: int | None = None
    lease_seconds: int | None = None
    concurrency: int | None = None
    rate_per_second: float | None = None

    @property
    def is_limited(self) -> bool:
        return self.concurrency is not None or self.rate_per_second is not None

    def check_arguments(self, args: dict) -> None:
        if not isinstance(args, dict):
            raise BadJobArguments(f"job {self.name}: arguments must be an object, got {type(args).__name__}")
        if not _accepts_names(self.func, frozenset(args)):
            try:
                _signature(self.func).bind(None, **args)
            except TypeError as exc:
                raise BadJobArguments(f"job {self.name}: {exc}") from None
        for key, value in args.items():
            if not _is_plain(value):
                raise BadJobArguments(f"job {self.name}: argument {key!r} must be ids or plain JSON values")


@functools.cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    """A kind's signature, read once: enqueue checks arguments on every webhook's hot path."""
    return inspect.signature(func)


@functools.lru_cache(maxsize=4096)
def _accepts_names(func: Callable[..., Any], names: frozenset[str]) -> bool:
    """Whether `func(ctx, **args)` binds arguments with exactly these names; remembered per set of names."""
    try:
        _signature(func).bind(None, **dict.fromkeys(names))
        return True
    except TypeError:
        return False


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


_kinds: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    max_attempts: int | None = None,
    lease_seconds: int | None = None,
    concurrency: int | None = None,
    rate_per_second: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `func(ctx, **ids)` as the job kind `name`. The function must be safe to run twice."""
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if rate_per_second is not None and rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        existing = _kinds.get(name)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"job kind {name!r} is already registered by {existing.func.__qualname__}")
        _kinds[name] = JobKind(name, func, max_attempts, lease_seconds, concurrency, rate_per_second)
        return func

    return register


def get_kind(name: str) -> JobKind:
    try:
        return _kinds[name]
    except KeyError:
        raise UnknownJobKind(f"no job kind named {name!r} is registered") from None


def all_kinds() -> dict[str, JobKind]:
    return dict(_kinds)


def limited_kinds() -> list[JobKind]:
    return [kind for kind in _kinds.values() if kind.is_limited]
