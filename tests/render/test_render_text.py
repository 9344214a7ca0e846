"""The HTML-to-text fallback for templates without a text version."""

from __future__ import annotations

from engine.render.text import html_to_text

HTML = """<!doctype html><html><head><title>T</title><style>p { color: red }</style></head>
<body><div style="display:none;max-height:0px">The hidden preheader</div>
<!--[if mso | IE]><table><tr><td><![endif]-->
<table role="presentation"><tr><td><div>Hello&nbsp;Ann &amp; co</div></td></tr>
<tr><td><a href="https://s.example/1"><img src="1.jpg" alt="Blue mug"></a></td></tr>
<tr><td><p>Now <a href="https://s.example/2">see it</a> today</p><br>Bye</td></tr></table>
<a href="#top">back to top</a></body></html>"""


def test_conversion_keeps_words_links_and_alt_text_only() -> None:
    text = html_to_text(HTML)
    assert text == (
        "Hello Ann & co\n\nBlue mug (https://s.example/1)\n\n"
        "Now see it (https://s.example/2) today\n\nBye\n\nback to top\n"
    )
    for noise in ("hidden preheader", "color: red", "mso", "<"):
        assert noise not in text


def test_bundled_template_without_text_file_gets_a_clean_conversion(renderer) -> None:
    rendered = renderer.preview("weekly-digest")  # it ships no email.txt
    assert rendered.preheader not in rendered.text
    assert "Good to see you, Oliver" in rendered.text
    assert "Unsubscribe (https://mail.example.com/u/" in rendered.text
    assert "\n\n\n" not in rendered.text
