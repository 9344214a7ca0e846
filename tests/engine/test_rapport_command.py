"""The root ``rapport`` command: version, configuration file for every command, clean errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version_and_help_are_rapports_own(runner: CliRunner) -> None:
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == "rapport, version 0.1.0"
    helped = runner.invoke(main, ["--help"]).output
    assert "--app" not in helped and "--debug" not in helped and "--env-file" not in helped


def test_every_command_reads_the_configuration_file(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    config = tmp_path / "rapport.toml"
    config.write_text(f'model_dir = "{tmp_path / "configured-model"}"\n')
    env = {"RAPPORT_CONFIG": str(config), "RAPPORT_MODEL_DIR": None}
    trained = runner.invoke(main, ["train", "--interactions", str(interactions_csv)], env=env)
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "configured-model" / "CURRENT").exists()  # where `serve` will look
    picked = runner.invoke(main, ["recommend", "--user", "u0-00", "--n", "2"], env=env)
    assert picked.exit_code == 0 and picked.output.count("\n") == 3, picked.output
    assert "RAPPORT_MODEL_DIR" not in os.environ  # set for the command only
    variable_wins = {**env, "RAPPORT_MODEL_DIR": str(tmp_path / "elsewhere")}
    missing = runner.invoke(main, ["recommend", "--user", "u0-00"], env=variable_wins)
    assert missing.exit_code == 1 and "elsewhere" in missing.output


def test_a_bad_configuration_file_is_one_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "rapport.toml"
    for text, expected in (
        ('track_clicks = "ture"\n', "[track_clicks]: 'ture' is not a valid track_clicks"),
        ("modle_dir = 'x'\n", "[modle_dir]: unknown setting"),
    ):
        config.write_text(text)
        result = runner.invoke(main, ["keys", "list"], env={"RAPPORT_CONFIG": str(config)})
        assert result.exit_code == 1 and expected in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.output.count(str(config)) == 1  # named once, not twice
    config.write_text("track_clicks = true\n")
    assert runner.invoke(main, ["keys", "list"], env={"RAPPORT_CONFIG": str(config)}).exit_code == 0
    bad_variable = runner.invoke(main, ["keys", "list"], env={"RAPPORT_MAX_BATCH_BYTES": "abc"})
    assert bad_variable.exit_code == 1 and "RAPPORT_MAX_BATCH_BYTES" in bad_variable.output
    assert isinstance(bad_variable.exception, SystemExit)


def test_a_file_that_cannot_be_written_is_named_not_a_traceback(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    model_dir = tmp_path / "model"
    args = ["train", "--interactions", str(interactions_csv), "--model-dir", str(model_dir)]
    assert runner.invoke(main, args).exit_code == 0
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "picks.csv"
    result = runner.invoke(main, ["recommend", "--model-dir", str(model_dir), "--user", "u0-00",
                                  "--output", str(target)])  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{target}: Not a directory" in result.output


def test_serve_refuses_impossible_options(runner: CliRunner) -> None:
    for option, value in (("--port", "99999"), ("--workers", "0"), ("--threads", "0")):
        result = runner.invoke(main, ["serve", option, value])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("value", ["-5", "nan", "inf"])
def test_a_half_life_must_be_a_finite_number_of_days(
    runner: CliRunner, interactions_csv: Path, value: str
) -> None:
    args = ["train", "--interactions", str(interactions_csv), "--half-life", value]
    result = runner.invoke(main, args)
    assert result.exit_code == 2 and "Invalid value for '--half-life'" in result.output


def test_an_error_without_a_file_has_no_blank_where_the_file_would_be(
    runner: CliRunner, interactions_csv: Path
) -> None:
    args = ["train", "--interactions", str(interactions_csv), "--columns", "user_id"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and result.output.startswith("error: [columns]: ")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RAPPORT_TRACK_CLICKS", "ture"), ("RAPPORT_SENDER", "a@x.example, b@x.example")],
)
def test_a_bad_variable_stops_every_command_not_only_serve(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path, variable: str, value: str
) -> None:
    """train, recommend and templates ran on with a setting the server would refuse."""
    env = {variable: value, "RAPPORT_MODEL_DIR": str(tmp_path / "model")}
    for command in (["train", "--interactions", str(interactions_csv)],
                    ["templates", "validate", "picked-for-you"]):  # fmt: skip
        result = runner.invoke(main, command, env=env)
        assert result.exit_code == 1 and variable in result.output, result.output
        assert not (tmp_path / "model").exists()
