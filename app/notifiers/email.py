"""Email over SMTP with smtplib: one reused connection per relay, each failure classified by how far the send got."""
from __future__ import annotations

import binascii
import functools
import logging
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formataddr

# The email package folds a header word longer than 78 characters by rewriting it as RFC 2047 encoded-words,
# and no mailbox provider reads `=?utf-8?q?=3Chttps...` as a URL. These headers are written as given instead.
VERBATIM_HEADERS = ("list-unsubscribe", "list-unsubscribe-post")

from app.notifiers.base import Envelope, SendOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpRelay:
    """Where mail leaves from and as whom: a shop's own relay and identity, else the global one."""

    host: str
    port: int
    from_address: str
    from_name: str = ""
    reply_to: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: str = "none"  # none | starttls | ssl
    timeout: float = 10.0

    @property
    def key(self) -> tuple:
        return (self.host, self.port, self.username, self.security)


class EmailNotifier:
    """Sends through one SMTP relay, keeping its connection open between messages."""

    channel = "email"
    provider = "smtp"

    def __init__(self, relay: SmtpRelay):
        self.relay = relay
        self._conn: smtplib.SMTP | None = None

    def build_message(self, envelope: Envelope) -> EmailMessage:
        message = EmailMessage(policy=SMTP_POLICY)
        from email.headerregistry import Address

        message["From"] = str(Address(self.relay.from_name, addr_spec=self.relay.from_address)) if self.relay.from_name \
            else self.relay.from_address
        message["To"] = envelope.recipient
        if self.relay.reply_to:
            message["Reply-To"] = self.relay.reply_to
        message["Subject"] = envelope.subject
        for name, value in envelope.headers.items():
            if name.lower() not in VERBATIM_HEADERS:
                message[name] = value
        message.set_content(envelope.text or "", cte="quoted-printable")
        if envelope.html:
            message.add_alternative(envelope.html, subtype="html", cte="quoted-printable")
        return message

    def raw_message(self, envelope: Envelope) -> bytes:
        """The message as it goes over the wire (CRLF, before dot-stuffing).

        Written directly for the common case (ASCII addresses and header values, UTF-8 subject, sender name and
        bodies): the email package's header registry costs several milliseconds a message, more than the send.
        Anything unusual (a non-ASCII address, a header value with a line break) takes the email package's path,
        which encodes it properly or refuses it.
        """
        fast = _fast_raw(self.relay, envelope)
        if fast is not None:
            return fast
        return _with_verbatim_headers(self.build_message(envelope).as_bytes(policy=SMTP_POLICY), envelope.headers)

    def send(self, envelope: Envelope) -> SendOutcome:
        raw = self.raw_message(envelope)
        message_id = envelope.headers.get("Message-ID")
        for reconnect in (False, True):
            try:
                conn = self._connection(fresh=reconnect)
                return self._transact(conn, envelope.recipient, raw, message_id)
            except _StaleConnection:
                self._drop()
                continue  # the server closed an idle reused connection before MAIL FROM; one fresh try
            except _Sent as sent:
                return sent.outcome
            # smtplib's exceptions are OSErrors too: the most specific first.
            except smtplib.SMTPAuthenticationError as exc:
                self._drop()
                return SendOutcome.retry(300, f"SMTP relay refused our login: {exc.smtp_code}")
            except smtplib.SMTPException as exc:
                self._drop()
                return SendOutcome.retry(60, f"SMTP error before the message was sent: {exc}")
            except OSError as exc:  # refused, unreachable, timed out before DATA
                self._drop()
                return SendOutcome.retry(60, f"cannot reach SMTP relay {self.relay.host}:{self.relay.port}: {exc}")
        return SendOutcome.retry(60, "SMTP relay keeps closing the connection")

    def _transact(self, conn: smtplib.SMTP, recipient: str, raw: bytes, message_id: str | None) -> SendOutcome:
        # MAIL and RCPT as smtplib's mail() and rcpt() write them, without their address parsing for every message.
        try:
            conn.putcmd("mail", f"FROM:{_smtp_path(self.relay.from_address)}")
            code, reply = conn.getreply()
        except smtplib.SMTPServerDisconnected:
            raise _StaleConnection() from None
        if code != 250:
            conn.rset()
            return _classify_envelope_reply("MAIL FROM", code, reply, recipient_level=False)
        conn.putcmd("rcpt", f"TO:{_smtp_path(recipient)}")
        code, reply = conn.getreply()
        if code not in (250, 251):
            _quiet_rset(conn)
            return _classify_envelope_reply("RCPT TO", code, reply, recipient_level=True)
        code, reply = conn.docmd("DATA")
        if code != 354:
            _quiet_rset(conn)
            return _classify_envelope_reply("DATA", code, reply, recipient_level=False)
        # From here the server may hold the message: any loss of contact is an unknown outcome, never a retry.
        try:
            conn.send(_dot_stuffed(raw))
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise _Sent(SendOutcome.unknown(f"connection lost after the message body was sent: {exc}")) from None
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        if code == 250:
            return SendOutcome.accepted(message_id, f"250 {text}"[:500])
        if 400 <= code < 500:
            return SendOutcome.retry(300, f"server deferred the message after DATA: {code} {text}")
        return SendOutcome.failed(f"server rejected the message after DATA: {code} {text}")

    def _connection(self, fresh: bool = False) -> smtplib.SMTP:
        if self._conn is not None and not fresh:
            return self._conn
        self._drop()
        relay = self.relay
        if relay.security == "ssl":
            conn = smtplib.SMTP_SSL(relay.host, relay.port, timeout=relay.timeout, context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout)
            if relay.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
        conn.ehlo_or_helo_if_needed()
        if relay.username:
            conn.login(relay.username, relay.password or "")
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken socket may fail again
            pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except Exception:  # noqa: BLE001
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


