"""The courier interface: declared capabilities, one retrying HTTP transport, per-account tokens, status maps in data."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
from concurrent.futures import ThreadPoolExecutor
import json
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import requests

from connectors.couriers import print_sheet
from connectors.errors import (
    AmbiguousOutcome, AuthError, ConnectorError, InvalidPayload, NotFound, RateLimited, TemporaryError,
)
from connectors.http import DEFAULT_TIMEOUT, SafeSession
from connectors.retry import jittered_delay, never_sent, retry_after_seconds
from connectors.records import (
    Address, LabelDocument, ShipmentRequest, ShipmentResult, ShipmentStatus, TrackingEvent, TrackingResult,
)

STATUS_MAPS = Path(__file__).parent / "status_maps"
TERMINAL = frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.RETURNED_TO_SENDER, ShipmentStatus.CANCELLED})


class Capability(str, enum.Enum):
    """What a courier can do, so the print station and the tracking poller ask instead of guessing."""

    LABEL_PDF = "label_pdf"
    LABEL_ZPL = "label_zpl"
    SIZE_A4_4UP = "size_a4_4up"  # the courier itself prints four labels on an A4 sheet
    SIZE_A6 = "size_a6"
    SIZE_100X150 = "size_100x150"
    PICKUP_POINTS = "pickup_points"
    TRACKING = "tracking"
    BULK_TRACKING = "bulk_tracking"  # many numbers per tracking call
    CHANGE_FEED = "change_feed"  # "what changed between two times" for the whole account
    COD = "cod"
    CANCEL = "cancel"
    PICKUP_REQUEST = "pickup_request"
    PICKUP_CANCEL = "pickup_cancel"  # a requested pickup can be called off through the API
    HANDOVER_DOCUMENT = "handover_document"  # the courier issues the document its driver signs (manifest, protocol)
    LOOKUP_BY_REFERENCE = "lookup_by_reference"  # an ambiguous create can be resolved without buying twice
    BULK_CREATE = "bulk_create"  # several shipments per create call (FAN's /intern-awb takes a list)
    ASYNC_CREATE = "async_create"  # a create may answer before the tracking number exists: ask `confirm` later


class LabelFormat(str, enum.Enum):
    PDF = "pdf"
    ZPL = "zpl"


class LabelSize(str, enum.Enum):
    A4_4UP = "a4_4up"
    A6 = "a6"
    S100X150 = "100x150"


_NATIVE_SIZE = {LabelSize.A4_4UP: Capability.SIZE_A4_4UP, LabelSize.A6: Capability.SIZE_A6,
                LabelSize.S100X150: Capability.SIZE_100X150}
_FORMAT = {LabelFormat.PDF: Capability.LABEL_PDF, LabelFormat.ZPL: Capability.LABEL_ZPL}


class Unsupported(ConnectorError):
    """The courier (or its API) does not offer this; check `Courier.can(...)` first."""


class CourierRefused(ConnectorError):
    """The courier read the request and refused it (invalid postcode, unknown locker...); fix the data, then retry.

    `errors` maps the courier's field name to its messages, exactly as the courier worded them.
    """

    def __init__(self, message: str, errors: Mapping[str, Sequence[str]] | None = None, status: int | None = None):
        self.errors = {key: list(value) for key, value in (errors or {}).items()}
        self.status = status
        detail = "; ".join(": ".join(part for part in (key, " ".join(value)) if part)
                           for key, value in self.errors.items())
        super().__init__(f"{message}{' (' + detail + ')' if detail else ''}")


class PickupCancelDenied(CourierRefused):
    """The courier will not call a pickup order off and does not say why: the driver may be on the way, or the
    order may already be called off (DPD Polska's ORDER_CANCEL_DENIED answers both). After an earlier attempt whose
    answer was lost, only the courier's panel can tell which."""


@dataclass(frozen=True)
class PickupPoint:
    """A locker, parcel shop or courier office a recipient can collect from (or a sender can drop at)."""

    id: str
    name: str
    kind: str  # locker | pudo | office
    address: Address
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    cash_on_delivery: bool | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PickupRequest:
    """Ask the courier to come and collect parcels: where, on which day, between which hours, what it takes.

    `shipments` are the courier's ids for what is handed over (AWBs, ShipX shipment ids); couriers that collect
    by pickup location rather than by parcel ignore them.
    """

    address: Address
    day: dt.date
    ready_from: dt.time
    ready_until: dt.time
    parcels: int
    weight_kg: Decimal
    shipments: tuple[str, ...] = ()
    envelopes: int = 0
    note: str = ""


@dataclass(frozen=True)
class PickupResult:
    """The courier's number for the pickup order (what staff quote on the phone), as the courier answered it.

    `details` is what the courier needs besides the number to change or call off that order later (DPD Polska's
    checksum); callers store it with the number and hand both back to `cancel_pickup`.
    """

    courier: str
    pickup_id: str
    raw: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HandoverDocument:
    """The courier's own handover printout (manifest, protocol, dispatch order printout) for its driver to sign."""

    content: bytes
    media_type: str  # application/pdf
    reference: str = ""  # the courier's number for the document, where it gives one


# --- status maps ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusMap:
    """A courier's status codes to our statuses; a code we have not mapped is UNKNOWN, never IN_TRANSIT."""

    courier: str
    codes: Mapping[str, ShipmentStatus]
    texts: Mapping[str, str] = field(default_factory=dict)
    # (lower-case words, status), first match wins: only for couriers that publish no list of codes (Cargus),
    # and only when the code itself is unmapped.
    patterns: tuple[tuple[str, ShipmentStatus], ...] = ()

    def status(self, code: Any, text: str = "") -> ShipmentStatus:
        if code is not None and str(code).strip() in self.codes:
            return self.codes[str(code).strip()]
        folded = _fold(text)
        for words, status in self.patterns:
            if words in folded:
                return status
        return ShipmentStatus.UNKNOWN


_NO_DECOMPOSITION = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D"})  # letters NFKD leaves alone


def _fold(text: str) -> str:
    """Lower case without diacritics, so "Livrată" and "livrata" match the same pattern."""
    decomposed = unicodedata.normalize("NFKD", (text or "").translate(_NO_DECOMPOSITION))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def load_status_map(name: str, folder: Path = STATUS_MAPS) -> StatusMap:
    """Read `status_maps/<name>.json`: {"courier": ..., "codes": {"<code>": {"status": ..., "text": ...}}}."""
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    codes: dict[str, ShipmentStatus] = {}
    texts: dict[str, str] = {}
    for code, entry in data["codes"].items():
        codes[code] = ShipmentStatus(entry["status"])  # a typo in the data file fails at import, not at 3 a.m.
        texts[code] = entry.get("text", "")
    patterns = tuple((_fold(words), ShipmentStatus(status)) for words, status in data.get("patterns", []))
    return StatusMap(data["courier"], codes, texts, patterns)


def tracking_result(number: str, events: Iterable[TrackingEvent], *, status: ShipmentStatus | None = None,
                    return_tracking_number: str | None = None) -> TrackingResult:
    """Events oldest first; the parcel's status is its latest event's unless the courier said more (`status`)."""
    ordered = tuple(sorted(events, key=lambda event: event.occurred_at))
    current = status or (ordered[-1].status if ordered else ShipmentStatus.UNKNOWN)
    delivered = next((e.occurred_at for e in reversed(ordered) if e.status is ShipmentStatus.DELIVERED), None)
    return TrackingResult(number, current, ordered, return_tracking_number=return_tracking_number,
                          delivered_at=delivered if current is ShipmentStatus.DELIVERED else None)


# --- tokens -----------------------------------------------------------------------------------------

@dataclass
class _Token:
    value: str
    expires_at: float | None  # epoch seconds


class TokenCache:
    """Login tokens per courier account, shared by threads: however many threads need a token, one logs in."""

    MARGIN_SECONDS = 60.0  # renew a little early rather than send a token that dies in flight

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._tokens: dict[tuple, _Token] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: tuple) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, token: _Token | None) -> bool:
        return token is not None and (token.expires_at is None or token.expires_at - self.MARGIN_SECONDS > self._clock())

    def get(self, key: tuple, login: Callable[[], tuple[str, float | None]]) -> str:
        with self._lock(key):
            token = self._tokens.get(key)
            if not self._fresh(token):
                token = self._tokens[key] = _Token(*login())
            return token.value

    def renew(self, key: tuple, refused: str, login: Callable[[], tuple[str, float | None]]) -> str:
        """A token the courier refused: log in again, unless another thread already replaced it meanwhile."""
        with self._lock(key):
            token = self._tokens.get(key)
            if token is None or token.value == refused or not self._fresh(token):
                token = self._tokens[key] = _Token(*login())
            return token.value

    def forget(self, key: tuple) -> None:
        with self._lock(key):
            self._tokens.pop(key, None)


