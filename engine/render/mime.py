"""The MIME message: ``multipart/alternative`` with text first and HTML last, RFC 8058 headers.

The stock SMTP policy folds header lines at 78 characters and RFC 2047-encodes long values,
which mangles the long signed URL in ``List-Unsubscribe`` so mailbox providers cannot use it
for one-click unsubscribe. :data:`POLICY` allows lines up to the RFC 5322 limit of 998.

Two writers produce the same message. :func:`build_message` uses the standard library's
``email`` package (``EmailMessage`` with :data:`POLICY`) and is the reference. It costs about
1.5 ms per email, three times the whole per-recipient budget, so :func:`write_message` writes
the same structure directly: 8bit (or quoted-printable past 998-octet lines) UTF-8 bodies,
RFC 2047 encoded words for non-ASCII subjects and display names (never addresses), CRLF line
ends. The tests parse its output with
the standard library and compare it with the reference.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache

from fatigue.errors import Problem, ValidationError
from fatigue.identity import filled
from fatigue.random_ids import random_hex

POLICY = policy.SMTP.clone(max_line_length=998)
MAX_LINE = 998
ADDRESS_HEADERS = frozenset({"From", "To"})
# Headers whose values are machine-made ASCII (ids, URLs, dates) and must stay as they are:
# RFC 2047 allows encoded words only in text, comments and phrases, so an encoded
# List-Unsubscribe hides its URL from mailbox providers and an encoded Message-ID is invalid.
STRUCTURED_HEADERS = frozenset(
    {"Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version",
     "Content-Type", "X-Rapport-Template"}
)  # fmt: skip
LONGEST_MESSAGE_KEY = 200  # longer decision ids are hashed into the Message-ID
LONGEST_PLAIN_HEADER = 900  # characters of an ASCII value written as it is (lines stop at 998)
ENCODED_WORD_BYTES = 45  # 60 base64 characters: each encoded word stays under 76


@dataclass(frozen=True)
class MessageParts:
    """What goes into one message: addresses, subject, both bodies and the unsubscribe links."""

    subject: str
    text: str
    html: str
    unsubscribe_url: str
    to: str | None = None
    sender: str | None = None
    unsubscribe_mailto: str | None = None
    date: datetime | None = None
    extra_headers: tuple[tuple[str, str], ...] = field(default=())
    message_id: str | None = None  # "<id@domain>"; mailbox providers reject mail without one

    @classmethod
    def made(
        cls,
        subject: str,
        text: str,
        html: str,
        unsubscribe_url: str,
        to: str | None,
        sender: str | None,
        unsubscribe_mailto: str | None,
        date: datetime | None,
        extra_headers: tuple[tuple[str, str], ...],
        message_id: str | None,
    ) -> MessageParts:
        """Build parts with every field given: the same object as ``MessageParts(...)`` makes.

        The generated ``__init__`` of a frozen dataclass sets each field through
        ``object.__setattr__``; one is made per email, and filling the instance's ``__dict__``
        at once takes a third of the time.
        """
        return filled(
            cls,
            dict(
                subject=subject, text=text, html=html, unsubscribe_url=unsubscribe_url, to=to,
                sender=sender, unsubscribe_mailto=unsubscribe_mailto, date=date,
                extra_headers=extra_headers, message_id=message_id,
            ),
        )  # fmt: skip


def message_id(key: str | None, domain: str) -> str:
    """Return a Message-ID: ``<key@domain>`` for a decision (a retry keeps its id), else new.

    A decision id carries its customer's id, which may be long or not ASCII; such a key is
    replaced by its hash (still the same for a retry) so the header stays a valid msg-id.
    """
    if not key:
        return make_msgid(domain=domain)
    if len(key) > LONGEST_MESSAGE_KEY or not _MSG_ID_KEY.fullmatch(key):
        key = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<{key}@{domain}>"


_MSG_ID_KEY = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")  # RFC 5322 dot-atom-text
# Control characters other than whitespace (which one_line folds): NUL, ESC, DEL, C1.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


def one_line(value: str) -> str:
    """Collapse whitespace (CR/LF from recipient data included) so a header stays one line.

    Other control characters (NUL, ESC, DEL) are dropped: RFC 5322 allows none in a header.
    """
    # Printable text holds no control character and no whitespace but the space (tabs, line
    # breaks, no-break and other Unicode spaces are controls or separators, which isprintable
    # refuses): unless a space is doubled or outermost, there is nothing to change. Five
    # headers an email are such text, and rewriting them anyway cost about 2 us.
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value
    return " ".join(value.split()).translate(_CONTROLS)


def list_unsubscribe(url: str, mailto: str | None) -> str:
    """Return the ``List-Unsubscribe`` value: the HTTPS URL, then the mailto when given."""
    links = [f"<{url}>"]
    if mailto:
        address = mailto if mailto.startswith("mailto:") else f"mailto:{mailto}"
        links.append(f"<{address}>")
    return ", ".join(links)


def _unsubscribe_header(parts: MessageParts) -> str:
    """Return ``List-Unsubscribe``; refuse a link too long for one header line.

    Its signed URL cannot be folded (a URI has no whitespace) nor encoded (RFC 2047 forbids it
    there), and the token carries the customer's and campaign's ids.
    """
    value = list_unsubscribe(parts.unsubscribe_url, parts.unsubscribe_mailto)
    size = len("List-Unsubscribe: ") + len(value.encode("utf-8"))
    if size > MAX_LINE:
        raise ValidationError(
            Problem(
                f"the one-click unsubscribe link would make a {size}-octet List-Unsubscribe "
                f"line (at most {MAX_LINE}); shorten the customer or campaign id",
                field="recipient.user_id",
            )
        )
    return value


def build_message(parts: MessageParts) -> EmailMessage:
    """Return the email message for ``parts``."""
    message = EmailMessage(policy=POLICY)
    for name, value in message_headers(parts).items():  # the same headers the fast writer writes
        message[name] = value
    # RFC 2046: alternatives go from plainest to richest; clients show the last they support.
    message.set_content(parts.text, subtype="plain", charset="utf-8")
    message.add_alternative(parts.html, subtype="html", charset="utf-8")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """Serialise ``message`` with CRLF line ends and the 998-character policy."""
    return message.as_bytes(policy=POLICY)


def encode_header(value: str) -> str:
    """Return ``value`` as is when ASCII, else as folded RFC 2047 base64 encoded words.

    An ASCII value too long for one line is encoded too: encoded words can be folded, and a
    line past 998 octets breaks RFC 5322 (a long subject from recipient data, say).
    """
    value = one_line(value)
    # Text that looks like an encoded word is encoded too (RFC 2047 section 5), or a name such
    # as "=?utf-8?b?...?=" from recipient data would decode into a subject nobody wrote.
    if value.isascii() and len(value) <= LONGEST_PLAIN_HEADER and "=?" not in value:
        return value
    words, chunk = [], b""
    for character in value:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode()}?=" for word in words)


def encode_address(value: str) -> str:
    """Return an address header: only a non-ASCII display name becomes encoded words.

    An encoded word may hold a display name but never an address (mail servers could not read
    it). A non-ASCII domain is written in IDNA (``xn--``); a non-ASCII local part stays UTF-8
    (RFC 6532), which only an SMTPUTF8 relay accepts, as for any such address.
    """
    if value.isascii():  # nothing to encode: parsing the address would cost 25 us an email
        return encode_header(value)
    name, address = parseaddr(one_line(value))
    local, at, domain = address.rpartition("@")
    if not at:
        return encode_header(value)
    if not domain.isascii():
        with contextlib.suppress(UnicodeError):  # not a valid IDN: written as given
            domain = domain.encode("idna").decode("ascii")
    address = f"{local}@{domain}"
    if not name:
        return address
    if name.isascii():
        return formataddr((name, "x@x")).removesuffix(" <x@x>") + f" <{address}>"
    return f"{encode_header(name)} <{address}>"


def _body(subtype: str, text: str) -> bytes:
    # A lone CR (from recipient or catalog data) is a line break too: RFC 5322 allows CR only
    # before LF.
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"  # like the email package: a part's body ends with a line break
    if max(map(len, data.split(b"\n")), default=0) <= MAX_LINE:
        encoding = "7bit" if data.isascii() else "8bit"
    else:
        encoding, data = "quoted-printable", binascii.b2a_qp(data)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}'
    return head.encode() + b"\r\n\r\n" + data.replace(b"\n", b"\r\n")


def message_headers(parts: MessageParts) -> dict[str, str]:
    """Return the message's own headers (decoded values), in the order they are written."""
    headers = {}
    if parts.sender:
        headers["From"] = one_line(parts.sender)
    if parts.to:
        headers["To"] = one_line(parts.to)
    headers["Subject"] = one_line(parts.subject)
    if parts.date is not None:
        headers["Date"] = _date_header(parts.date)
    if parts.message_id:
        headers["Message-ID"] = parts.message_id
    headers["List-Unsubscribe"] = _unsubscribe_header(parts)
    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in parts.extra_headers:
        headers[name] = one_line(value)
    return headers