class _StaleConnection(Exception):
    pass


class _Sent(Exception):
    def __init__(self, outcome: SendOutcome):
        self.outcome = outcome


def _quiet_rset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except smtplib.SMTPException:
        pass


def _classify_envelope_reply(command: str, code: int, reply, *, recipient_level: bool) -> SendOutcome:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{command} refused: {code} {text}"[:500]
    if 400 <= code < 500:
        return SendOutcome.retry(300, detail)
    # A 5xx for the recipient means the mailbox is gone or refuses us: never try that address again.
    return SendOutcome.failed(detail, suppress=recipient_level and 500 <= code < 600)


def _with_verbatim_headers(raw: bytes, headers: dict[str, str]) -> bytes:
    """Add the verbatim headers (ASCII only) at the end of the header block, folded between list items."""
    lines = []
    for name, value in headers.items():
        if name.lower() in VERBATIM_HEADERS:
            value.encode("ascii")  # a non-ASCII URL here is a bug upstream: fail before anything is sent
            lines.append(f"{name}: " + ",\r\n ".join(re.split(r"(?<=>)\s*,\s*", value.strip())))
    if not lines:
        return raw
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n" + "\r\n".join(lines).encode("ascii") + sep + body


def _ascii_line_safe(value: str) -> bool:
    return value.isascii() and "\r" not in value and "\n" not in value


@functools.lru_cache(maxsize=1024)
def _encoded_word_header(name: str, value: str) -> str:
    if value.isascii():
        return f"{name}: {value}"
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _qp(text: str) -> bytes:
    """Quoted-printable body with CRLF line ends (RFC 2045: soft breaks at 76, trailing blanks encoded)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    if not normalised.endswith(b"\n"):
        normalised += b"\n"
    return binascii.b2a_qp(normalised, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


def _fast_raw(relay: SmtpRelay, envelope: Envelope) -> bytes | None:
    addresses = [relay.from_address, envelope.recipient, *( [relay.reply_to] if relay.reply_to else [])]
    if not all(_ascii_line_safe(a) for a in addresses):
        return None
    if not all(_ascii_line_safe(name) and _ascii_line_safe(value) for name, value in envelope.headers.items()):
        return None
    if any(ch in (relay.from_name + envelope.subject) for ch in "\r\n"):
        return None
    lines = [f"From: {formataddr((relay.from_name, relay.from_address), charset='utf-8')}" if relay.from_name
             else f"From: {relay.from_address}", f"To: {envelope.recipient}"]
    if relay.reply_to:
        lines.append(f"Reply-To: {relay.reply_to}")
    lines.append(_encoded_word_header("Subject", envelope.subject))
    for name, value in envelope.headers.items():
        if name.lower() in VERBATIM_HEADERS:
            lines.append(f"{name}: " + ",\r\n ".join(re.split(r"(?<=>)\s*,\s*", value.strip())))
        else:
            lines.append(f"{name}: {value}")
    lines.append("MIME-Version: 1.0")
    text_part = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' \
        + _qp(envelope.text or "")
    if not envelope.html:
        return ("\r\n".join(lines) + "\r\n").encode("ascii") + text_part
    boundary = f"=_{secrets.token_hex(16)}"  # "=_" never occurs in quoted-printable text
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    html_part = b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' \
        + _qp(envelope.html)
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return (("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + delimiter + text_part + delimiter + html_part
            + f"--{boundary}--\r\n".encode("ascii"))


_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*")


def _smtp_path(address: str) -> str:
    """`<address>` as smtplib.quoteaddr() gives it; a plain address is not parsed again for every message."""
    if _SIMPLE_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _dot_stuffed(raw: bytes) -> bytes:
    """The message as DATA wants it (RFC 5321 4.5.2): CRLF line ends, leading dots doubled, ending in CRLF.CRLF."""
    crlf = raw.count(b"\r\n")
    data = raw if raw.count(b"\n") == crlf == raw.count(b"\r") else re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", raw)
    if data.startswith(b".") or b"\n." in data:
        data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
