"""Fake couriers on loopback: FAN Courier API v2, Sameday and InPost ShipX, speaking their documented shapes.

Each fake is a real threaded HTTP server. It issues and expires tokens, validates what the real API validates
(postcodes, phones, lockers), keeps the shipments it created, answers labels with real small PDFs (or ZPL), and
records every request. Tests script failures with `fail_next` (before or after the fake acted) and `slow_next`.
Shapes follow shared/reference/couriers.md and the SDKs it cites; where a courier documents no error body, the
fake's body is marked as an assumption.
"""
from __future__ import annotations

import base64
import datetime as dt
import http.server
import io
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pytest
from reportlab.pdfgen import canvas
from requests.structures import CaseInsensitiveDict

from tests.loopback import LoopbackFake

MM = 72 / 25.4
A4 = (210 * MM, 297 * MM)
A6 = (105 * MM, 148 * MM)
BUCHAREST = dt.timezone(dt.timedelta(hours=2))  # the fakes' wall clock; winter time, good enough for fixtures


def label_pdf(numbers: list[str], size: tuple[float, float] = A6, courier: str = "") -> bytes:
    """A real PDF with one page of `size` per number, the number printed on it, like a courier's label."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=size)
    for number in numbers:
        page.setFont("Helvetica-Bold", 14)
        page.drawString(20, size[1] - 40, courier or "COURIER")
        page.drawString(20, size[1] - 70, number)
        page.rect(10, 10, size[0] - 20, size[1] - 20)
        page.showPage()
    page.save()
    return buffer.getvalue()


def label_zpl(numbers: list[str], dpi: int = 203) -> bytes:
    return "".join(f"^XA^CI28^FO40,40^A0N,40,40^FD{n}^FS^FO40,100^BCN,120,Y,N,N^FD{n}^FS^XZ\n"
                   for n in numbers).encode()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict
    body: Any = None


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list → JSON, bytes → raw
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class _Fault:
    path: str  # regex matched against the path
    status: int | None  # None: answer normally (used with a delay)
    body: Any
    headers: dict
    after: bool  # act first, then answer with the fault (the ambiguous case)
    delay: float = 0.0


class FakeCourier(LoopbackFake):
    """What every fake shares: a threaded loopback server, faults, recorded requests, tokens with a lifetime."""

    token_lifetime = 24 * 3600

    def __init__(self):
        self.requests: list[Recorded] = []
        self.tokens: dict[str, float] = {}  # token -> expires at (time.time())
        self.logins = 0
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()

    # --- test controls -----------------------------------------------------------------------------------

    def fail_next(self, status: int, *, path: str = ".*", body: Any = None, headers: dict | None = None,
                  times: int = 1, after: bool = False) -> None:
        """The next `times` requests whose path matches answer `status`; with after=True the fake acts first."""
        with self._lock:
            self._faults += [_Fault(path, status, body, headers or {}, after)] * times

    def slow_next(self, seconds: float, *, path: str = ".*") -> None:
        """The next matching request is carried out, then answered only after `seconds` (a client timeout)."""
        with self._lock:
            self._faults.append(_Fault(path, None, None, {}, True, seconds))

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def issue_token(self) -> tuple[str, float]:
        with self._lock:
            self.logins += 1
            token = f"{self.logins}|{secrets.token_urlsafe(24)}"
            expires = time.time() + self.token_lifetime
            self.tokens[token] = expires
            return token, expires

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and self.tokens.get(token, 0) > time.time()

    def requests_to(self, pattern: str, method: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if re.fullmatch(pattern, r.path) and (method is None or r.method == method)]

    # --- dispatch ----------------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if re.fullmatch(fault.path, path):
                    return self._faults.pop(index)
        return None

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def serve(self, request: Recorded) -> tuple[Reply, float]:
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request.path)
        if fault is not None and not fault.after:
            return Reply(fault.status, fault.body, fault.headers), 0.0
        reply = self.handle(request)
        if fault is not None and fault.status is not None:
            return Reply(fault.status, fault.body, fault.headers), 0.0
        return reply, fault.delay if fault is not None else 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: FakeCourier
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate small writes; with Nagle on, each answer would wait ~40 ms for a
    # delayed ACK on loopback. A courier's real server does not stall like that, so neither does the fake.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def _dispatch(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        content_type = self.headers.get("Content-Type") or ""
        body: Any = raw
        if raw and "json" in content_type:
            body = json.loads(raw)
        elif raw and "form" in content_type:
            body = {key: values[-1] for key, values in parse_qs(raw.decode(), keep_blank_values=True).items()}
        request = Recorded(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                           CaseInsensitiveDict(self.headers.items()), body)
        reply, delay = self.fake.serve(request)
        if delay:
            time.sleep(delay)
        if isinstance(reply.body, bytes):
            data, kind = reply.body, reply.content_type
        elif reply.body is None:
            data, kind = b"", reply.content_type
        else:
            data, kind = json.dumps(reply.body, ensure_ascii=False).encode(), "application/json"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting; that is what a timeout test wants

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch


FakeCourier.handler_class = _Handler


def _bearer(request: Recorded) -> str | None:
    value = request.headers.get("Authorization") or ""
    return value[7:] if value.startswith("Bearer ") else None


def _bucharest(moment: float | None = None) -> str:
    return dt.datetime.fromtimestamp(moment or time.time(), BUCHAREST).strftime("%Y-%m-%d %H:%M:%S")


# --- FAN Courier ---------------------------------------------------------------------------------------------

FAN_UNAUTHENTICATED = {"status": "error", "message": "Unauthenticated."}  # assumption: FAN documents no 401 body


class FakeFanCourier(FakeCourier):
    """FAN Courier API v2 (api.fancourier.ro): /login, /intern-awb, /awb/label, /reports/awb(/tracking), PUDO."""

    def __init__(self, client_id: str = "7032158", username: str = "clienttest", password: str = "testing"):
        super().__init__()
        self.client_id, self.username, self.password = client_id, username, password
        self.awbs: dict[str, dict] = {}  # awb -> {"shipment": payload, "date": ..., "events": [...], "return": ...}
        self.pickup_points = [
            {"id": "F1011137", "name": "FANbox Kaufland Aparatorii", "routingLocation": "Bucuresti",
             "description": "Langa intrarea principala", "latitude": "44.384394", "longitude": "26.140431",
             "address": {"locality": "Bucuresti", "county": "Bucuresti", "street": "Sos. Oltenitei",
                         "streetNo": "388", "zipCode": "041337"},
             "schedule": [], "drawer": [], "phones": [], "email": "", "paymentMethods": ["card"]},
        ]
        self._numbers = itertools.count(2332300120218)
        self.courier_orders: dict[str, dict] = {}
        self._orders = itertools.count(4417001)

    def add_events(self, awb: str, events: list[tuple[str, str, str, str]]) -> None:
        """Scans on an AWB: (id, name, location, "YYYY-mm-dd HH:MM:SS" Bucharest time)."""
        self.awbs[awb]["events"] += [{"id": i, "name": n, "location": loc, "date": d} for i, n, loc, d in events]

    def set_return(self, awb: str, return_awb: str) -> None:
        self.awbs[awb]["return"] = return_awb

    def handle(self, request: Recorded) -> Reply:
        if request.path == "/login" and request.method == "POST":
            form = request.body if isinstance(request.body, dict) else {}
            if form.get("username") != self.username or form.get("password") != self.password:
                return Reply(401, {"status": "error", "message": "Invalid credentials"})
            token, expires = self.issue_token()
            return Reply(200, {"status": "success", "data": {"token": token, "expiresAt": _bucharest(expires)}})
        if not self.token_valid(_bearer(request)):
            return Reply(401, FAN_UNAUTHENTICATED)
        query = request.query
        client_id = (request.body.get("clientId") if isinstance(request.body, dict) else None) \
            or (query.get("clientId") or [None])[0]
        if str(client_id) != self.client_id:
            return Reply(422, {"status": "error", "message": "The selected client id is invalid."})
        routes: dict[tuple[str, str], Callable[[Recorded], Reply]] = {
            ("POST", "/intern-awb"): self._create, ("GET", "/awb/label"): self._label,
            ("GET", "/reports/awb/tracking"): self._track, ("GET", "/reports/awb"): self._report,
            ("GET", "/reports/pickup-points"): self._pudo, ("DELETE", "/awb"): self._delete,
            ("POST", "/order"): self._courier_order, ("DELETE", "/order"): self._delete_courier_order,
        }
        route = routes.get((request.method, request.path))
        return route(request) if route else Reply(404, {"status": "error", "message": "Not found"})

    def _create(self, request: Recorded) -> Reply:
        results = []
        for shipment in request.body.get("shipments") or []:
            errors: dict[str, str] = {}
            packages = shipment.get("info", {}).get("packages", {})
            if not (packages.get("parcel") or 0) + (packages.get("envelope") or 0):
                errors["info.parcels"] = "At least one envelope or parcel is required"
            address = shipment.get("recipient", {}).get("address", {})
            if address.get("zipCode") and not re.fullmatch(r"\d{6}", str(address["zipCode"])):
                errors["recipient.address.zipCode"] = "The recipient.address.zip code is invalid."
            if not address.get("locality"):
                errors["recipient.address.locality"] = "The recipient.address.locality field is required."
            if errors:
                results.append({"awbNumber": None, "success": False, "errors": errors})
                continue
            awb = str(next(self._numbers))
            self.awbs[awb] = {"shipment": shipment, "date": _bucharest(), "events": [], "return": None,
                              "deleted": False}
            results.append({"awbNumber": int(awb), "tariff": 30.53, "packages": 1, "letter": "B",
                            "routingCode": "0200", "office": "Bucuresti", "visualCode": "02-01-01", "errors": None})
        return Reply(200, {"response": results})

    def _live(self, awb: str) -> bool:
        return awb in self.awbs and not self.awbs[awb]["deleted"]

    def _label(self, request: Recorded) -> Reply:
        awbs = request.query.get("awbs[]") or []
        missing = [awb for awb in awbs if not self._live(awb)]
        if not awbs or missing:
            return Reply(404, {"status": "error", "message": f"AWB not found: {', '.join(missing)}"})
        if request.query.get("zpl") == ["1"]:
            return Reply(200, label_zpl(awbs), content_type="text/plain")
        size = {"A6": A6}.get((request.query.get("format") or ["A4"])[0], A4)
        return Reply(200, label_pdf(awbs, size, "FAN Courier"), content_type="application/pdf")

    def _track(self, request: Recorded) -> Reply:
        data = []
        for awb in request.query.get("awb[]") or []:
            if not self._live(awb):
                continue
            record = self.awbs[awb]
            if not record["events"]:
                data.append({"awbNumber": awb, "message": "The AWB has been registerd by sender"})
                continue
            data.append({"awbNumber": awb, "content": record["shipment"]["info"].get("content", ""),
                         "date": record["date"], "weight": record["shipment"]["info"].get("weight"),
                         "returnAwbNumber": record["return"], "redirectionAwbNumber": None,
                         "reimbursementAwbNumber": None, "confirmation": None, "events": record["events"]})
        return Reply(200, {"status": "success", "data": data})

    def _report(self, request: Recorded) -> Reply:
        day = (request.query.get("date") or [""])[0]
        page = int((request.query.get("page") or ["1"])[0])
        per_page = int((request.query.get("perPage") or ["100"])[0])
        rows = [{"info": {"awbNumber": awb, **{k: v for k, v in record["shipment"]["info"].items()},
                          "date": record["date"], "cost": 30.53},
                 "recipient": record["shipment"]["recipient"], "sender": record["shipment"].get("sender", {})}
                for awb, record in self.awbs.items() if record["date"].startswith(day) and not record["deleted"]]
        chunk = rows[(page - 1) * per_page: page * per_page]
        return Reply(200, {"status": "success", "data": chunk, "total": len(rows), "perPage": per_page,
                           "currentPage": page})

    def _courier_order(self, request: Recorded) -> Reply:
        """POST /order ("comanda curier"). The two-hour rule is from shusaura85/fancourier-api's example; the
        error body's shape is an assumption (FAN's 422s elsewhere carry `errors` by field)."""
        info = request.body.get("info") or {}
        errors: dict[str, list[str]] = {}
        try:
            day = dt.date.fromisoformat(info.get("pickupDate") or "")
            hours = info.get("pickupHours") or {}
            first, second = (dt.datetime.strptime(hours.get(k) or "", "%H:%M") for k in ("first", "second"))
            if (second - first) < dt.timedelta(hours=2):
                errors["info.pickupHours"] = ["There must be at least 2 hours between the pickup hours."]
        except ValueError:
            errors["info.pickupDate"] = ["The info.pickup date is not a valid date."]
            day = None
        packages = info.get("packages") or {}
        if not (packages.get("parcel") or 0) + (packages.get("envelope") or 0):
            errors["info.packages"] = ["At least one envelope or parcel is required"]
        if errors:
            return Reply(422, {"status": "error", "message": "The given data was invalid.", "errors": errors})
        order_id = str(next(self._orders))
        self.courier_orders[order_id] = {"info": info, "day": day, "cancelled": False, "collected": False}
        return Reply(200, {"status": "success", "data": {"id": int(order_id)}})

    def _delete_courier_order(self, request: Recorded) -> Reply:
        """DELETE /order?clientId=&id= (daika7ana/fancourier-api-v2 DeleteCourierOrder). The refusal once the
        courier has collected is shaped like FAN's other errors; its wording is an assumption."""
        order = self.courier_orders.get((request.query.get("id") or [""])[0])
        if order is None or order["cancelled"]:
            return Reply(404, {"status": "error", "message": "Order not found"})
        if order["collected"]:
            return Reply(400, {"status": "error", "message": "The order can no longer be deleted."})
        order["cancelled"] = True
        return Reply(200, {"status": "success", "message": "Order deleted"})

    def _pudo(self, request: Recorded) -> Reply:
        kind = (request.query.get("type") or ["fanbox"])[0]
        return Reply(200, {"status": "success", "data": self.pickup_points if kind == "fanbox" else []})

    def _delete(self, request: Recorded) -> Reply:
        awb = (request.query.get("awb") or [""])[0]
        if not self._live(awb):
            return Reply(404, {"status": "error", "message": "AWB not found"})
        if self.awbs[awb]["events"]:
            return Reply(400, {"status": "error", "message": "The AWB cannot be deleted after pickup"})
        self.awbs[awb]["deleted"] = True
        return Reply(200, {"status": "success", "message": "AWB deleted"})


