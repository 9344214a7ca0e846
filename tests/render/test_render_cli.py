"""``rapport templates``: compile, validate and render, with problems and never a traceback."""

from __future__ import annotations

import csv
import email
import gzip
import shutil
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import train
from engine.render.cli import templates
from engine.render.library import BUNDLED_DIR

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "engine" / "demo_data"


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("RAPPORT_TEMPLATES_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("RAPPORT_SECRET_KEY", "cli-test-secret-0123456789")
    monkeypatch.setenv("RAPPORT_PUBLIC_URL", "https://mail.example.com")
    monkeypatch.setenv("RAPPORT_MODEL_DIR", str(tmp_path / "no-model"))
    return CliRunner()


def test_compile_prints_html_with_jinja_kept(runner, tmp_path) -> None:
    result = runner.invoke(templates, ["compile", str(BUNDLED_DIR / "win-back" / "email.mjml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!doctype html>")
    assert "{% if offer is defined %}" in result.stdout
    out = tmp_path / "out.html"
    result = runner.invoke(
        templates, ["compile", str(BUNDLED_DIR / "win-back" / "email.mjml"), "--out", str(out)]
    )
    assert result.exit_code == 0 and out.read_text().startswith("<!doctype html>")


def test_compile_reports_every_problem_with_its_line(runner, tmp_path) -> None:
    bad = tmp_path / "bad.mjml"
    bad.write_text(
        '<mjml>\n<mj-body>\n<mj-hero background-url="h.jpg"></mj-hero>\n'
        '<mj-section padding="{{ p }}"><mj-column><mj-text>x</mj-text></mj-column></mj-section>\n'
        '<mj-include path="/etc/passwd" />\n</mj-body>\n</mjml>\n'
    )
    result = runner.invoke(templates, ["compile", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(" ")[1] for line in lines] == [f"{bad}:3", f"{bad}:4", f"{bad}:5"]
    assert "Traceback" not in result.stderr and "root:" not in result.stderr


def test_validate_all_bundled_templates(runner) -> None:
    result = runner.invoke(templates, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ok: cart-follow-up",
        "ok: picked-for-you",
        "ok: weekly-digest",
        "ok: win-back",
    ]


def test_validate_a_broken_folder(runner, tmp_path) -> None:
    folder = tmp_path / "win-back"
    shutil.copytree(BUNDLED_DIR / "win-back", folder)
    mjml = folder / "email.mjml"
    mjml.write_text(mjml.read_text().replace("{{ offer.code }}", "{{ offer.coupon }}"))
    result = runner.invoke(templates, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "error: win-back: email.mjml:28 [.coupon]: uses '.coupon'" in result.stderr
    result = runner.invoke(templates, ["validate", "no-such-template"])
    assert result.exit_code == 1 and "no template named" in result.stderr


def test_render_writes_html_text_and_eml(runner, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        templates, ["render", "cart-follow-up", "--user", "u-7", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "using the template's sample items" in result.stderr
    message = email.message_from_bytes(
        (out / "cart-follow-up.eml").read_bytes(), policy=policy.default
    )
    assert message["List-Unsubscribe"].startswith("<https://mail.example.com/u/")
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert (out / "cart-follow-up.txt").read_text() == plain
    assert "Turq Ice Cream Bum Bag" in (out / "cart-follow-up.html").read_text()


def test_render_a_stored_version(runner, tmp_path) -> None:
    from engine.render.store_files import store_from_env

    store = store_from_env()
    files = dict(store.source("win-back").files)
    files["template.toml"] = files["template.toml"].replace("it has been a while", "hello again")
    store.save("win-back", files, "ann", "new subject")
    out = tmp_path / "out"
    for version, subject in ((1, "it has been a while"), (2, "hello again")):
        args = ["render", "win-back", "--user", "u-1", "--version", str(version), "--out", str(out)]
        result = runner.invoke(templates, args)
        assert result.exit_code == 0, result.output
        assert subject in result.stderr
    result = runner.invoke(templates, ["render", "win-back", "--user", "u", "--version", "9"])
    assert result.exit_code == 1 and "no version 9" in result.stderr


def test_render_with_the_users_real_recommendations(runner, tmp_path) -> None:
    interactions = tmp_path / "interactions.csv"
    with gzip.open(DEMO / "interactions.csv.gz", "rt", newline="") as source:
        rows = list(csv.reader(source))
    interactions.write_text("\n".join(",".join(row) for row in rows[:6000]) + "\n")
    user = rows[1][0]
    model_dir = tmp_path / "model"
    trained = runner.invoke(
        train,
        ["--interactions", str(interactions), "--catalog", str(DEMO / "catalog.csv"),
         "--algorithm", "popular", "--model-dir", str(model_dir)],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "out"
    args = ["render", "picked-for-you", "--user", user, "--model-dir", str(model_dir)]
    result = runner.invoke(templates, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "picked-for-you.txt").read_text()
    with (DEMO / "catalog.csv").open(newline="") as handle:
        titles = {row["title"] for row in csv.DictReader(handle)}
    shown = [line[2:].split(" - ")[0] for line in text.splitlines() if line.startswith("* ")]
    assert len(shown) == 4 and all(title in titles for title in shown)  # as a compose shows
    assert "Pink Regency Teacup" not in text  # not the sample's items


def test_files_that_are_not_utf8_are_named_with_their_line(runner, tmp_path) -> None:
    folder = tmp_path / "win-back"
    shutil.copytree(BUNDLED_DIR / "win-back", folder)
    (folder / "email.txt").write_bytes("Hello\nCaf\xe9\n".encode("latin-1"))
    result = runner.invoke(templates, ["validate", str(folder)])
    assert result.exit_code == 1
    bad_text = f"error: {folder / 'email.txt'}:2: not UTF-8 text (byte 0xe9"
    assert result.stderr.startswith(bad_text), result.stderr
    assert "Traceback" not in result.output
    mjml = tmp_path / "latin.mjml"
    mjml.write_bytes(b"<mjml>\xff</mjml>")
    result = runner.invoke(templates, ["compile", str(mjml)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {mjml}:1: not UTF-8 text"), result.stderr


def test_an_output_path_that_cannot_be_written_is_an_error_not_a_traceback(
    runner, tmp_path
) -> None:
    (tmp_path / "x.txt").write_text("a file, not a folder")
    out = tmp_path / "x.txt" / "sub"
    result = runner.invoke(templates, ["render", "win-back", "--user", "u-1", "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"error: cannot write {out}: Not a directory"
    html = tmp_path / "no-such-folder" / "x.html"
    source = str(BUNDLED_DIR / "win-back" / "email.mjml")
    result = runner.invoke(templates, ["compile", source, "--out", str(html)])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot write {html}: No such file or directory\n"


def test_compile_reports_a_jinja_syntax_error_with_its_line(runner, tmp_path) -> None:
    mjml = tmp_path / "email.mjml"
    source = (BUNDLED_DIR / "weekly-digest" / "email.mjml").read_text()
    [line] = [n for n, text in enumerate(source.splitlines(), 1) if "Good to see you" in text]
    mjml.write_text(source.replace('{{ recipient.first_name|default("reader", true) }}', "{{ x }"))
    result = runner.invoke(templates, ["compile", str(mjml)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: {mjml}:{line}: Jinja syntax error: unexpected '}}'\n"


def test_links_default_to_the_servers_own_url(runner, monkeypatch) -> None:
    """``rapport serve`` answers on PUBLIC_URL's default; the CLI's links must point there."""
    from api.config import DEFAULTS
    from engine.render.cli import _renderer

    monkeypatch.delenv("RAPPORT_PUBLIC_URL")
    assert DEFAULTS["PUBLIC_URL"] == "http://localhost:8000"
    assert _renderer().links.base_url == DEFAULTS["PUBLIC_URL"]


def test_render_with_a_model_trained_without_a_catalog_names_the_cause(runner, tmp_path) -> None:
    interactions = tmp_path / "interactions.csv"
    with gzip.open(DEMO / "interactions.csv.gz", "rt", newline="") as source:
        rows = list(csv.reader(source))
    interactions.write_text("\n".join(",".join(row) for row in rows[:2000]) + "\n")
    model_dir = tmp_path / "model"
    trained = runner.invoke(
        train,
        ["--interactions", str(interactions), "--algorithm", "popular",
         "--model-dir", str(model_dir)],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    args = ["render", "win-back", "--user", rows[1][0], "--model-dir", str(model_dir)]
    result = runner.invoke(templates, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no recommendations" not in result.stderr
    assert f"the model in {model_dir} has no catalog" in result.stderr
    assert "--catalog" in result.stderr
