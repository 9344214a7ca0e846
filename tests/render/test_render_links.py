"""Signed expiring link tokens, campaign UTM parameters, click tracking."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.render.links import (
    Campaign,
    InvalidToken,
    LinkConfig,
    LinkSigner,
    add_query,
    safe_url,
)
from engine.render.renderer import RenderContext, Renderer
from fatigue.errors import ConfigurationError


def test_unsubscribe_token_round_trip(signer) -> None:
    token = signer.unsubscribe_token("u-17", "spring")
    payload = signer.verify_unsubscribe(token)
    assert (payload.user_id, payload.campaign_id) == ("u-17", "spring")


def test_links_already_sent_keep_working() -> None:
    """Tokens written by itsdangerous's own serializer (zlib-compressed when it paid) verify."""
    from itsdangerous import URLSafeTimedSerializer

    from engine.render.links import CLICK_SALT, UNSUBSCRIBE_SALT

    secret = "0123456789abcdef-secret"
    signer = LinkSigner(secret)  # the wall clock, as the serializer below uses
    old = URLSafeTimedSerializer(secret, salt=UNSUBSCRIBE_SALT).dumps({"u": "u-17", "c": "spring"})
    assert signer.verify_unsubscribe(old).user_id == "u-17"
    url = "https://shop.example/p/1?" + "utm_source=rapport&" * 20
    packed = URLSafeTimedSerializer(secret, salt=CLICK_SALT).dumps(
        {"u": "u-17", "c": "spring", "l": url, "i": "1"}
    )
    assert packed.startswith(".")  # compressed
    assert signer.verify_click(packed).url == url
    # And the other way: what Rapport signs, itsdangerous's stock serializer reads as its own.
    ours = signer.unsubscribe_token("u-17", "spring")
    stock = URLSafeTimedSerializer(secret, salt=UNSUBSCRIBE_SALT)
    assert stock.loads(ours) == {"u": "u-17", "c": "spring"}


def test_token_expires_on_the_injected_clock(clock) -> None:
    signer = LinkSigner("0123456789abcdef-secret", max_age=timedelta(days=30), clock=clock)
    token = signer.unsubscribe_token("u-17", "spring")
    clock.advance(days=29)
    assert signer.verify_unsubscribe(token).user_id == "u-17"
    clock.advance(days=2)
    with pytest.raises(InvalidToken, match="expired") as caught:
        signer.verify_unsubscribe(token)
    assert caught.value.expired


def test_tampered_or_foreign_tokens_are_refused(signer, clock) -> None:
    token = signer.unsubscribe_token("u-17", "spring")
    head, _, tail = token.rpartition(".")
    with pytest.raises(InvalidToken, match="not valid") as caught:
        signer.verify_unsubscribe(f"{head}.{tail[::-1]}")
    assert not caught.value.expired
    with pytest.raises(InvalidToken):
        LinkSigner("another-secret-0123456789", clock=clock).verify_unsubscribe(token)
    with pytest.raises(InvalidToken):  # a token for one purpose never works for another
        signer.verify_preferences(token)
    with pytest.raises(InvalidToken):
        signer.verify_unsubscribe("not-a-token")


def test_short_secrets_and_plain_http_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        LinkSigner("short")
    with pytest.raises(ConfigurationError, match="https"):
        LinkConfig("http://mail.example.com")
    assert LinkConfig("http://localhost:5000/").base_url == "http://localhost:5000"


def test_add_query_keeps_existing_parameters_and_replaces_utm() -> None:
    url = add_query("https://s.example/i/1?colour=red&utm_source=old#top", {"utm_source": "new"})
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"colour": ["red"], "utm_source": ["new"]}
    assert parts.fragment == "top"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://s.example/p?ref=&size=M", "ref=&size=M&"),  # a blank value
        ("https://s.example/p?preview", "preview&"),  # a bare flag
        ("https://s.example/p?q=%E9t%E9", "q=%E9t%E9&"),  # Latin-1 bytes, not UTF-8
    ],
)
def test_add_query_keeps_the_shops_own_parameters_byte_for_byte(url: str, kept: str) -> None:
    assert f"?{kept}utm_source=new" in add_query(url, {"utm_source": "new"})


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("javascript:alert(document.cookie)", ""),
        ("data:text/html,<script>", ""),
        ("/relative/path", ""),
        ("https://cdn.example/a b.jpg", "https://cdn.example/a%20b.jpg"),
        (
            "https://cdn/x.jpg');color:red;background:url('https://evil/t.gif",
            "https://cdn/x.jpg%27%29;color:red;background:url%28%27https://evil/t.gif",
        ),
        ('https://s.example/"onmouseover="x', "https://s.example/%22onmouseover=%22x"),
        (None, None),
    ],
)
def test_catalog_links_are_http_only_and_cannot_break_out(given, safe) -> None:
    """A URL ends up in href, src and CSS url('...'): only http(s), and nothing that closes them."""
    assert safe_url(given) == safe


def test_an_item_link_that_is_not_http_renders_as_no_link(signer, clock) -> None:
    plain = Renderer(object(), signer, LinkConfig("https://m.example"), clock=clock)  # type: ignore[arg-type]
    item = {"item_id": "1", "url": "javascript:alert(1)", "image_url": "https://cdn/a'b.jpg"}
    shown = plain.item_variables(item, "u1", Campaign("c1"))
    assert shown["url"] == "" and shown["image_url"] == "https://cdn/a%27b.jpg"