def _date_header(moment: datetime) -> str:
    offset = moment.utcoffset()
    if offset is None:  # naive: the stock "-0000", no cache
        return format_datetime(moment)
    # Whole seconds counted exactly (a float timestamp loses microseconds far from 1970).
    seconds = (moment - _EPOCH) // _SECOND
    try:
        return _formatted_date(seconds, offset)
    except (OverflowError, ValueError):  # years 1 and 9999 shifted by their offset
        return format_datetime(moment)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


# A batch's emails share their second, and formatting one costs 4 us. Keyed by instant and
# offset: aware datetimes in two zones compare equal, and the header shows the zone's offset.
@lru_cache(maxsize=16)
def _formatted_date(seconds: int, offset: timedelta) -> str:
    return format_datetime((_EPOCH + timedelta(seconds=seconds)).astimezone(timezone(offset)))


def write_message(parts: MessageParts) -> tuple[dict[str, str], bytes]:
    """Return the headers and the serialised ``multipart/alternative`` message for ``parts``."""
    headers, boundary = envelope(parts)
    return headers, serialise(parts, headers, boundary)


def envelope(parts: MessageParts) -> tuple[dict[str, str], str]:
    """Return the message's headers (MIME ones included) and the boundary they name."""
    headers = message_headers(parts)
    # 80 random bits, unguessable, so no body can carry the boundary by design; read with the
    # decision ids, many at a time: one urandom call per email was a syscall per recipient.
    boundary = f"=_rapport_{random_hex()}"
    headers["MIME-Version"] = "1.0"
    headers["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    return headers, boundary


def serialise(parts: MessageParts, headers: Mapping[str, str], boundary: str) -> bytes:
    """Return the message bytes for ``parts`` under ``headers`` (from :func:`envelope`)."""
    text, html = _body("plain", parts.text), _body("html", parts.html)
    lines = [f"{name}: {_encoded(name, value)}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    marker = f"--{boundary}\r\n".encode()
    # RFC 2046: alternatives go from plainest to richest; clients show the last they support.
    body = marker + text + b"\r\n" + marker + html + f"\r\n--{boundary}--\r\n".encode()
    return head + body


def _encoded(name: str, value: str) -> str:
    if name in STRUCTURED_HEADERS:
        return value
    return encode_address(value) if name in ADDRESS_HEADERS else encode_header(value)