# --- Sameday -------------------------------------------------------------------------------------------------

class FakeSameday(FakeCourier):
    """Sameday API (api.sameday.ro): authenticate, AWB (form-encoded), PDF labels, status, status-sync, lockers."""

    def __init__(self, username: str = "shop_ro", password: str = "secret"):
        super().__init__()
        self.username, self.password = username, password
        self.awbs: dict[str, dict] = {}
        self.history: list[dict] = []  # status-sync rows, any parcel
        self.issued_at: str | None = None  # when new AWBs get "AWB Emis"; None: now
        self.lockers = [
            {"lockerId": 1001, "name": "easybox Kaufland Aparatorii Patriei", "county": "Bucuresti",
             "city": "Sectorul 4", "address": "Sos. Oltenitei, Nr. 388", "postalCode": "041337", "lat": "44.384394",
             "lng": "26.140431", "phone": "", "email": "", "supportedPayment": 1, "clientVisible": 1,
             "availableBoxes": [{"size": "S", "number": 39}], "schedule": []},
            {"lockerId": 1002, "name": "easybox Berceni", "county": "Bucuresti", "city": "Sectorul 4",
             "address": "Str. Berceni Nr. 8", "postalCode": "045006", "lat": "44.389929", "lng": "26.124641",
             "phone": "", "email": "", "supportedPayment": 0, "clientVisible": 1,
             "availableBoxes": [{"size": "M", "number": 14}], "schedule": []},
        ]
        self._numbers = itertools.count(241067423)

    def add_status(self, awb: str, status_id: int, status: str, when: str, *, parcel: int = 1,
                   label: str = "", state: str = "", county: str = "Bucuresti", reason: str = "") -> None:
        """A parcel status change: shows in the AWB's history and in the status-sync feed."""
        row = {"statusId": status_id, "status": status, "statusLabel": label or status, "statusState": state,
               "statusDate": when, "county": county, "reason": reason, "transitLocation": ""}
        self.awbs[awb]["history"].append(row)
        self.history.append({**{k: v for k, v in row.items() if k != "county"},
                             "parcelAwbNumber": f"{awb}{parcel:03d}", "reasonId": "",
                             "parcelDetails": f"{self.url}/api/client/parcel/{awb}{parcel:03d}/status-history"})

    def handle(self, request: Recorded) -> Reply:
        if request.path == "/api/authenticate" and request.method == "POST":
            if request.headers.get("X-Auth-Username") != self.username or \
                    request.headers.get("X-Auth-Password") != self.password:
                return Reply(401, {"code": 401, "message": "Bad credentials"})
            token, expires = self.issue_token()
            return Reply(200, {"token": token, "expire_at": _bucharest(expires)})
        if not self.token_valid(request.headers.get("X-Auth-Token")):
            return Reply(401, {"code": 401, "message": "Invalid or expired token"})  # the SDK re-logs on 401/403
        path, method = request.path, request.method
        if path == "/api/awb" and method == "POST":
            return self._create(request.body)
        match = re.fullmatch(r"/api/awb/download/([^/]+)/(A4|A6)", path)
        if match and method == "GET":
            if match.group(1) not in self.awbs:
                return Reply(404, {"code": 404, "message": "Awb not found"})
            size = A6 if match.group(2) == "A6" else A4
            return Reply(200, label_pdf([match.group(1)], size, "Sameday"), content_type="application/pdf")
        match = re.fullmatch(r"/api/client/awb/([^/]+)/status", path)
        if match and method == "GET":
            return self._status(match.group(1))
        if path == "/api/client/status-sync" and method == "GET":
            return self._sync(request.query)
        if path == "/api/client/lockers" and method == "GET":
            return self._page(self.lockers, request.query)
        match = re.fullmatch(r"/api/awb/([^/]+)", path)
        if match and method == "DELETE":
            awb = self.awbs.get(match.group(1))
            if awb is None:
                return Reply(404, {"code": 404, "message": "Awb not found"})
            if awb["history"][1:]:
                return Reply(400, {"code": 400, "message": "Awb cannot be deleted: it has already been picked up."})
            awb["canceled"] = True
            return Reply(200, None)
        return Reply(404, {"code": 404, "message": "Not found"})

    def _create(self, form: dict) -> Reply:
        errors: dict[str, Any] = {}
        postcode = form.get("awbRecipient[postalCode]", "")
        if postcode and not re.fullmatch(r"\d{6}", postcode):
            errors["awbRecipient"] = {"children": {"postalCode": {"errors": ["Invalid postal code."]}}}
        if not form.get("pickupPoint"):
            errors["pickupPoint"] = {"errors": ["This value should not be null."]}
        locker = form.get("lockerLastMile")
        if locker and int(locker) not in {item["lockerId"] for item in self.lockers}:
            errors["lockerLastMile"] = {"errors": ["The given locker is invalid!"]}
        if errors:
            return Reply(400, {"code": 400, "message": "Validation Failed", "errors": {"children": errors}})
        awb = f"1SDY{next(self._numbers)}"
        count = int(form.get("packageNumber") or 1)
        self.awbs[awb] = {"form": form, "history": [], "canceled": False}
        issued = self.issued_at or dt.datetime.now(BUCHAREST).strftime("%Y-%m-%dT%H:%M:%S%z")
        self.add_status(awb, 1, "AWB Emis", issued,
                        label="Document de transport emis", state="Comanda curier primita")
        return Reply(201, {"awbNumber": awb, "awbCost": 12.34,
                           "parcels": [{"position": i, "awbNumber": f"{awb}{i:03d}"} for i in range(1, count + 1)],
                           "pdfLink": f"{self.url}/api/awb/download/{awb}/A6"})

    def _status(self, awb: str) -> Reply:
        record = self.awbs.get(awb)
        if record is None:
            return Reply(404, {"code": 404, "message": "Awb not found"})
        history = record["history"]
        delivered = next((row for row in history if row["statusId"] == 9), None)
        returning = any("retur" in row["status"].lower() for row in history)
        last = history[-1]
        return Reply(200, {
            "expeditionSummary": {"deliveredAt": delivered["statusDate"] if delivered else "",
                                  "lastDeliveryAttempt": "", "delivered": delivered is not None,
                                  "canceled": record["canceled"], "deliveryAttempts": 1 if delivered else 0,
                                  "servicePayment": 0.0, "awbWeight": 1.0, "cashOnDelivery": 0.0,
                                  "awbNumber": awb, "redirectionsAttempts": 0},
            "expeditionStatus": last,
            "parcelsStatus": [{**last, "parcelAwbNumber": f"{awb}001", "inReturn": returning,
                               "parcelDetails": f"{self.url}/api/client/parcel/{awb}001/status-history"}],
            "expeditionHistory": list(reversed(history)),  # newest first, as the API lists them
        })

    def _page(self, items: list, query: dict) -> Reply:
        page = int((query.get("page") or ["1"])[0])
        per_page = int((query.get("countPerPage") or ["50"])[0])
        pages = max(1, -(-len(items) // per_page))
        return Reply(200, {"data": items[(page - 1) * per_page: page * per_page], "currentPage": page,
                           "perPage": per_page, "pages": pages, "total": len(items)})

    def _sync(self, query: dict) -> Reply:
        start, end = int(query["startTimestamp"][0]), int(query["endTimestamp"][0])
        if end - start > 7200:
            return Reply(400, {"code": 400, "message": "The difference between starting and ending timestamps "
                                                       "cannot be bigger than 7200 (2 hours)."})
        rows = [row for row in self.history
                if start <= dt.datetime.fromisoformat(row["statusDate"]).timestamp() < end]
        return self._page(rows, query)


# --- InPost ShipX --------------------------------------------------------------------------------------------

def _shipx_error(status: int, error: str, message: str, details: Any = None) -> Reply:
    return Reply(status, {"status": status, "error": error, "message": message, "details": details or {}})


class FakeInPost(FakeCourier):
    """InPost ShipX (api-shipx-pl.easypack24.net): organization shipments, labels, tracking, points.

    Creation is asynchronous as in ShipX: a new shipment is `created` without a tracking number and becomes
    `confirmed` (with its number) after `confirm_after` reads.
    """

    def __init__(self, token: str = "shipx-token", organization_id: int = 1234, confirm_after: int = 1):
        super().__init__()
        self.api_token, self.organization_id, self.confirm_after = token, organization_id, confirm_after
        self.shipments: dict[int, dict] = {}
        self.tracking: dict[str, list[dict]] = {}
        self.points = [
            {"name": "KRA010", "type": ["parcel_locker"], "status": "Operating",
             "location": {"latitude": 50.06143, "longitude": 19.93658}, "location_description": "Przy sklepie",
             "address": {"line1": "ul. Długa 5", "line2": "31-147 Kraków"},
             "address_details": {"city": "Kraków", "province": "małopolskie", "post_code": "31-147",
                                 "street": "Długa", "building_number": "5", "flat_number": None},
             "payment_available": True, "location_247": True},
            {"name": "WAW22A", "type": ["parcel_locker"], "status": "Operating",
             "location": {"latitude": 52.2297, "longitude": 21.0122}, "location_description": "",
             "address": {"line1": "ul. Marszałkowska 1", "line2": "00-001 Warszawa"},
             "address_details": {"city": "Warszawa", "province": "mazowieckie", "post_code": "00-001",
                                 "street": "Marszałkowska", "building_number": "1", "flat_number": None},
             "payment_available": False, "location_247": True},
        ]
        self._ids = itertools.count(49807)
        self._numbers = itertools.count(520000011395200025754311)
        self.dispatch_orders: dict[int, dict] = {}
        self._dispatch_ids = itertools.count(2761)

    def add_tracking(self, number: str, statuses: list[tuple[str, str]]) -> None:
        """Tracking details for a number: (status, ISO datetime), oldest first."""
        self.tracking[number] = [{"status": s, "origin_status": s.upper()[:3], "agency": None, "datetime": when}
                                 for s, when in statuses]

    def handle(self, request: Recorded) -> Reply:
        path, method = request.path, request.method
        if path.startswith("/v1/tracking/") and method == "GET":  # public: no token needed
            number = path.rsplit("/", 1)[1]
            details = self.tracking.get(number)
            if details is None:
                return _shipx_error(404, "resource_not_found", "Resource not found")
            return Reply(200, {"tracking_number": number, "type": "inpost_locker_standard",
                               "service": "inpost_locker_standard", "status": details[-1]["status"],
                               "custom_attributes": {"size": "A", "target_machine_id": "KRA010"},
                               "tracking_details": list(reversed(details)), "expected_flow": [],
                               "created_at": details[0]["datetime"], "updated_at": details[-1]["datetime"]})
        if path == "/v1/points" and method == "GET":
            return self._collection(self.points, request.query)
        if _bearer(request) != self.api_token:
            return _shipx_error(401, "unauthorized", "Access denied: token is missing or invalid.")
        org = f"/v1/organizations/{self.organization_id}"
        if path == f"{org}/shipments" and method == "POST":
            return self._create(request.body)
        if path == f"{org}/shipments" and method == "GET":
            return self._list(request.query)
        if path == f"{org}/dispatch_orders" and method == "POST":
            return self._dispatch_order(request.body)
        if path == f"{org}/dispatch_orders/printouts" and method == "GET":
            return self._dispatch_printout(request.query)
        match = re.fullmatch(r"/v1/dispatch_orders/(\d+)", path)
        if match and method == "DELETE":
            return self._delete_dispatch_order(int(match.group(1)))
        if path == f"{org}/shipments/labels" and method == "GET":
            return self._labels(request.query.get("shipment_ids[]") or [], request.query)
        match = re.fullmatch(r"/v1/shipments/(\d+)(/label)?", path)
        if match and int(match.group(1)) in self.shipments:
            shipment = self.shipments[int(match.group(1))]
            if match.group(2) and method == "GET":
                return self._labels([str(shipment["id"])], request.query)
            if method == "GET":
                return Reply(200, self._read(shipment["id"]))
            if method == "DELETE":
                if shipment["status"] not in ("created", "offers_prepared", "offer_selected"):
                    return _shipx_error(400, "invalid_action", "Shipment cannot be cancelled in its status.")
                shipment["status"] = "canceled"
                return Reply(204, None)
        return _shipx_error(404, "resource_not_found", "Resource not found")

    def _create(self, body: dict) -> Reply:
        details: dict[str, Any] = {}
        receiver = body.get("receiver") or {}
        if not re.fullmatch(r"\d{9}", str(receiver.get("phone") or "")):
            details.setdefault("receiver", [{}])[0]["phone"] = ["invalid"]
        post_code = (receiver.get("address") or {}).get("post_code")
        if post_code is not None and not re.fullmatch(r"\d{2}-\d{3}", post_code):
            details.setdefault("receiver", [{}])[0]["address"] = [{"post_code": ["invalid"]}]
        target = (body.get("custom_attributes") or {}).get("target_point")
        if body.get("service", "").startswith("inpost_locker") and target not in {p["name"] for p in self.points}:
            details["custom_attributes"] = [{"target_point": ["does_not_exist"]}]
        if details:
            return _shipx_error(422, "validation_failed",
                                "There are some validation errors. Check details object for more info.", details)
        shipment_id = next(self._ids)
        self.shipments[shipment_id] = {
            "href": f"{self.url}/v1/shipments/{shipment_id}", "id": shipment_id, "status": "created",
            "tracking_number": None, "service": body.get("service"), "reference": body.get("reference"),
            "receiver": receiver, "parcels": body.get("parcels"), "custom_attributes": body.get("custom_attributes"),
            "cod": body.get("cod"), "insurance": body.get("insurance"),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "selected_offer": {"rate": 15.99, "currency": "PLN"}, "_reads": 0,
        }
        return Reply(201, self._public(self.shipments[shipment_id]))

    def _dispatch_order(self, body: dict) -> Reply:
        """A courier to collect confirmed shipments (michalbiarda/shipx-php-sdk DispatchOrderForm/DispatchOrder)."""
        details: dict[str, Any] = {}
        wanted = body.get("shipments") or []
        unknown = [i for i in wanted if self.shipments.get(int(i) if str(i).isdigit() else -1) is None]
        if not wanted or unknown:
            details["shipments"] = ["invalid"]
        address = body.get("address") or {}
        if not re.fullmatch(r"\d{2}-\d{3}", str(address.get("post_code") or "")):
            details["address"] = [{"post_code": ["invalid"]}]
        if details:
            return _shipx_error(422, "validation_failed",
                                "There are some validation errors. Check details object for more info.", details)
        order_id = next(self._dispatch_ids)
        shipments = [self.shipments[int(i)] for i in wanted]
        self.dispatch_orders[order_id] = {
            "href": f"{self.url}/v1/dispatch_orders/{order_id}", "id": order_id, "status": "new",  # status: assumption
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "address": address, "comments": [{"comment": body.get("comment")}] if body.get("comment") else [],
            "shipments": [{"id": s["id"], "tracking_number": s["tracking_number"]} for s in shipments],
            "_request": body,
        }
        return Reply(201, self._public(self.dispatch_orders[order_id]))

    def _delete_dispatch_order(self, order_id: int) -> Reply:
        """DELETE /v1/dispatch_orders/{id} (michalbiarda/shipx-php-sdk DispatchOrder/Delete): 204; a courier
        already sent is refused like ShipX's other invalid actions (the wording is an assumption)."""
        order = self.dispatch_orders.get(order_id)
        if order is None or order["status"] == "canceled":
            return _shipx_error(404, "resource_not_found", "Resource not found")
        if order["status"] != "new":
            return _shipx_error(400, "invalid_action", "Dispatch order cannot be cancelled in its status.")
        order["status"] = "canceled"
        return Reply(204, None)

    def _dispatch_printout(self, query: dict) -> Reply:
        """GET /v1/organizations/{org}/dispatch_orders/printouts?dispatch_order_id= (DispatchOrder/GetPrintout):
        the printout the courier signs, one A4 page listing the order's shipments."""
        wanted = (query.get("dispatch_order_id") or [""])[0]
        order = self.dispatch_orders.get(int(wanted)) if wanted.isdigit() else None
        if order is None:
            return _shipx_error(404, "resource_not_found", "Resource not found")
        lines = [f"Dispatch order {order['id']}"] + [str(s["tracking_number"] or s["id"]) for s in order["shipments"]]
        return Reply(200, label_pdf([" / ".join(lines)], A4, "InPost"), content_type="application/pdf")

    def _read(self, shipment_id: int) -> dict:
        shipment = self.shipments[shipment_id]
        shipment["_reads"] += 1
        if shipment["status"] == "created" and shipment["_reads"] >= self.confirm_after:
            shipment["status"], shipment["tracking_number"] = "confirmed", str(next(self._numbers))
        return self._public(shipment)

    @staticmethod
    def _public(shipment: dict) -> dict:
        return {k: v for k, v in shipment.items() if not k.startswith("_")}

    def _collection(self, items: list, query: dict) -> Reply:
        page = int((query.get("page") or ["1"])[0])
        per_page = int((query.get("per_page") or ["25"])[0])
        return Reply(200, {"href": "", "count": len(items), "page": page, "per_page": per_page,
                           "items": items[(page - 1) * per_page: page * per_page]})

    def _list(self, query: dict) -> Reply:
        items = [self._public(s) for s in self.shipments.values()]
        if query.get("created_at_gteq"):
            since = dt.datetime.fromisoformat(query["created_at_gteq"][0].replace("Z", "+00:00"))
            items = [s for s in items if dt.datetime.fromisoformat(s["created_at"]) >= since]
        if query.get("tracking_number"):
            wanted = set(query["tracking_number"][0].split(","))
            items = [s for s in items if s["tracking_number"] in wanted]
        return self._collection(items, query)

    def _labels(self, ids: list[str], query: dict) -> Reply:
        shipments = [self.shipments.get(int(i)) for i in ids if i.isdigit()]
        if not ids or None in shipments:
            return _shipx_error(404, "resource_not_found", "Resource not found")
        unready = [s["id"] for s in shipments if s["status"] != "confirmed"]
        if unready:
            return _shipx_error(400, "invalid_action", f"Shipments are not confirmed: {unready}")
        numbers = [s["tracking_number"] for s in shipments]
        if (query.get("format") or ["pdf"])[0].lower() == "zpl":
            return Reply(200, label_zpl(numbers), content_type="text/plain")
        size = A6 if (query.get("type") or ["normal"])[0] == "A6" else A4
        return Reply(200, label_pdf(numbers, size, "InPost"), content_type="application/pdf")


# --- Cargus -------------------------------------------------------------------------------------------------

CARGUS_LABEL = (100 * MM, 140 * MM)  # format=1: "label 10x14"
APIM_KEY_REFUSED = {"statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to "
                                                  "provide a valid key for an active subscription."}


class FakeCargus(FakeCourier):
    """Cargus UrgentOnlineAPI V3 behind Azure APIM: subscription key on every call, LoginUser token, AWBs."""

    token_lifetime = 24 * 3600

    def __init__(self, subscription_key: str = "apim-primary-key", username: str = "shop.ro",
                 password: str = "secret"):
        super().__init__()
        self.subscription_key, self.username, self.password = subscription_key, username, password
        self.awbs: dict[str, dict] = {}
        self.points = [{"Id": 114142, "Name": "CARGUS SHIP & GO MAGURELE", "City": "Magurele", "County": "Ilfov",
                        "PostalCode": "077125", "Latitude": 44.367229, "Longitude": 26.041645, "PointType": 5,
                        "ServiceCOD": False, "PaymentType": 1, "StreetName": "Atomistilor", "StreetNo": "99-115"}]
        self._numbers = itertools.count(804419419)
        self.pickup_location_id = 201165677
        self.orders: dict[int, dict] = {}
        self._orders = itertools.count(90031)

    def add_events(self, barcode: str, events: list[tuple[int, str, str, str]]) -> None:
        """(EventId, Description, LocalityName, "YYYY-mm-ddTHH:MM:SS" Bucharest time)."""
        self.awbs[barcode]["events"] += [{"Date": d, "EventId": i, "Description": t, "LocalityName": loc}
                                         for i, t, loc, d in events]

    def handle(self, request: Recorded) -> Reply:
        if request.headers.get("Ocp-Apim-Subscription-Key") != self.subscription_key:
            return Reply(401, APIM_KEY_REFUSED)
        if request.path == "/api/LoginUser" and request.method == "POST":
            body = request.body if isinstance(request.body, dict) else {}
            if body.get("UserName") != self.username or body.get("Password") != self.password:
                return Reply(401, {"message": "Invalid username or password"})  # assumption: not documented
            return Reply(200, self.issue_token()[0])
        if not self.token_valid(_bearer(request)):
            return Reply(401, {"message": "Authorization has been denied for this request."})
        route = (request.method, request.path.removeprefix("/api"))
        query = request.query
        if route == ("POST", "/Awbs"):
            return self._create(request.body)
        if route == ("GET", "/Awbs/GetByDate"):
            page = int(query.get("pageNumber", ["1"])[0])
            per_page = int(query.get("itemsPerPage", ["100"])[0])
            rows = [{"BarCode": int(code), "CustomString": awb["body"].get("CustomString"), "Status": "Tiparit"}
                    for code, awb in self.awbs.items() if not awb["deleted"]]
            return Reply(200, rows[(page - 1) * per_page: page * per_page])
        if route == ("GET", "/AwbDocuments"):
            codes = [str(c) for c in json.loads(query["barCodes"][0])]
            if any(c not in self.awbs for c in codes):
                return Reply(404, {"message": "AWB not found"})
            pdf = label_pdf(codes, CARGUS_LABEL if query.get("format") == ["1"] else A4, "Cargus")
            return Reply(200, base64.b64encode(pdf).decode())
        if route == ("GET", "/AwbTrace"):
            codes = [str(c) for c in json.loads(query["barCode"][0])]
            return Reply(200, [{"Code": c, "Type": "AWB", "MeasuredWeight": 1, "VolumetricWeight": 0,
                                "ConfirmationName": "", "Observation": "", "Event": self.awbs[c]["events"]}
                               for c in codes if c in self.awbs])
        if route == ("GET", "/AwbTrace/GetDeltaEvents"):
            return Reply(200, [{"Barcode": c, "StatusExpression": a["events"][-1]["Description"],
                                "Events": a["events"]} for c, a in self.awbs.items() if a["events"]])
        if route == ("GET", "/PudoPoints"):
            return Reply(200, self.points)
        if route == ("PUT", "/Orders"):
            return self._order(query)
        if route == ("GET", "/OrderDocuments"):
            order = self.orders.get(int(query["orderId"][0])) if query.get("orderId", [""])[0].isdigit() else None
            if order is None or query.get("docType") != ["0"]:
                return Reply(404, {"message": "Comanda nu exista"})  # assumption: not documented
            pdf = label_pdf([f"Borderou {query['orderId'][0]}: {' '.join(order['awbs'])}"], A4, "Cargus")
            return Reply(200, base64.b64encode(pdf).decode())
        if route == ("DELETE", "/Awbs"):
            awb = self.awbs.get(query.get("barCode", [""])[0])
            if awb is None or awb["events"]:
                return Reply(200, False)
            awb["deleted"] = True
            return Reply(200, True)
        return Reply(404, {"message": "No HTTP resource was found that matches the request URI."})

    def _order(self, query: dict) -> Reply:
        """PUT /Orders?locationId=&action=1&PickupStartDate=&PickupEndDate= (doc §10.1): close the location's open
        order. Dates as the official modules send them ("Y-m-d H:i:s"); the refusal body is an assumption."""
        if query.get("locationId") != [str(self.pickup_location_id)] or query.get("action") != ["1"]:
            return Reply(400, {"message": "Punctul de ridicare nu exista"})
        try:
            start, end = (dt.datetime.strptime(query[k][0], "%Y-%m-%d %H:%M:%S")
                          for k in ("PickupStartDate", "PickupEndDate"))
        except (KeyError, ValueError):
            return Reply(400, {"message": "Intervalul de ridicare nu este valid"})
        if end <= start:
            return Reply(400, {"message": "Intervalul de ridicare nu este valid"})
        order_id = next(self._orders)
        self.orders[order_id] = {"start": start, "end": end,
                                 "awbs": [c for c, a in self.awbs.items() if not a["deleted"] and not a.get("order")]}
        for code in self.orders[order_id]["awbs"]:
            self.awbs[code]["order"] = order_id
        return Reply(200, order_id)

    def _create(self, body: dict) -> Reply:
        recipient = body.get("Recipient") or {}
        errors = []
        if recipient.get("CodPostal") and not re.fullmatch(r"\d{6}", str(recipient["CodPostal"])):
            errors.append("Codul postal nu este valid")
        if not body.get("DeliveryPudoPoint") and not recipient.get("LocalityName"):
            errors.append("Localitatea destinatarului este obligatorie")
        if errors:
            return Reply(400, errors)
        barcode = str(next(self._numbers))
        self.awbs[barcode] = {"body": body, "events": [], "deleted": False}
        return Reply(200, int(barcode))


# --- DPD Romania (Speedy platform) ----------------------------------------------------------------------------

class FakeDpdRomania(FakeCourier):
    """api.dpd.ro/v1: user name and password in every JSON body; refusals are HTTP 200 with an `error` object."""

    def __init__(self, username: str = "200123456", password: str = "secret"):
        super().__init__()
        self.username, self.password = username, password
        self.shipments: dict[str, dict] = {}
        self.operations: dict[str, list[dict]] = {}
        self.offices = [{"id": 2001, "name": "DPD Easybox Iasi Palas", "type": "APT", "cardPaymentAllowed": True,
                         "address": {"siteName": "Iasi", "postCode": "700051", "x": 27.5866, "y": 47.1562,
                                     "fullAddressString": "Str. Palas 7A"}}]
        self._ids = itertools.count(80012345678)
        self.pickups: dict[int, dict] = {}
        self._pickup_ids = itertools.count(7001)

    def _pickup(self, body: dict) -> Reply:
        """POST /v1/pickup (PickupRequest as DPD Romania's Magento module and the Speedy SDKs send it): answers
        {"orders": [{id, shipmentIds, pickupPeriodFrom, pickupPeriodTo}]}. Refusal wordings are assumptions."""
        wanted = [str(i) for i in body.get("explicitShipmentIdList") or []]
        if body.get("pickupScope") != "EXPLICIT_SHIPMENT_ID_LIST" or not wanted:
            return self._error("Explicit shipment id list is required", "explicitShipmentIdList")
        unknown = [i for i in wanted if i not in self.shipments or self.shipments[i]["cancelled"]]
        if unknown:
            return self._error(f"Shipment not found: {', '.join(unknown)}", "explicitShipmentIdList")
        try:
            start = dt.datetime.fromisoformat(body.get("pickupDateTime") or "")
            end = dt.datetime.strptime(body.get("visitEndTime") or "", "%H:%M").time()
        except ValueError:
            return self._error("Invalid pickup date or time", "pickupDateTime")
        if start.tzinfo is None or start < dt.datetime.now(dt.timezone.utc):
            return self._error("Pickup date time must be in the future", "pickupDateTime")
        if end <= start.time():
            return self._error("Visit end time must be after the pickup time", "visitEndTime")
        order_id = next(self._pickup_ids)
        self.pickups[order_id] = {"request": body, "shipmentIds": wanted}
        return Reply(200, {"orders": [{"id": order_id, "shipmentIds": wanted,
                                       "pickupPeriodFrom": start.isoformat(timespec="seconds"),
                                       "pickupPeriodTo": dt.datetime.combine(start.date(), end, start.tzinfo)
                                       .isoformat(timespec="seconds")}]})

    def add_operations(self, parcel_id: str, operations: list[tuple[int, str, str]]) -> None:
        """(operationCode, description, ISO dateTime with offset), oldest first."""
        self.operations.setdefault(parcel_id, []).extend(
            {"operationCode": code, "description": text, "dateTime": when, "comment": "",
             "place": {"name": "Iasi"}} for code, text, when in operations)

    @staticmethod
    def _error(message: str, context: str = "", code: int = 0) -> Reply:
        return Reply(200, {"error": {"context": context, "message": message, "id": secrets.token_hex(4),
                                     "code": code}})

    def handle(self, request: Recorded) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("userName") != self.username or body.get("password") != self.password:
            return self._error("Invalid username or password", code=1)
        path = request.path.removeprefix("/v1")
        if path == "/shipment":
            recipient = body.get("recipient") or {}
            post_code = (recipient.get("address") or {}).get("postCode")
            if post_code is not None and not re.fullmatch(r"\d{6}", post_code):
                return self._error("Invalid post code", "recipient.address.postCode")
            shipment_id = str(next(self._ids))
            parcels = [{"seqNo": p["seqNo"], "id": shipment_id if p["seqNo"] == 1 else f"{shipment_id}{p['seqNo']}"}
                       for p in body["content"]["parcels"]]
            self.shipments[shipment_id] = {"body": body, "parcels": parcels, "cancelled": False}
            return Reply(200, {"id": shipment_id, "parcels": parcels,
                               "price": {"amount": 15.0, "vat": 2.85, "total": 17.85, "currency": "RON"},
                               "pickupDate": "2026-11-20", "deliveryDeadline": "2026-11-21T19:00:00+02:00"})
        if path == "/print":
            ids = [p["parcel"]["id"] for p in body.get("parcels") or []]
            known = {parcel["id"] for shipment in self.shipments.values() for parcel in shipment["parcels"]}
            if any(i not in known for i in ids):
                return self._error("Parcel not found", "parcels")
            if body.get("format") == "zpl":
                return Reply(200, label_zpl(ids), content_type="text/plain")
            if body.get("paperSize") == "A4_4xA6":  # the platform lays four A6 labels on a sheet itself
                return Reply(200, label_pdf([" ".join(ids[i:i + 4]) for i in range(0, len(ids), 4)], A4, "DPD"),
                             content_type="application/pdf")
            return Reply(200, label_pdf(ids, A6 if body.get("paperSize") == "A6" else A4, "DPD"),
                         content_type="application/pdf")
        if path == "/track":
            parcels = []
            for wanted in body.get("parcels") or []:
                if "ref" in wanted:
                    match = next((sid for sid, s in self.shipments.items() if s["body"].get("ref1") == wanted["ref"]),
                                 None)
                    parcels.append({"parcelId": match, "operations": []} if match else
                                   {"error": {"message": "Parcel not found", "code": 2}})
                    continue
                parcels.append({"parcelId": wanted["id"], "operations": self.operations.get(wanted["id"], [])})
            return Reply(200, {"parcels": parcels})
        if path == "/shipment/cancel":
            shipment = self.shipments.get(str(body.get("shipmentId")))
            if shipment is None or self.operations.get(str(body.get("shipmentId"))):
                return self._error("Shipment cannot be cancelled", "shipmentId")
            shipment["cancelled"] = True
            return Reply(200, {})
        if path == "/location/office":
            return Reply(200, {"offices": self.offices})
        if path == "/pickup":
            return self._pickup(body)
        return Reply(404, {"error": {"message": "Not found"}})


# --- DPD Polska (SOAP) ---------------------------------------------------------------------------------------

def _soap_envelope(namespace: str, operation: str, inner: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<S:Body><ns2:{operation}Response xmlns:ns2="{namespace}"><return>{inner}</return>'
            f'</ns2:{operation}Response></S:Body></S:Envelope>').encode()


def _soap_fault(message: str) -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<S:Body><S:Fault><faultcode>S:Server</faultcode><faultstring>{message}</faultstring></S:Fault>'
            f'</S:Body></S:Envelope>').encode()
    return Reply(500, body, content_type="text/xml; charset=utf-8")


class FakeDpdPolska(FakeCourier):
    """DPDServices (/packages) and DPDInfoServices (/events) on one loopback port, speaking SOAP 1.1.

    Element names follow the WSDL types (openUMLFeV3 → packages → parcels, authDataV1); answers use the
    capitalised names DPD returns (Status, Packages/Package/Parcels/Parcel/Waybill) and events as eventsList.
    """

    def __init__(self, login: str = "test", password: str = "thetu4Ee", master_fid: str = "1495"):
        super().__init__()
        self.login, self.password, self.master_fid = login, password, master_fid
        self.packages: list[dict] = []
        self.events: dict[str, list[tuple[str, str, str]]] = {}
        self._waybills = itertools.count(92494467)
        self.pickup_calls: dict[str, dict] = {}
        self._pickup_numbers = itertools.count(1)
        self.protocols: list[list[str]] = []
        self.protocol_ids: list[str] = []  # the next protocols' documentId, when a test wants a particular one

    def _pickup_call(self, call) -> Reply:
        """packagesPickupCallV4(dpdPickupParamsV3, authDataV1) → packagesPickupCallResponseV3 {checkSum,
        orderNumber, statusInfo {status, errorDetails}}; statuses and error codes as Qbitz/DpdBundle lists them."""
        params = call.find("dpdPickupParamsV3")
        operation = params.findtext("operationType") if params is not None else None

        def answer(status: str, number: str = "", checksum: str = "", errors: tuple = ()) -> Reply:
            details = "".join(f"<errorDetails><code>{code}</code><description>{text}</description>"
                              f"<fields>{field}</fields></errorDetails>" for code, text, field in errors)
            inner = (f"<checkSum>{checksum}</checkSum><orderNumber>{number}</orderNumber>"
                     f"<statusInfo>{details}<status>{status}</status></statusInfo>")
            return Reply(200, _soap_envelope("http://dpdservices.dpd.com.pl/", "packagesPickupCallV4", inner),
                         content_type="text/xml; charset=utf-8")

        if operation == "INSERT":
            try:
                day = dt.date.fromisoformat(params.findtext("pickupDate") or "")
                start, end = (dt.datetime.strptime(params.findtext(k) or "", "%H:%M")
                              for k in ("pickupTimeFrom", "pickupTimeTo"))
            except ValueError:
                return answer("VALIDATION_ERROR", errors=(("BOK_WS_VALUE_NOT_A_DATE", "Niepoprawna data odbioru",
                                                           "pickupDate"),))
            if day < dt.date.today():
                return answer("VALIDATION_ERROR", errors=(("BOK_WS_DATE_BEFORE_NOW", "Data odbioru jest z przeszłości",
                                                           "pickupDate"),))
            if end - start < dt.timedelta(hours=2):  # the two-hour minimum is an assumption; the code is DPD's
                return answer("VALIDATION_ERROR", errors=(("BOK_WS_INCORRECT_PICKUP_TIME",
                                                           "Przedział godzin odbioru jest za krótki", "pickupTimeTo"),))
            number = f"{day:%Y%m%d}{next(self._pickup_numbers):04d}"
            checksum = str(secrets.randbelow(10 ** 9))
            self.pickup_calls[number] = {"checkSum": checksum, "params": params, "cancelled": False,
                                         "collected": False}
            return answer("OK", number, checksum)
        if operation == "CANCEL":
            order = self.pickup_calls.get(params.findtext("orderNumber") or "")
            if order is None or order["checkSum"] != params.findtext("checkSum"):
                return answer("VALIDATION_ERROR", errors=(("BOK_WS_INCORRECT_VALUE", "Niepoprawny numer zlecenia",
                                                           "orderNumber"),))
            if order["collected"] or order["cancelled"]:
                return answer("ORDER_CANCEL_DENIED", params.findtext("orderNumber"), order["checkSum"])
            order["cancelled"] = True
            return answer("OK", params.findtext("orderNumber"), order["checkSum"])
        return answer("INCORRECT_STATUS")

    def _protocol(self, call) -> Reply:
        """generateProtocolV2 → documentGenerationResponseV1 {documentData (base64 PDF), documentId, session}."""
        waybills = [w.text for w in call.iter("waybill")]
        if not waybills or any(not any(w in p["waybills"] for p in self.packages) for w in waybills):
            inner = "<documentData></documentData><session><statusInfo><status>NOT_FOUND</status></statusInfo></session>"
        else:
            self.protocols.append(waybills)
            data = label_pdf([f"Protokol przekazania: {' '.join(waybills)}"], A4, "DPD")
            inner = (f"<documentData>{base64.b64encode(data).decode()}</documentData>"
                     f"<documentId>{escape(self.protocol_ids.pop(0) if self.protocol_ids else f'PROT{len(self.protocols):06d}')}"
                     "</documentId>"
                     "<session><statusInfo><status>OK</status></statusInfo></session>")
        return Reply(200, _soap_envelope("http://dpdservices.dpd.com.pl/", "generateProtocolV2", inner),
                     content_type="text/xml; charset=utf-8")

    def add_events(self, waybill: str, events: list[tuple[str, str, str]]) -> None:
        """(businessCode, description, "YYYY-mm-dd HH:MM:SS" Warsaw time), oldest first."""
        self.events.setdefault(waybill, []).extend(events)

    @staticmethod
    def _call_of(body: bytes):
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.fromstring(body)
        call = next(iter(next(el for el in root if el.tag.endswith("Body"))))
        return call.tag.rsplit("}", 1)[-1], call

    def handle(self, request: Recorded) -> Reply:
        operation, call = self._call_of(request.body)
        auth = call.find("authDataV1")
        fid_field = "channel" if request.path == "/events" else "masterFid"
        if auth is None or auth.findtext("login") != self.login or auth.findtext("password") != self.password \
                or auth.findtext(fid_field) != self.master_fid:
            return _soap_fault("DeniedAccessWSException: INCORRECT_LOGIN_OR_PASSWORD")
        if request.path == "/packages" and operation == "generatePackagesNumbersV4":
            return self._generate(call)
        if request.path == "/packages" and operation == "packagesPickupCallV4":
            return self._pickup_call(call)
        if request.path == "/packages" and operation == "generateProtocolV2":
            return self._protocol(call)
        if request.path == "/packages" and operation == "generateSpedLabelsV4":
            waybills = [w.text for w in call.iter("waybill")]
            unknown = [w for w in waybills if not any(w in p["waybills"] for p in self.packages)]
            if unknown:
                inner = "<documentData></documentData><session><statusInfo><status>NOT_FOUND</status></statusInfo></session>"
            else:
                if call.findtext("outputDocFormatV1") == "ZPL":
                    data = label_zpl(waybills)
                else:
                    data = label_pdf(waybills, (100 * MM, 150 * MM), "DPD")
                inner = (f"<documentData>{base64.b64encode(data).decode()}</documentData>"
                         "<session><statusInfo><status>OK</status></statusInfo></session>")
            return Reply(200, _soap_envelope("http://dpdservices.dpd.com.pl/", operation, inner),
                         content_type="text/xml; charset=utf-8")
        if request.path == "/events" and operation == "getEventsForWaybillV1":
            waybill = call.findtext("waybill")
            inner = "<confirmId>0</confirmId>" + "".join(
                f"<eventsList><businessCode>{code}</businessCode><country>PL</country><depot>1357</depot>"
                f"<depotName>KATOWICE 2</depotName><description>{text}</description><eventTime>{when}</eventTime>"
                f"<waybill>{waybill}</waybill></eventsList>" for code, text, when in self.events.get(waybill, []))
            return Reply(200, _soap_envelope("http://events.dpdinfoservices.dpd.com.pl/", operation, inner),
                         content_type="text/xml; charset=utf-8")
        return _soap_fault(f"Unknown operation {operation}")

    def _generate(self, call) -> Reply:
        packages_xml = []
        status = "OK"
        for package in call.iter("packages"):
            receiver = package.find("receiver")
            code = receiver.findtext("postalCode") or ""
            if not re.fullmatch(r"\d{5}", code):
                status = "INCORRECT_DATA"
                packages_xml.append(
                    "<Package><Status>INCORRECT_DATA</Status><ValidationDetails><ValidationInfo><ErrorId>1</ErrorId>"
                    "<ErrorCode>INCORRECT_RECEIVER_POSTAL_CODE</ErrorCode>"
                    f"<Info>Niepoprawny kod pocztowy odbiorcy: {code}</Info></ValidationInfo></ValidationDetails>"
                    "</Package>")
                continue
            waybills = [f"00000{next(self._waybills)}Q" for _ in package.iter("parcels")]
            self.packages.append({"reference": package.findtext("reference"), "waybills": waybills,
                                  "xml": package})
            parcels = "".join(f"<Parcel><Status>OK</Status><ParcelId>{100 + n}</ParcelId><Waybill>{w}</Waybill></Parcel>"
                              for n, w in enumerate(waybills))
            packages_xml.append(f"<Package><Status>OK</Status><PackageId>{len(self.packages)}</PackageId>"
                                f"<Parcels>{parcels}</Parcels></Package>")
        inner = f"<Status>{status}</Status><SessionId>1</SessionId><Packages>{''.join(packages_xml)}</Packages>"
        return Reply(200, _soap_envelope("http://dpdservices.dpd.com.pl/", "generatePackagesNumbersV4", inner),
                     content_type="text/xml; charset=utf-8")


@pytest.fixture
def fake_fan():
    with FakeFanCourier() as fake:
        yield fake


@pytest.fixture
def fake_sameday():
    with FakeSameday() as fake:
        yield fake


@pytest.fixture
def fake_cargus():
    with FakeCargus() as fake:
        yield fake


@pytest.fixture
def fake_dpd_ro():
    with FakeDpdRomania() as fake:
        yield fake


@pytest.fixture
def fake_dpd_pl():
    with FakeDpdPolska() as fake:
        yield fake


@pytest.fixture
def fake_inpost():
    with FakeInPost() as fake:
        yield fake


# --- what tests build requests from ---------------------------------------------------------------------------

class Sleeps(list):
    """Records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def ro_request(reference: str = "CMD-1024", **changes: Any):
    """A Romanian order's shipment: Bucharest shop to a customer in Iasi, 1.5 kg, cash on delivery."""
    from decimal import Decimal

    from connectors.records import Address, Money, Parcel, ShipmentRequest

    fields: dict[str, Any] = dict(
        reference=reference,
        sender=Address(name="Magazin Floare SRL", street="Str. Lunga 10", city="Bucuresti", postcode="010011",
                       region="Bucuresti", country="RO", phone="+40723000000"),
        recipient=Address(name="Ion Popescu", street="Str. 11 Iunie nr. 14", city="Iasi", postcode="700259",
                          region="Iasi", country="RO", phone="0740123123", email="ion@example.ro"),
        parcels=(Parcel(Decimal("1.5"), Decimal("30"), Decimal("20"), Decimal("10")),),
        cash_on_delivery=Money(Decimal("199.99"), "RON"),
    )
    fields.update(changes)
    return ShipmentRequest(**fields)


def pl_request(reference: str = "ZAM-2048", **changes: Any):
    """A Polish order to a Paczkomat in Kraków, small locker, cash on delivery."""
    from decimal import Decimal

    from connectors.records import Address, Money, Parcel, ShipmentRequest

    fields: dict[str, Any] = dict(
        reference=reference,
        sender=Address(name="Kwiaciarnia Róża", street="ul. Floriańska 3", city="Kraków", postcode="31-019",
                       country="PL", phone="+48600111222"),
        recipient=Address(name="Zofia Nowak", street="ul. Długa 5", city="Kraków", postcode="31-147",
                          country="PL", phone="+48600111222", email="zofia.nowak@example.pl"),
        parcels=(Parcel(Decimal("2"), template="small"),),
        cash_on_delivery=Money(Decimal("249.90"), "PLN"),
        pickup_point_id="KRA010",
    )
    fields.update(changes)
    return ShipmentRequest(**fields)


def pdf_pages(content: bytes) -> list[tuple[float, float]]:
    """(width, height) in points of every page of a PDF."""
    from pypdf import PdfReader

    return [(float(p.mediabox.width), float(p.mediabox.height)) for p in PdfReader(io.BytesIO(content)).pages]