def test_items_get_campaign_utm_and_optional_click_tracking(signer, clock) -> None:
    campaign = Campaign("spring-26", "Spring", utm_source="rapport")
    item = {"item_id": "42", "title": "Mug", "url": "https://shop.example.com/items/42"}
    plain = Renderer(object(), signer, LinkConfig("https://m.example"), clock=clock)  # type: ignore[arg-type]
    tagged = plain.item_variables(item, "u1", campaign)["url"]
    assert parse_qs(urlsplit(tagged).query) == {
        "utm_source": ["rapport"],
        "utm_medium": ["email"],
        "utm_campaign": ["spring-26"],
    }
    tracking = Renderer(
        object(),  # type: ignore[arg-type]
        signer,
        LinkConfig("https://m.example", track_clicks=True),
        clock=clock,
    )
    tracked = tracking.item_variables(item, "u1", campaign)["url"]
    assert tracked.startswith("https://m.example/c/")
    payload = signer.verify_click(tracked.rsplit("/", 1)[1])
    assert (payload.url, payload.item_id, payload.user_id) == (tagged, "42", "u1")
    assert item["url"] == "https://shop.example.com/items/42"  # the caller's data is untouched


def test_rendered_links_carry_the_recipient_and_campaign(renderer, signer) -> None:
    context = RenderContext(
        {"user_id": "u-9", "email": "ann@example.com", "first_name": "Ann"},
        [{"item_id": "1", "title": "Mug", "url": "https://s.example/1", "image_url": "https://s.example/1.jpg",
          "price": 3.5, "currency": "EUR"}],
        Campaign("weekly-9"),
    )  # fmt: skip
    rendered = renderer.render("picked-for-you", context)
    assert "https://s.example/1?utm_source=rapport&amp;utm_medium=email" in rendered.html
    assert "&#8364;3.50" in rendered.html  # as a character reference: the HTML is ASCII
    unsubscribe = rendered.headers["List-Unsubscribe"].split(">")[0].lstrip("<")
    payload = signer.verify_unsubscribe(unsubscribe.rsplit("/", 1)[1])
    assert (payload.user_id, payload.campaign_id) == ("u-9", "weekly-9")


def _stock_token(secret: str, salt: str, data: dict[str, str], timestamp: int) -> str:
    """The token itsdangerous's own serializer writes for ``data`` at ``timestamp``."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class _At(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return URLSafeTimedSerializer(secret, salt=salt, signer=_At).dumps(data)


def test_tokens_are_the_stock_serializers_bytes_as_the_seconds_go_by(clock) -> None:
    from engine.render.links import CLICK_SALT, PREFERENCES_SALT, UNSUBSCRIBE_SALT

    secret = "0123456789abcdef-secret"
    signer = LinkSigner(secret, clock=clock)
    account = {"u": "u-17", "c": "spring"}
    click = {**account, "l": "https://shop.example/p/1", "i": "1"}
    for step in (0, 0, 1, 0, 255, 65_536):  # the same second, the next, a byte more
        clock.advance(seconds=step)
        now = int(clock().timestamp())
        unsubscribe, preferences = signer.account_tokens("u-17", "spring")
        assert unsubscribe == _stock_token(secret, UNSUBSCRIBE_SALT, account, now)
        assert preferences == _stock_token(secret, PREFERENCES_SALT, account, now)
        assert signer.unsubscribe_token("u-17", "spring") == unsubscribe
        assert signer.preferences_token("u-17", "spring") == preferences
        made = signer.click_token("u-17", "spring", click["l"], "1")
        assert made == _stock_token(secret, CLICK_SALT, click, now)


LINKS = ["https://s.example/1", "https://s.example/1?ref=x&utm_source=old#top",
         " https://s.example/a b", "javascript:alert(1)", "", None, 7,
         "https://s.example/" + "x" * 3000]  # fmt: skip


def test_item_links_are_tagged_alike_every_time_for_each_campaign(signer, clock) -> None:
    plain = Renderer(object(), signer, LinkConfig("https://m.example"), clock=clock)  # type: ignore[arg-type]
    campaigns = [Campaign("c1"), Campaign("c2", utm_source="news"), Campaign("c1")]
    for _ in range(2):  # the second time round, from what was kept
        for campaign in campaigns:
            for link in LINKS:
                shown = plain.item_variables({"item_id": "1", "url": link}, "u1", campaign)
                safe = safe_url(link)
                expected = (
                    add_query(safe, campaign.utm()) if isinstance(safe, str) and safe else safe
                )
                assert shown["url"] == expected, (campaign, link)


def test_a_long_item_link_is_tagged_but_not_kept(signer, clock) -> None:
    from engine.render.links import LONGEST_KEPT_LINK, _safe_text
    from engine.render.renderer import _tagged_link_of

    plain = Renderer(object(), signer, LinkConfig("https://m.example"), clock=clock)  # type: ignore[arg-type]
    link = "https://s.example/" + "y" * LONGEST_KEPT_LINK
    kept, safe_kept = _tagged_link_of.cache_info().currsize, _safe_text.cache_info().currsize
    shown = plain.item_variables({"url": link, "image_url": link}, "u1", Campaign("c9"))
    assert shown["url"] == f"{link}?utm_source=rapport&utm_medium=email&utm_campaign=c9"
    assert shown["image_url"] == link
    assert _tagged_link_of.cache_info().currsize == kept  # neither memo holds the long link
    assert _safe_text.cache_info().currsize == safe_kept
