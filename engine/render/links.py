"""Signed, expiring unsubscribe / preference / click tokens, and campaign UTM parameters.

Tokens are ``itsdangerous`` timed signatures over a small JSON payload, one salt per purpose
so an unsubscribe token can never be replayed as a click token. Time comes from the injected
clock, so expiry is testable without sleeping.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit, urlunsplit

import orjson
from itsdangerous import (
    BadData,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import int_to_bytes, want_bytes
from itsdangerous.signer import HMACAlgorithm

from fatigue.clock import Clock, utc_now
from fatigue.errors import ConfigurationError, RapportError

UNSUBSCRIBE_SALT = "rapport.unsubscribe"
PREFERENCES_SALT = "rapport.preferences"
CLICK_SALT = "rapport.click"


class InvalidToken(RapportError):
    """A link token is forged, damaged or expired; ``expired`` tells which."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class LinkPayload:
    """Who a token was issued to, for which campaign, and (for clicks) where it leads."""

    user_id: str
    campaign_id: str
    url: str | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class Campaign:
    """A campaign: its id and name, and the UTM parameters added to catalog links."""

    campaign_id: str
    name: str = ""
    utm_source: str = "rapport"
    utm_medium: str = "email"
    utm_campaign: str | None = None

    def as_template_dict(self) -> dict[str, str]:
        """Return what templates see as ``campaign``."""
        return {"id": self.campaign_id, "name": self.name or self.campaign_id}

    def utm(self) -> dict[str, str]:
        """Return the UTM parameters for this campaign's links."""
        return {  # ordered as the query string shows them
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign or self.campaign_id,
        }


@lru_cache(maxsize=256)
def _encoded(params: tuple[tuple[str, str], ...]) -> str:
    return urlencode(params)


def add_query(url: str, params: dict[str, str]) -> str:
    """Return ``url`` with ``params`` set in its query string (existing ones are replaced)."""
    if "?" not in url and "#" not in url:
        # The common catalog URL: nothing to merge, so skip the parse (a hot path per item).
        return f"{url}?{_encoded(tuple(params.items()))}"
    parts = urlsplit(url)
    # The shop's own parameters are kept exactly as written (blank values, bare flags, bytes
    # that are not UTF-8): only the ones being set are taken out.
    kept = [
        pair for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) not in params
    ]  # fmt: skip
    query = "&".join([*kept, _encoded(tuple(params.items()))])
    return urlunsplit(parts._replace(query=query))


# Characters a URL may keep as they are; quotes, parentheses, spaces and angle brackets are
# escaped, so a link can close neither an HTML attribute nor a CSS url('...').
_URL_SAFE = "/:?#[]@!$&*+,;=%~-._"


def safe_url(value: Any) -> Any:
    """Return a catalog URL fit for a link or an image: http(s) only, nothing that breaks out.

    Anything else (``javascript:``, ``data:``, a bare path) becomes ``""``: templates then
    show no link rather than a harmful one. Values that are not text are returned as they are.
    """
    if not isinstance(value, str):
        return value
    if len(value) > LONGEST_KEPT_LINK:  # worked out each time: memos hold no huge keys
        return _safe_text.__wrapped__(value)
    return _safe_text(value)


#: Characters of a link the memos here and in the renderer keep, at most (per entry).
LONGEST_KEPT_LINK = 2_048


@lru_cache(maxsize=8192)  # per item, per email: a catalog's URLs repeat in every email
def _safe_text(value: str) -> str:
    text = value.strip()
    if not text.lower().startswith(("http://", "https://")):
        return ""
    return quote(text, safe=_URL_SAFE)