SHARED_TOKENS = TokenCache()


# --- retries ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait; the one place that decides it for every courier call."""

    attempts: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    max_retry_after: float = 120.0  # a Retry-After longer than this is the caller's problem, not a sleep
    # Seconds one logical call may take, waits and timeouts included: a retry that could outlast it is not
    # started (someone is waiting on a web request). None: no budget (background jobs).
    budget_seconds: float | None = None

    def delay(self, attempt: int) -> float:
        return jittered_delay(attempt, self.base_seconds, self.max_seconds)

    def may_retry(self, elapsed: float, wait: float, timeout: float | tuple[float, float]) -> bool:
        """Whether another attempt, after `wait` and taking at most `timeout`, still ends inside the budget."""
        if self.budget_seconds is None:
            return True
        longest = sum(timeout) if isinstance(timeout, tuple) else timeout
        return elapsed + wait + longest <= self.budget_seconds


# While a member of staff waits on a web request (gunicorn ends a worker after 30 s): one retry at most, a short
# read timeout, no long Retry-After sleep, and no retry that could not finish inside 25 s.
STAFF_WAITING_RETRY = RetryPolicy(attempts=2, base_seconds=0.25, max_seconds=1.0, max_retry_after=2.0,
                                  budget_seconds=25.0)
STAFF_WAITING_TIMEOUT = (4.0, 16.0)  # (connect, read) seconds


