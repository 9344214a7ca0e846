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
    assert shown and all(title in titles for title in shown)
    assert "Pink Regency Teacup" not in text  # not the sample's items
