"""The MIME message: ``multipart/alternative`` with text first and HTML last, RFC 8058 headers.

The stock SMTP policy folds header lines at 78 characters and RFC 2047-encodes long values,
which mangles the long signed URL in ``List-Unsubscribe`` so mailbox providers cannot use it
for one-click unsubscribe. :data:`POLICY` allows lines up to the RFC 5322 limit of 998.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

POLICY = policy.SMTP.clone(max_line_length=998)


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


def one_line(value: str) -> str:
    """Collapse whitespace (including CR/LF from recipient data) so a header stays one line."""
    return " ".join(value.split())


def list_unsubscribe(url: str, mailto: str | None) -> str:
    """Return the ``List-Unsubscribe`` value: the HTTPS URL, then the mailto when given."""
    links = [f"<{url}>"]
    if mailto:
        address = mailto if mailto.startswith("mailto:") else f"mailto:{mailto}"
        links.append(f"<{address}>")
    return ", ".join(links)


def build_message(parts: MessageParts) -> EmailMessage:
    """Return the email message for ``parts``."""
    message = EmailMessage(policy=POLICY)
    if parts.sender:
        message["From"] = parts.sender
    if parts.to:
        message["To"] = one_line(parts.to)
    message["Subject"] = one_line(parts.subject)
    if parts.date is not None:
        message["Date"] = format_datetime(parts.date)
    message["List-Unsubscribe"] = list_unsubscribe(parts.unsubscribe_url, parts.unsubscribe_mailto)
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in parts.extra_headers:
        message[name] = one_line(value)
    # RFC 2046: alternatives go from plainest to richest; clients show the last they support.
    message.set_content(parts.text, subtype="plain", charset="utf-8")
    message.add_alternative(parts.html, subtype="html", charset="utf-8")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """Serialise ``message`` with CRLF line ends and the 998-character policy."""
    return message.as_bytes(policy=POLICY)
