"""DPD Polska: DPDServices (SOAP) for package numbers and labels, DPDInfoServices for tracking events.

SOAP 1.1 envelopes are built here with the standard library: the three calls we need are small, and a WSDL
toolkit would fetch DPD's WSDL at run time. Answers are read by element name, ignoring namespaces and case.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any, ClassVar, Iterable
from zoneinfo import ZoneInfo

import requests

from connectors.couriers.base import (
    Capability, Courier, CourierRefused, HandoverDocument, LabelFormat, LabelSize, PickupCancelDenied, PickupRequest,
    PickupResult, decode_pdf, load_status_map, tracking_result,
)
from connectors.errors import AuthError, ConnectorError, InvalidPayload
from connectors.records import Address, LabelDocument, ShipmentRequest, ShipmentResult, TrackingEvent, TrackingResult

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
PACKAGE_NS = "http://dpdservices.dpd.com.pl/"
EVENTS_NS = "http://events.dpdinfoservices.dpd.com.pl/"
HOSTS = {
    "production": "https://dpdservices.dpd.com.pl/DPDPackageObjServicesService/DPDPackageObjServices",
    "demo": "https://dpdservicesdemo.dpd.com.pl/DPDPackageObjServicesService/DPDPackageObjServices",
}
INFO_URL = "https://dpdinfoservices.dpd.com.pl/DPDInfoServicesObjEventsService/DPDInfoServicesObjEvents"
ZONE = "Europe/Warsaw"  # DPD's event times carry no offset
_AUTH_WORDS = ("INCORRECT_LOGIN_OR_PASSWORD", "ACCOUNT_IS_LOCKED", "DISALLOWED_FID", "DeniedAccessWSException")


def _element(tag: str, value: Any = None, children: Iterable[ET.Element] = ()) -> ET.Element:
    node = ET.Element(tag)
    if value is not None:
        node.text = str(value)
    node.extend(children)
    return node


def _tree(tag: str, content: dict | list | Any) -> ET.Element:
    """{"a": 1, "b": {"c": 2}, "d": [{...}, {...}]} as unqualified child elements (a list repeats its tag)."""
    node = ET.Element(tag)
    for key, value in (content.items() if isinstance(content, dict) else []):
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            node.append(_tree(key, item) if isinstance(item, dict) else _element(key, item))
    return node


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _find_all(node: ET.Element, name: str) -> list[ET.Element]:
    name = name.lower()
    return [child for child in node.iter() if _local(child.tag) == name]


def _child(node: ET.Element, name: str) -> str:
    """The text of a direct child, so a nested element of the same name is not mistaken for it."""
    name = name.lower()
    return next(((child.text or "").strip() for child in node if _local(child.tag) == name), "")


def _text(node: ET.Element, name: str) -> str:
    found = _find_all(node, name)
    return (found[0].text or "").strip() if found else ""


class DpdPolska(Courier):
    """One DPD Polska contract: login, password and master FID (the sender's FID is the same unless told)."""

    name: ClassVar[str] = "dpd_pl"
    default_base_url: ClassVar[str] = HOSTS["production"]
    capabilities = frozenset({
        Capability.LABEL_PDF, Capability.LABEL_ZPL, Capability.SIZE_100X150, Capability.TRACKING, Capability.COD,
        Capability.PICKUP_REQUEST, Capability.PICKUP_CANCEL, Capability.HANDOVER_DOCUMENT,
    })  # no lookup by reference and no shipment cancel in DPDServices: an ambiguous create is left to staff
    status_map = load_status_map("dpd_polska")
    renews_tokens: ClassVar[bool] = False

    def __init__(self, login: str, password: str, master_fid: int | str, *, sender_fid: int | str | None = None,
                 info_url: str = INFO_URL, info_channel: str | None = None, **options: Any):
        super().__init__(**options)
        self.login, self._password, self.master_fid = login, password, str(master_fid)
        self.sender_fid = str(sender_fid or master_fid)
        self.info_url, self.info_channel = info_url.rstrip("/"), info_channel or str(master_fid)

    @property
    def account(self) -> str:
        return f"{self.login}/{self.master_fid}"

    def _login(self) -> tuple[str, float | None]:
        return "", None

    # --- SOAP --------------------------------------------------------------------------------------------

    def _envelope(self, namespace: str, operation: str, body: dict, auth: dict) -> bytes:
        ET.register_namespace("soapenv", SOAP)
        envelope = ET.Element(f"{{{SOAP}}}Envelope")
        ET.SubElement(envelope, f"{{{SOAP}}}Header")
        call = _tree(f"{{{namespace}}}{operation}", {**body, "authDataV1": auth})
        ET.SubElement(envelope, f"{{{SOAP}}}Body").append(call)
        return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def _answer_error(self, response: requests.Response, what: str) -> ConnectorError | None:
        if b"Fault>" not in response.content[:4000] and b"Fault " not in response.content[:4000]:
            return None
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            return None
        faults = _find_all(root, "Fault")
        if not faults:
            return None
        message = _text(faults[0], "faultstring") or "SOAP fault"
        if any(word.lower() in response.text.lower() for word in _AUTH_WORDS):
            return AuthError(f"dpd_pl {what}: {message}")
        return CourierRefused(f"dpd_pl {what}: {message}", {"": [message]}, response.status_code)

    def _soap(self, url: str, namespace: str, operation: str, body: dict, auth: dict, *, what: str,
              idempotent: bool) -> ET.Element:
        response = self._call("POST", "", what=what, idempotent=idempotent, authed=False, url=url,
                              data=self._envelope(namespace, operation, body, auth),
                              headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
        try:
            return ET.fromstring(response.content)
        except ET.ParseError:
            raise InvalidPayload(f"dpd_pl {what}: the answer is not XML") from None

    def _package_call(self, operation: str, body: dict, *, what: str, idempotent: bool) -> ET.Element:
        auth = {"login": self.login, "masterFid": self.master_fid, "password": self._password}
        return self._soap(self.base_url, PACKAGE_NS, operation, body, auth, what=what, idempotent=idempotent)

    # --- shipments -------------------------------------------------------------------------------------------

    def _package(self, request: ShipmentRequest) -> dict:
        recipient, sender, options = request.recipient, request.sender, request.options
        services: dict[str, Any] = {}
        if request.cash_on_delivery:
            services["cod"] = {"amount": f"{request.cash_on_delivery.amount:.2f}",
                               "currency": request.cash_on_delivery.currency}
        if request.declared_value:
            services["declaredValue"] = {"amount": f"{request.declared_value.amount:.2f}",
                                         "currency": request.declared_value.currency}
        if request.pickup_point_id:
            services["dpdPickup"] = {"pudo": request.pickup_point_id}

        def party(address, fid=None) -> dict:
            return {"address": ", ".join(p for p in (address.street, address.street2) if p), "city": address.city,
                    "company": address.company or None, "countryCode": address.country or "PL",
                    "email": address.email or None, "fid": fid, "name": address.name,
                    "phone": address.phone or None, "postalCode": re.sub(r"\D", "", address.postcode)}

        return {
            "parcels": [{"content": options.get("content", request.reference), "reference": request.reference,
                         "sizeX": _cm(p.length_cm), "sizeY": _cm(p.width_cm), "sizeZ": _cm(p.height_cm),
                         "weight": f"{Decimal(p.weight_kg):.2f}"} for p in request.parcels],
            "payerType": options.get("payer", "SENDER"),
            "receiver": party(recipient),
            "reference": request.reference,
            "ref1": request.reference,
            "sender": party(sender, self.sender_fid),
            "services": services or None,
        }

    def _create(self, request: ShipmentRequest) -> ShipmentResult:
        answer = self._package_call("generatePackagesNumbersV4", {
            "openUMLFeV3": {"packages": [self._package(request)]},
            "pkgNumsGenerationPolicyV1": "STOP_ON_FIRST_ERROR", "langCode": "PL",
        }, what=f"package for {request.reference}", idempotent=False)
        returned = (_find_all(answer, "return") or [answer])[0]
        status = _child(returned, "Status")
        packages = _find_all(returned, "Package")
        if status != "OK" or not packages:
            errors = {_text(info, "ErrorCode") or status: [_text(info, "Info") or status]
                      for info in _find_all(answer, "ValidationInfo")} or {"": [status or "no packages"]}
            raise CourierRefused(f"dpd_pl refused the package for {request.reference}: {status}", errors)
        waybills = tuple(_text(parcel, "Waybill") for parcel in _find_all(packages[0], "Parcel"))
        if not all(waybills):
            raise InvalidPayload(f"dpd_pl package for {request.reference}: a parcel came back without a waybill")
        return ShipmentResult(request.reference, waybills, courier=self.name,
                              shipment_id=_text(packages[0], "PackageId") or None, parcel_numbers=waybills)

    def _label_keys(self, shipment: str | ShipmentResult) -> list[str]:
        if isinstance(shipment, ShipmentResult):
            return list(shipment.tracking_numbers)  # DPD prints by waybill, one per parcel
        return [shipment]

    # --- labels ----------------------------------------------------------------------------------------------

    def _labels(self, keys: list[str], label_format: LabelFormat, size: LabelSize) -> LabelDocument:
        answer = self._package_call("generateSpedLabelsV4", {
            "dpdServicesParamsV1": {"policy": "STOP_ON_FIRST_ERROR",
                                    "session": {"packages": [{"parcels": [{"waybill": k} for k in keys]}],
                                                "sessionType": "DOMESTIC"}},
            "outputDocFormatV1": label_format.value.upper(),
            "outputDocPageFormatV1": "LBL_PRINTER",  # the label printer format; A4 sheets are made by print_sheet
        }, what=f"labels for {len(keys)} waybills", idempotent=True)
        data = _text(answer, "documentData")
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidPayload("dpd_pl labels: documentData is not base64") from None
        if not content:
            raise CourierRefused(f"dpd_pl labels: {_text(answer, 'status') or 'no document'}")
        if label_format is LabelFormat.PDF and not content.startswith(b"%PDF"):
            raise InvalidPayload("dpd_pl labels: expected a PDF")
        return LabelDocument(content, label_format.value, LabelSize.S100X150.value)

    # --- courier pickup and handover protocol --------------------------------------------------------------

    def _pickup_call(self, params: dict, what: str, *, idempotent: bool) -> tuple[str, str, ET.Element]:
        """packagesPickupCallV4(dpdPickupParamsV3, authDataV1): (status, the courier's words, the answer)."""
        answer = self._package_call("packagesPickupCallV4", {"dpdPickupParamsV3": params}, what=what,
                                    idempotent=idempotent)
        returned = (_find_all(answer, "return") or [answer])[0]
        info = (_find_all(returned, "statusInfo") or [returned])[0]
        status = _child(info, "status")
        words = "; ".join(" ".join(part for part in (_text(detail, "code"), _text(detail, "description")) if part)
                          for detail in _find_all(info, "errorDetails"))
        return status, words, returned

    def _pickup(self, pickup: PickupRequest) -> PickupResult:
        """packagesPickupCallV4, operation INSERT, the simplified form (no protocol numbers needed): sender,
        payer (our FID), and how many parcels of what weight. DPD answers an order number and a checksum; both
        are needed to call the order off again."""
        address, count = pickup.address, max(1, pickup.parcels)
        params = {
            "operationType": "INSERT",
            "orderType": "DOMESTIC",
            "pickupCallSimplifiedDetails": {
                "packagesParams": {"dox": "false", "doxCount": pickup.envelopes or None, "pallet": "false",
                                   "parcelMaxWeight": f"{Decimal(pickup.weight_kg) / count:.2f}",
                                   "parcelsCount": count, "parcelsWeight": f"{Decimal(pickup.weight_kg):.2f}",
                                   "standardParcel": "true"},
                "pickupCustomer": {"customerFullName": address.company or address.name, "customerName": address.name,
                                   "customerPhone": address.phone or None},
                "pickupPayer": {"payerName": address.company or address.name, "payerNumber": self.sender_fid},
                "pickupSender": {"senderAddress": ", ".join(p for p in (address.street, address.street2) if p),
                                 "senderCity": address.city, "senderFullName": address.company or address.name,
                                 "senderName": address.name, "senderPhone": address.phone or None,
                                 "senderPostalCode": re.sub(r"\D", "", address.postcode)},
            },
            "pickupDate": pickup.day.isoformat(),
            "pickupTimeFrom": pickup.ready_from.strftime("%H:%M"),
            "pickupTimeTo": pickup.ready_until.strftime("%H:%M"),
            "waybillsReady": "true",
        }
        status, words, returned = self._pickup_call(params, f"pickup call for {pickup.day}", idempotent=False)
        number_ = _child(returned, "orderNumber")
        if status != "OK" or not number_:  # the courier's words follow once, from `errors`
            raise CourierRefused("dpd_pl refused the pickup call", {status or "no status": [words] if words else []})
        return PickupResult(self.name, number_, {"orderNumber": number_, "status": status},
                            details={"checkSum": _child(returned, "checkSum")})

    def _cancel_pickup(self, pickup: PickupResult) -> None:
        """packagesPickupCallV4, operation CANCEL, with the order number and the checksum DPD gave with it;
        ORDER_CANCEL_DENIED once the courier is on the way, and (as DPD documents no other status for it) for an
        order already cancelled. Sent once: a replay of a cancel that worked would be denied."""
        params = {"checkSum": (pickup.details or {}).get("checkSum") or None, "operationType": "CANCEL",
                  "orderNumber": pickup.pickup_id, "orderType": "DOMESTIC"}
        status, words, _ = self._pickup_call(params, f"cancel pickup call {pickup.pickup_id}", idempotent=False)
        if status != "OK":  # the courier's words follow once, from `errors`
            refusal = PickupCancelDenied if status == "ORDER_CANCEL_DENIED" else CourierRefused
            raise refusal(f"dpd_pl did not cancel pickup call {pickup.pickup_id}",
                          {status or "no status": [words] if words else []})

    def _handover(self, keys: list[str], pickup: PickupResult | None, sender: Address | None) -> HandoverDocument:
        """generateProtocolV2: the handover protocol ("protokół przekazania") for these waybills, an A4 PDF."""
        params: dict[str, Any] = {"policy": "STOP_ON_FIRST_ERROR",
                                  "session": {"packages": [{"parcels": [{"waybill": k} for k in keys]}],
                                              "sessionType": "DOMESTIC"}}
        if sender is not None:
            params = {"pickupAddress": {
                "address": ", ".join(p for p in (sender.street, sender.street2) if p), "city": sender.city,
                "company": sender.company or None, "countryCode": sender.country or "PL",
                "email": sender.email or None, "fid": self.sender_fid, "name": sender.name,
                "phone": sender.phone or None, "postalCode": re.sub(r"\D", "", sender.postcode)}, **params}
        answer = self._package_call("generateProtocolV2", {"dpdServicesParamsV1": params, "outputDocFormatV1": "PDF",
                                                           "outputDocPageFormatV1": "A4"},
                                    what=f"protocol for {len(keys)} waybills", idempotent=True)
        data = _text(answer, "documentData")
        if not data:  # DPD answers no document with the session's status (NOT_FOUND: unknown waybills)
            raise CourierRefused(f"dpd_pl protocol: {_text(answer, 'status') or 'no document'}")
        content = decode_pdf(data, "dpd_pl protocol")
        return HandoverDocument(content, "application/pdf", _text(answer, "documentId"))

    # --- tracking --------------------------------------------------------------------------------------------

    def _track(self, numbers: list[str]) -> list[TrackingResult]:
        results = []
        auth = {"channel": self.info_channel, "login": self.login, "password": self._password}
        for waybill in numbers:
            answer = self._soap(self.info_url, EVENTS_NS, "getEventsForWaybillV1",
                                {"waybill": waybill, "eventsSelectType": "ALL", "language": "PL"}, auth,
                                what=f"events for {waybill}", idempotent=True)
            events = []
            for event in _find_all(answer, "eventsList"):
                text = _text(event, "description")
                events.append(TrackingEvent(_dpd_time(_text(event, "eventTime")),
                                            self.status_map.status(_text(event, "businessCode"), text),
                                            _text(event, "businessCode"), text, _text(event, "depotName") or None))
            results.append(tracking_result(waybill, events))
        return results


def _cm(value: Decimal | None) -> str | None:
    return None if value is None else str(int(Decimal(value).to_integral_value()))


def _dpd_time(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.replace(" ", "T"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(ZONE))
    return moment.astimezone(dt.timezone.utc)