def decode_pdf(encoded: Any, what: str) -> bytes:
    """A base64 PDF from a courier's answer (Cargus's documents, DPD Polska's protocol), checked to be one."""
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidPayload(f"{what}: the answer is not base64") from None
    if not content.startswith(b"%PDF"):
        raise InvalidPayload(f"{what}: the decoded answer is not a PDF")
    return content


def error_text(response: requests.Response, limit: int = 300) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:limit]
    if isinstance(body, dict):
        for key in ("message", "error", "Message", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key][:limit]
    return json.dumps(body, ensure_ascii=False)[:limit]


def number(value: Decimal | int | None) -> float | int | None:
    """A Decimal as a JSON number for a courier's API (the only place money and weights leave Decimal)."""
    if value is None:
        return None
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)


# --- the base class -------------------------------------------------------------------------------------

class Courier:
    """One courier account. Subclasses implement the underscore methods; callers use the public ones.

    Safe to share between threads. Tokens live in a TokenCache keyed by account, so a fresh Courier object
    per job reuses the login of the previous one.
    """

    name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    status_map: ClassVar[StatusMap | None] = None
    auth_failure_statuses: ClassVar[tuple[int, ...]] = (401,)
    renews_tokens: ClassVar[bool] = True  # False for couriers with a fixed API token (nothing to renew)
    tracking_batch: ClassVar[int] = 50
    create_batch: ClassVar[int] = 1  # shipments per create call, for couriers with BULK_CREATE
    # Calls in flight at once for one account: the couriers publish no rate limits, so a few (a 429 still
    # backs off through RetryPolicy); a courier that is known to be strict lowers it.
    max_concurrency: ClassVar[int] = 4
    # Why a courier without PICKUP_REQUEST needs none, where that is known (said to staff with the refusal).
    pickup_note: ClassVar[str] = ""
    # True when the courier's handover printout belongs to a pickup order (InPost dispatch order, Cargus order),
    # so there is none until a pickup was requested; False when it is made from the shipments alone (DPD Polska).
    handover_needs_pickup: ClassVar[bool] = False

    def __init__(self, *, base_url: str | None = None, session: requests.Session | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 tokens: TokenCache | None = None):
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._session = session or SafeSession(user_agent="store-companion-couriers")
        self._timeout = timeout
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._tokens = tokens or SHARED_TOKENS

    def __repr__(self) -> str:  # credentials stay out of logs
        return f"{type(self).__name__}({self.base_url!r}, account={self.account!r})"

    # --- what subclasses provide ------------------------------------------------------------------------

    @property
    def account(self) -> str:
        """Who we are at the courier (client id, user name); never a secret."""
        return ""

    def _login(self) -> tuple[str, float | None]:
        raise Unsupported(f"{self.name} has no login")

    def _auth_headers(self, token: str) -> dict[str, str]:
        return {}

    def _account_headers(self) -> dict[str, str]:
        """Headers every request carries, the login included (an API gateway's subscription key)."""
        return {}

    def _credentials_refused(self, response: requests.Response) -> bool:
        """True when a 401 blames the account itself, so logging in again cannot help."""
        return False

    def _answer_error(self, response: requests.Response, what: str) -> ConnectorError | None:
        """An error the body states whatever the HTTP status says (a SOAP fault arrives as HTTP 500 but means
        the courier read the request and refused it); None to judge by the status code."""
        return None

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        raise Unsupported(f"{self.name} cannot create shipments")

    def _find(self, request: ShipmentRequest, since: dt.datetime) -> ShipmentResult | None:
        raise Unsupported(f"{self.name} cannot look a shipment up by our reference")

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        raise Unsupported(f"{self.name} has no labels")

    def _label_key(self, shipment: str | ShipmentResult) -> str:
        if isinstance(shipment, ShipmentResult):
            return shipment.shipment_id or shipment.tracking_numbers[0]
        return shipment

    def _label_keys(self, shipment: str | ShipmentResult) -> list[str]:
        """What to print for one shipment; couriers that print per parcel list every parcel."""
        return [self._label_key(shipment)]

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        raise Unsupported(f"{self.name} has no tracking")

    def _changes(self, since: dt.datetime, until: dt.datetime) -> list[TrackingResult]:
        raise Unsupported(f"{self.name} has no change feed")

    def _pickup_points(self, **filters: Any) -> list[PickupPoint]:
        raise Unsupported(f"{self.name} has no pickup points")

    def _cancel(self, key: str) -> bool:
        raise Unsupported(f"{self.name} cannot cancel shipments")

    # --- the public interface ---------------------------------------------------------------------------

    @classmethod
    def can(cls, capability: Capability | str) -> bool:
        return Capability(capability) in cls.capabilities

    def create_shipment(self, request: ShipmentRequest, *, after_ambiguous: bool = False,
                        first_attempt_at: dt.datetime | None = None) -> ShipmentResult:
        """Buy one label. `request.reference` is the idempotency key: a retry with it never buys a second one.

        After a timeout or 5xx on the create itself the courier may or may not have made the shipment: we look it
        up by reference (where the courier allows) and return it, or raise AmbiguousOutcome. A later retry of a
        request whose outcome was ambiguous must pass `after_ambiguous=True`, so we look before buying again;
        `first_attempt_at` (when the first attempt was sent) narrows that search, two days back by default.
        """
        if not request.reference:
            raise ValueError("a shipment request needs our reference: it is what stops a retry buying twice")
        if request.cash_on_delivery is not None and not self.can(Capability.COD):
            raise Unsupported(f"{self.name} does not collect cash on delivery")
        now = dt.datetime.now(dt.timezone.utc)
        margin = dt.timedelta(hours=1)  # our clock and the courier's need not agree
        since = first_attempt_at - margin if first_attempt_at else now - dt.timedelta(days=2)
        if after_ambiguous:
            if not self.can(Capability.LOOKUP_BY_REFERENCE):
                raise AmbiguousOutcome(
                    f"{self.name}: an earlier attempt for {request.reference} may have created a shipment and "
                    f"{self.name} cannot be asked by reference; check the courier's panel before buying again")
            found = self._find(request, since)
            if found is not None:
                return found
        try:
            return self._create(request)
        except AmbiguousOutcome as unknown:
            if not self.can(Capability.LOOKUP_BY_REFERENCE):
                raise
            try:
                found = self._find(request, since if after_ambiguous else (first_attempt_at or now) - margin)
            except ConnectorError:
                raise unknown from None
            if found is None:
                raise
            return found

    def create_shipments(self, requests_: Sequence[ShipmentRequest]) -> list[ShipmentResult | ConnectorError]:
        """One outcome per request, in order: a result, or the error that stopped that one (the rest go on).

        Couriers that take several shipments per call get them `create_batch` at a time; the others get one call
        per shipment, at most `max_concurrency` in flight. A refused login stops everything not yet sent: those
        requests get the same AuthError as their outcome (nothing was bought for them).
        """
        requests_ = list(requests_)
        if not requests_:
            return []
        if self.can(Capability.BULK_CREATE) and self.create_batch > 1:
            chunks = [requests_[start:start + self.create_batch] for start in range(0, len(requests_), self.create_batch)]
            work: Callable[[Any], list] = self._create_chunk
        else:
            chunks = [[request] for request in requests_]
            work = lambda chunk: [self.create_shipment(chunk[0])]  # noqa: E731
        refused: list[AuthError] = []

        def attempt(chunk: list[ShipmentRequest]) -> list[ShipmentResult | ConnectorError]:
            if refused:
                return [refused[0]] * len(chunk)
            try:
                return work(chunk)
            except AuthError as exc:
                refused.append(exc)
                return [exc] * len(chunk)
            except ConnectorError as exc:
                return [exc] * len(chunk)

        workers = max(1, min(self.max_concurrency, len(chunks)))
        if workers == 1:
            outcomes = [attempt(chunk) for chunk in chunks]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-create") as pool:
                outcomes = list(pool.map(attempt, chunks))
        return [outcome for chunk in outcomes for outcome in chunk]

    def _create_chunk(self, chunk: list[ShipmentRequest]) -> list[ShipmentResult | ConnectorError]:
        """Several new shipments in one call (BULK_CREATE); an ambiguous answer is looked up by reference."""
        for request in chunk:
            if not request.reference:
                raise ValueError("a shipment request needs our reference: it is what stops a retry buying twice")
        sent_at = dt.datetime.now(dt.timezone.utc)
        try:
            return self._create_many(chunk)
        except AmbiguousOutcome as unknown:
            if not self.can(Capability.LOOKUP_BY_REFERENCE):
                raise
            try:
                found = self._find_many(chunk, sent_at - dt.timedelta(hours=1))
            except ConnectorError:
                raise unknown from None
            return [found.get(request.reference) or unknown for request in chunk]

    def _create_many(self, chunk: list[ShipmentRequest]) -> list[ShipmentResult | ConnectorError]:
        raise Unsupported(f"{self.name} creates one shipment per call")

    def _find_many(self, requests_: list[ShipmentRequest], since: dt.datetime) -> dict[str, ShipmentResult]:
        """The shipments earlier attempts made for these references (those found), by reference."""
        found = {}
        for request in requests_:
            result = self._find(request, since)
            if result is not None:
                found[request.reference] = result
        return found

    def confirm(self, shipment: ShipmentResult) -> ShipmentResult:
        """The shipment as the courier holds it now. For couriers that number shipments after answering the
        create (ASYNC_CREATE), its `tracking_numbers` stay empty until the courier has given it one."""
        if shipment.tracking_numbers or not self.can(Capability.ASYNC_CREATE):
            return shipment
        return self._confirm(shipment)

    def _confirm(self, shipment: ShipmentResult) -> ShipmentResult:
        raise Unsupported(f"{self.name} numbers its shipments when it creates them")

    def find_shipment(self, request: ShipmentRequest, *, since: dt.datetime | None = None) -> ShipmentResult | None:
        """The shipment an earlier attempt made for `request.reference`, or None when there is none."""
        if not self.can(Capability.LOOKUP_BY_REFERENCE):
            raise Unsupported(f"{self.name} cannot look a shipment up by our reference")
        return self._find(request, since or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))

    def label(self, shipments: Sequence[str | ShipmentResult], label_format: LabelFormat | str = LabelFormat.PDF,
              size: LabelSize | str = LabelSize.A6) -> LabelDocument:
        """One printable document for all `shipments` (tracking numbers, or the results create_shipment gave).

        PDF sizes the courier does not print itself are made from its A6 labels (four per A4 sheet, or scaled
        onto 100x150 mm); ZPL is whatever the courier's printer language output is, concatenated.
        """
        label_format, size = LabelFormat(label_format), LabelSize(size)
        if not self.can(_FORMAT[label_format]):
            raise Unsupported(f"{self.name} does not print {label_format.value} labels")
        if not shipments:
            raise ValueError("no shipments to print")
        keys = [key for shipment in shipments for key in self._label_keys(shipment)]
        if label_format is LabelFormat.ZPL or self.can(_NATIVE_SIZE[size]):
            return self._labels(keys, label_format, size)
        return print_sheet.compose([self._labels(keys, LabelFormat.PDF, LabelSize.A6)], size)

    def track(self, numbers: Sequence[str]) -> list[TrackingResult]:
        """The current status and events of each tracking number, in batches the courier accepts."""
        if not self.can(Capability.TRACKING):
            raise Unsupported(f"{self.name} has no tracking")
        batch = self.tracking_batch if self.can(Capability.BULK_TRACKING) else 1
        results: list[TrackingResult] = []
        numbers = list(dict.fromkeys(numbers))
        for start in range(0, len(numbers), batch):
            results += self._track(numbers[start:start + batch])
        return results

    def track_changes(self, since: dt.datetime, until: dt.datetime | None = None) -> list[TrackingResult]:
        """Every parcel of the account that moved between `since` and `until` (the cheap way to poll)."""
        if not self.can(Capability.CHANGE_FEED):
            raise Unsupported(f"{self.name} has no change feed")
        return self._changes(since, until or dt.datetime.now(dt.timezone.utc))

    def pickup_points(self, **filters: Any) -> list[PickupPoint]:
        if not self.can(Capability.PICKUP_POINTS):
            raise Unsupported(f"{self.name} has no pickup points")
        return self._pickup_points(**filters)

    def cancel(self, shipment: str | ShipmentResult) -> bool:
        """True when the courier cancelled it; False when it is too late (already picked up)."""
        if not self.can(Capability.CANCEL):
            raise Unsupported(f"{self.name} cannot cancel shipments")
        return self._cancel(self._label_key(shipment))

    @classmethod
    def no_pickup_requests(cls) -> str:
        """What staff are told when this courier takes no pickup requests through its API."""
        return (f"{cls.name}: pickups cannot be requested through this courier's API; book the collection by phone "
                f"or in the courier's own panel{' (' + cls.pickup_note + ')' if cls.pickup_note else ''}")

    @classmethod
    def no_pickup_cancel(cls) -> str:
        """What staff are told when a pickup of this courier cannot be called off through its API."""
        return (f"{cls.name}: a pickup cannot be called off through this courier's API; call the courier or use its "
                f"own panel")

    def request_pickup(self, pickup: PickupRequest) -> PickupResult:
        """Order a courier to collect `pickup` (PICKUP_REQUEST). Not idempotent at any courier: callers record
        that they asked, under a unique key, before calling."""
        if not self.can(Capability.PICKUP_REQUEST):
            raise Unsupported(self.no_pickup_requests())
        if pickup.ready_until <= pickup.ready_from:
            raise ValueError("the pickup window ends before it starts")
        return self._pickup(pickup)

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        raise Unsupported(f"{self.name} takes no pickup requests")

    def cancel_pickup(self, pickup: PickupResult) -> None:
        """Call off a pickup `request_pickup` ordered (PICKUP_CANCEL). Returns once the courier cancelled it; raises
        CourierRefused in the courier's own words when it will not (too late: the driver is on the way),
        PickupCancelDenied when its refusal may also mean "already called off", and NotFound when the courier has
        no such live order (never had it, or it was called off already).

        Sent once, never replayed after it may have reached the courier: a second try would be answered "not found"
        or "denied" when the first one worked, so a lost answer raises AmbiguousOutcome instead and callers record
        that the outcome is unknown (an earlier attempt may have reached the courier) before asking again."""
        if not self.can(Capability.PICKUP_CANCEL):
            raise Unsupported(self.no_pickup_cancel())
        if not pickup.pickup_id:
            raise ValueError("cancelling a pickup needs the courier's pickup order number")
        self._cancel_pickup(pickup)

    def _cancel_pickup(self, pickup: PickupResult) -> None:
        raise Unsupported(f"{self.name} cannot call off pickups")

    def handover_document(self, shipments: Sequence[str | ShipmentResult], pickup: PickupResult | None = None, *,
                          sender: Address | None = None) -> HandoverDocument:
        """The courier's own handover document for these shipments (HANDOVER_DOCUMENT), as a PDF. Couriers whose
        document belongs to a pickup order need that order (`pickup`); the others read the shipments, and print
        `sender` as the place of collection where the courier asks for one."""
        if not self.can(Capability.HANDOVER_DOCUMENT):
            raise Unsupported(f"{self.name} issues no handover document through its API; our own handover list "
                              f"is the document")
        if self.handover_needs_pickup and (pickup is None or not pickup.pickup_id):
            raise ValueError(f"{self.name}'s handover document belongs to a pickup order: request the pickup first")
        if not shipments and not self.handover_needs_pickup:
            raise ValueError("no shipments to hand over")
        keys = [key for shipment in shipments for key in self._label_keys(shipment)]
        return self._handover(keys, pickup, sender)

    def _handover(self, keys: list[str], pickup: PickupResult | None, sender: Address | None) -> HandoverDocument:
        raise Unsupported(f"{self.name} issues no handover document")

    # --- transport --------------------------------------------------------------------------------------

    @property
    def _token_key(self) -> tuple:
        return (self.name, self.base_url, self.account)

    def _token(self) -> str:
        return self._tokens.get(self._token_key, self._login)

    def _refused(self, response: requests.Response, what: str) -> ConnectorError:
        """A 4xx other than auth, 404 and 429, as the courier explained it; subclasses read their error shape."""
        return CourierRefused(f"{self.name} {what}: HTTP {response.status_code} {error_text(response)}",
                              status=response.status_code)

    def _call(self, method: str, path: str, *, what: str, idempotent: bool, authed: bool = True,
              params: Any = None, json_body: Any = None, data: Any = None,
              headers: dict | None = None, url: str | None = None) -> requests.Response:
        """One logical call: retried on 429, on failures before sending, and (idempotent calls only) on 5xx or
        timeouts; a refused token is renewed once and the call replayed once. A create that may have been applied
        raises AmbiguousOutcome rather than being sent again."""
        renewed = False
        attempt = 0
        started = self._clock()
        url = url or f"{self.base_url}{path}"
        where = f"{self.name} {what}"
        while True:
            sent_headers = {**self._account_headers(), **(headers or {})}
            token = None
            if authed:
                token = self._token()
                sent_headers.update(self._auth_headers(token))
            try:
                response = self._session.request(method, url, params=params, json=json_body, data=data,
                                                 headers=sent_headers, timeout=self._timeout)
            except requests.RequestException as exc:
                if not idempotent and not never_sent(exc):
                    raise AmbiguousOutcome(f"{where}: {type(exc).__name__} after sending; it may have been applied") from None
                failure: ConnectorError = TemporaryError(f"{where}: {type(exc).__name__}")
                wait = self._retry.delay(attempt)
            else:
                stated = self._answer_error(response, what)
                if stated is not None:
                    raise stated
                status = response.status_code
                if (status in self.auth_failure_statuses and authed and self.renews_tokens and not renewed
                        and not self._credentials_refused(response)):
                    renewed = True  # once: a second refusal means the credentials themselves are wrong
                    self._tokens.renew(self._token_key, token, self._login)
                    continue
                if status in self.auth_failure_statuses or status == 403:
                    raise AuthError(f"{where}: HTTP {status} {error_text(response)}")
                if status == 429:
                    wait = retry_after_seconds(response)
                    wait = self._retry.delay(attempt) if wait is None else wait
                    failure = RateLimited(f"{where}: HTTP 429 {error_text(response)}", wait)
                    if wait > self._retry.max_retry_after:
                        raise failure
                elif status >= 500:
                    if not idempotent:
                        raise AmbiguousOutcome(f"{where}: HTTP {status}; it may have been applied")
                    failure, wait = TemporaryError(f"{where}: HTTP {status}"), self._retry.delay(attempt)
                elif status == 404:
                    raise NotFound(f"{where}: HTTP 404 {error_text(response)}")
                elif status >= 400 or 300 <= status < 400:
                    raise self._refused(response, what)
                else:
                    return response
            attempt += 1
            if attempt >= self._retry.attempts or not self._retry.may_retry(self._clock() - started, wait,
                                                                             self._timeout):
                raise failure
            self._sleep(wait)

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise InvalidPayload(f"{self.name} {what}: the answer is not JSON") from None


_STREET_NUMBER = re.compile(r"^(?P<street>.+?)[\s,]+(?:nr\.?\s*)?(?P<number>\d+[A-Za-z]?(?:\s*[-/]\s*\d+[A-Za-z]?)?)$",
                            re.IGNORECASE)


def split_street(street: str) -> tuple[str, str]:
    """("Str. Lunga", "12A") from "Str. Lunga nr. 12A": couriers want the building number in its own field."""
    match = _STREET_NUMBER.match((street or "").strip())
    if not match:
        return (street or "").strip(), ""
    return match.group("street").strip(" ,"), match.group("number").replace(" ", "")


def local_time(value: str, zone: str, formats: Sequence[str] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")) -> dt.datetime:
    """A courier's wall-clock time without an offset (FAN, Sameday tokens), read in its zone, as UTC."""
    for layout in formats:
        try:
            naive = dt.datetime.strptime(value.strip(), layout)
        except ValueError:
            continue
        return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(dt.timezone.utc)
    raise InvalidPayload(f"unreadable time {value!r}")