class LinkSigner:
    """Issues and verifies the tokens in unsubscribe, preference and click-tracking links."""

    def __init__(
        self,
        secret_key: str,
        *,
        max_age: timedelta = timedelta(days=60),
        clock: Clock = utc_now,
    ) -> None:
        if len(secret_key) < 16:
            raise ConfigurationError("the link signing secret must be at least 16 characters")
        self._max_age = int(max_age.total_seconds())
        salts = (UNSUBSCRIBE_SALT, PREFERENCES_SALT, CLICK_SALT)
        # Verifying goes through itsdangerous's serializer; signing uses one signer per salt,
        # made once: the serializer makes a signer (and derives its key) for every token.
        self._serializers = {
            salt: URLSafeTimedSerializer(secret_key, salt=salt, signer=_ClockedSigner,
                                         signer_kwargs={"clock": clock})
            for salt in salts
        }  # fmt: skip
        self._signers = {salt: _ClockedSigner(secret_key, salt=salt, clock=clock) for salt in salts}

    def _dump(self, salt: str, payload: LinkPayload) -> str:
        return self._signed(salt, _encoded_payload(payload))

    def _signed(self, salt: str, encoded: bytes) -> str:
        return self._signers[salt].sign(encoded).decode("ascii")

    def _load(self, salt: str, token: str, purpose: str) -> LinkPayload:
        try:
            data = self._serializers[salt].loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            raise InvalidToken(f"this {purpose} link has expired", expired=True) from exc
        except BadData as exc:
            raise InvalidToken(f"this {purpose} link is not valid") from exc
        return LinkPayload(str(data["u"]), str(data["c"]), data.get("l"), data.get("i"))

    def account_tokens(self, user_id: str, campaign_id: str) -> tuple[str, str]:
        """Return the unsubscribe and preference tokens of one email, in that order.

        Both sign the same payload, so it is encoded once: every email carries the two.
        """
        encoded = _encoded_payload(LinkPayload(user_id, campaign_id))
        return self._signed(UNSUBSCRIBE_SALT, encoded), self._signed(PREFERENCES_SALT, encoded)

    def unsubscribe_token(self, user_id: str, campaign_id: str) -> str:
        """Return a signed token for ``user_id``'s one-click unsubscribe link."""
        return self._dump(UNSUBSCRIBE_SALT, LinkPayload(user_id, campaign_id))

    def verify_unsubscribe(self, token: str) -> LinkPayload:
        """Return the payload of an unsubscribe token; raise ``InvalidToken`` if bad or old."""
        return self._load(UNSUBSCRIBE_SALT, token, "unsubscribe")

    def preferences_token(self, user_id: str, campaign_id: str) -> str:
        """Return a signed token for ``user_id``'s preference-centre link."""
        return self._dump(PREFERENCES_SALT, LinkPayload(user_id, campaign_id))

    def verify_preferences(self, token: str) -> LinkPayload:
        """Return the payload of a preference token; raise ``InvalidToken`` if bad or old."""
        return self._load(PREFERENCES_SALT, token, "preferences")

    def click_token(self, user_id: str, campaign_id: str, url: str, item_id: str) -> str:
        """Return a signed click-tracking token that redirects to ``url``."""
        return self._dump(CLICK_SALT, LinkPayload(user_id, campaign_id, url, item_id))

    def verify_click(self, token: str) -> LinkPayload:
        """Return the payload of a click token; raise ``InvalidToken`` if bad or old."""
        return self._load(CLICK_SALT, token, "tracking")


def _encoded_payload(payload: LinkPayload) -> bytes:
    """Return what the serializer's ``dumps`` signs for ``payload``: compact JSON in base64.

    Written here, minus its zlib attempt and its new signer per token; ``loads`` reads it as
    its own.
    """
    data: dict[str, Any] = {"u": payload.user_id, "c": payload.campaign_id}
    if payload.url is not None:
        data["l"] = payload.url
    if payload.item_id is not None:
        data["i"] = payload.item_id
    return _base64(orjson.dumps(data))


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _base64(data: bytes) -> bytes:
    """Return ``data`` in URL-safe base64 without padding: itsdangerous's ``base64_encode``.

    Written directly, without its three layers of calls: three of these go into every token.
    """
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


class _KeyedHMAC(HMACAlgorithm):
    """HMAC-SHA1, itsdangerous's default, from a keyed state made once per key.

    The default builds an ``hmac.HMAC`` for each signature (two or more per email), padding and
    hashing the key every time; a copy of the keyed state skips both. The bytes are the same.
    """

    def __init__(self) -> None:
        super().__init__(hashlib.sha1)
        self._keyed: dict[bytes, hmac.HMAC] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:  # one per secret key (a few at most): no bound needed
            keyed = self._keyed[key] = hmac.new(key, digestmod=hashlib.sha1)
        mac = keyed.copy()
        mac.update(value)
        return mac.digest()


class _ClockedSigner(TimestampSigner):
    """Timestamps from the injected clock; each key derived once rather than for every token."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        kwargs.setdefault("algorithm", _KeyedHMAC())
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._derived: dict[str | bytes | None, bytes] = {}
        # The last second's encoded timestamp: an email's tokens, and a batch's emails, share
        # their second. One (second, stamp) pair, replaced whole, so threads read either.
        self._stamp: tuple[int, bytes] = (-1, b"")

    def sign(self, value: str | bytes) -> bytes:
        """``TimestampSigner.sign`` in one call (the same bytes): value, timestamp, signature."""
        stamped = want_bytes(value) + self.sep + self._encoded_timestamp()
        signature = self.algorithm.get_signature(self.derive_key(), stamped)
        return stamped + self.sep + _base64(signature)

    def _encoded_timestamp(self) -> bytes:
        timestamp = self.get_timestamp()
        second, stamp = self._stamp
        if second != timestamp:
            stamp = _base64(int_to_bytes(timestamp))
            self._stamp = (timestamp, stamp)
        return stamp

    def get_timestamp(self) -> int:
        return int(self._clock().timestamp())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        found = self._derived.get(secret_key)
        if found is None:
            found = self._derived[secret_key] = super().derive_key(secret_key)
        return found


@dataclass(frozen=True)
class LinkConfig:
    """Where links point: the public base URL, an optional mailto, and click tracking."""

    base_url: str
    unsubscribe_mailto: str | None = None
    track_clicks: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        local = parts.hostname in {"localhost", "127.0.0.1"}
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ConfigurationError(
                f"the public base URL must be https:// (got {self.base_url!r}); "
                "one-click unsubscribe (RFC 8058) needs HTTPS"
            )
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def unsubscribe_url(self, token: str) -> str:
        """Return the one-click unsubscribe URL for ``token``."""
        return f"{self.base_url}/u/{token}"

    def preferences_url(self, token: str) -> str:
        """Return the preference-centre URL for ``token``."""
        return f"{self.base_url}/p/{token}"

    def click_url(self, token: str) -> str:
        """Return the click-tracking redirect URL for ``token``."""
        return f"{self.base_url}/c/{token}"
