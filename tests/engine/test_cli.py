from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.artifact import current_version, read_meta
from engine.cli import datasets, evaluate, recommend, train


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


SMALL = ["--half-life", "0", "--seed", "1"]


def test_train_then_recommend_one_and_all(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path, catalog_csv: Path
) -> None:
    model_dir = tmp_path / "model"
    result = runner.invoke(
        train,
        [
            "--interactions",
            str(interactions_csv),
            "--catalog",
            str(catalog_csv),
            "--model-dir",
            str(model_dir),
            *SMALL,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "published" in result.stdout and current_version(model_dir)
    assert read_meta(model_dir)["params"]["seed"] == 1

    one = runner.invoke(recommend, ["--model-dir", str(model_dir), "--user", "u0-00", "--n", "3"])
    assert one.exit_code == 0, one.output
    rows = list(csv.DictReader(one.stdout.splitlines()))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["source"] == "cf"
    assert set(rows[0]) == {"user_id", "item_id", "rank", "score", "relevance", "source"}

    out = tmp_path / "all.csv"
    every = runner.invoke(
        recommend, ["--model-dir", str(model_dir), "--all-users", "--n", "2", "--output", str(out)]
    )
    assert every.exit_code == 0, every.output
    written = list(csv.DictReader(out.read_text().splitlines()))
    assert len(written) == 60 * 2
    history = {(u, i) for u, i, *_ in csv.reader(interactions_csv.read_text().splitlines())}
    assert not [r for r in written if (r["user_id"], r["item_id"]) in history]


def test_recommend_leaves_out_what_cannot_be_offered_unless_asked(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    """Out of stock, expired, or not in the catalog: the API drops these, and so does the CLI."""
    catalog = tmp_path / "catalog.csv"
    rows = ["item_id,title,category,in_stock,expires_at"]
    for index in range(30):
        if index != 15:  # i-15 is bought but missing from the catalog
            expires = "2020-01-01T00:00:00Z" if index == 7 else ""
            rows.append(f"i-{index:02d},Item {index},cat{index // 10},{index != 5},{expires}")
    catalog.write_text("\n".join(rows) + "\n")
    model_dir = str(tmp_path / "model")
    trained = runner.invoke(
        train,
        ["--interactions", str(interactions_csv), "--catalog", str(catalog),
         "--model-dir", model_dir, *SMALL],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    unavailable = {"i-05", "i-07", "i-15"}
    everyone = ["--model-dir", model_dir, "--all-users", "--n", "30"]
    for args in (everyone, ["--model-dir", model_dir, "--user", "u0-01", "--user", "new"]):
        offered = runner.invoke(recommend, args)
        assert offered.exit_code == 0, offered.output
        picks = {row["item_id"] for row in csv.DictReader(offered.stdout.splitlines())}
        assert picks and not picks & unavailable, args
    kept = runner.invoke(recommend, [*everyone, "--include-unavailable"])
    assert kept.exit_code == 0, kept.output
    assert {row["item_id"] for row in csv.DictReader(kept.stdout.splitlines())} >= unavailable


@pytest.mark.parametrize("algorithm", ["als", "bpr", "itemknn", "popular"])
def test_every_algorithm_trains_from_the_cli(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path, algorithm: str
) -> None:
    result = runner.invoke(
        train,
        [
            "--interactions",
            str(interactions_csv),
            "--model-dir",
            str(tmp_path),
            "--algorithm",
            algorithm,
            *SMALL,
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_meta(tmp_path)["algorithm"] == algorithm


def test_malformed_file_is_a_clean_error_and_writes_no_model(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "user_id,item_id,timestamp,event\nu1,a,2024-01-01T00:00:00Z,purchase\n"
        "u2,b,not-a-date,purchase\n"
    )
    model_dir = tmp_path / "model"
    result = runner.invoke(train, ["--interactions", str(bad), "--model-dir", str(model_dir)])
    assert result.exit_code == 1
    assert f"error: {bad}:3 [timestamp]: unparsable timestamp 'not-a-date'" in result.stderr
    assert "Traceback" not in result.output
    assert not model_dir.exists()


def test_evaluate_table_and_json(runner: CliRunner, interactions_csv: Path) -> None:
    table = runner.invoke(
        evaluate, ["--interactions", str(interactions_csv), "--random", "0.3", "--k", "5", *SMALL]
    )
    assert table.exit_code == 0, table.output
    assert "ndcg@5" in table.stdout and "popular (baseline)" in table.stdout
    assert "trending (baseline)" in table.stdout
    assert "nDCG@5 vs popularity: " in table.stdout and "nDCG@5 vs trending: " in table.stdout
    as_json = runner.invoke(
        evaluate, ["--interactions", str(interactions_csv), "--last-days", "15", "--json", *SMALL]
    )
    report = json.loads(as_json.stdout)
    names = ["als", "popular (baseline)", "trending (baseline)"]
    assert [r["model"] for r in report["results"]] == names
    assert 0 <= report["results"][0]["ndcg"] <= 1 and report["test_customers"] > 0


@pytest.mark.parametrize("fraction", ["0", "1"])
def test_evaluate_refuses_a_random_split_holding_out_nothing_or_everything(
    runner: CliRunner, interactions_csv: Path, fraction: str
) -> None:
    arguments = ["--interactions", str(interactions_csv), "--random", fraction]
    result = runner.invoke(evaluate, arguments)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"test fraction must be between 0 and 1, got {float(fraction)}" in result.stderr


def test_evaluate_with_tuning_and_a_test_file(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    lines = interactions_csv.read_text().splitlines()
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    train_file.write_text("\n".join(lines[:300]) + "\n")
    test_file.write_text("\n".join([lines[0], *lines[300:]]) + "\n")
    result = runner.invoke(
        evaluate,
        [
            "--interactions",
            str(train_file),
            "--test",
            str(test_file),
            "--tune",
            "--trials",
            "3",
            "--json",
            *SMALL,
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tuning"]["trials"] == 3 and report["split"].startswith("test file")


def test_evaluate_needs_exactly_one_split(runner: CliRunner, interactions_csv: Path) -> None:
    result = runner.invoke(evaluate, ["--interactions", str(interactions_csv)])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_recommend_usage_and_missing_model(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(recommend, ["--model-dir", str(tmp_path)]).exit_code == 2
    missing = runner.invoke(recommend, ["--model-dir", str(tmp_path), "--user", "x"])
    assert missing.exit_code == 1 and "no published model" in missing.stderr


def test_column_mapping_from_the_cli(runner: CliRunner, tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    rows = ["Customer,SKU,When"] + [
        f"c{u},s{(u + k) % 7},2024-01-0{1 + k}T00:00:00Z" for u in range(12) for k in range(4)
    ]
    orders.write_text("\n".join(rows) + "\n")
    result = runner.invoke(
        train,
        [
            "--interactions",
            str(orders),
            "--columns",
            "user_id=Customer,item_id=SKU,timestamp=When",
            "--default-event",
            "purchase",
            "--model-dir",
            str(tmp_path / "m"),
            "--algorithm",
            "itemknn",
        ],
    )
    assert result.exit_code == 0, result.output


def test_datasets_converter(runner: CliRunner, tmp_path: Path) -> None:
    raw = tmp_path / "retail.csv"
    raw.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,UK\n"
        "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,UK\n"
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,UK\n"
    )
    result = runner.invoke(datasets, ["online-retail", str(raw), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 purchases" in result.stdout
    catalog = list(csv.DictReader((tmp_path / "out" / "catalog.csv").read_text().splitlines()))
    assert catalog[0]["category"] == "candles-and-lights" and catalog[0]["price"] == "2.55"


@pytest.mark.parametrize(
    ("date", "price", "column", "message"),
    [
        ("2010-12-01 08:28:00", "abc", "UnitPrice", "'abc' is not a price"),
        ("2010-12-01 08:28:00", "-1.5", "UnitPrice", "'-1.5' is not a price"),
        ("2010-12-01 08:28:00", "nan", "UnitPrice", "'nan' is not a price"),
        ("yesterday", "1.85", "InvoiceDate", "unparsable InvoiceDate 'yesterday': expected"),
        ("12/1/2010 8:28", "1.85", "InvoiceDate", "unparsable InvoiceDate '12/1/2010 8:28'"),
        (
            "2099-12-01 08:28:00",
            "1.85",
            "InvoiceDate",
            "InvoiceDate '2099-12-01 08:28:00' is outside",
        ),
    ],
)
def test_a_retail_row_with_no_price_or_no_moment_is_refused_at_conversion(
    runner: CliRunner, tmp_path: Path, date: str, price: str, column: str, message: str
) -> None:
    """Named by file, line and column: a bad price was a bare traceback, a bad date became
    ``yesterdayZ`` and failed only at ``train``."""
    raw = tmp_path / "retail.csv"
    raw.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,UK\n"
        f"536366,22633,HAND WARMER UNION JACK,6,{date},{price},17850.0,UK\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(datasets, ["online-retail", str(raw), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {raw}:3 [{column}]: {message}" in result.stderr
    assert not out.exists()


def test_demo_model_trains_once_on_the_bundled_data_then_is_reused(tmp_path: Path) -> None:
    from engine.demo import DEMO_CUSTOMERS, ensure_demo_model

    first = ensure_demo_model(tmp_path)
    version = current_version(tmp_path)
    assert version and first.catalog is not None
    for customer in DEMO_CUSTOMERS:  # the customers the demo shows are in the sample
        assert customer in first.users
        assert first.recommend(customer, 3)[0].source.value == "cf"
    assert ensure_demo_model(tmp_path).version == version


def test_training_that_would_publish_a_model_of_zeros_stops_first(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    """A row from the future (recency counts back from the newest) or a weight of 0 or less."""
    model_dir = tmp_path / "model"
    future = tmp_path / "future.csv"
    future.write_text(interactions_csv.read_text() + "u0-00,i-00,2099-01-01T00:00:00Z,purchase,1\n")
    lines = len(interactions_csv.read_text().splitlines()) + 1
    ahead = runner.invoke(train, ["--interactions", str(future), "--model-dir", str(model_dir)])
    assert ahead.exit_code == 1
    assert f"future.csv:{lines} [timestamp]: timestamp '2099-01-01T00:00:00Z' is outside" in (
        ahead.output
    )
    for weight in ("purchase=0", "purchase=-1", "view=nan"):
        refused = runner.invoke(
            train,
            ["--interactions", str(interactions_csv), "--model-dir", str(model_dir),
             "--event-weight", weight],
        )  # fmt: skip
        assert refused.exit_code == 2 and "positive number" in refused.output, weight
    assert current_version(model_dir) is None  # nothing was published


def test_a_model_directory_that_cannot_be_written_is_refused_before_training(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = runner.invoke(
        train, ["--interactions", str(interactions_csv), "--model-dir", str(blocker / "model")]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write models to {blocker / 'model'}: {blocker} is not a directory" in (
        result.stderr
    )


def test_a_header_naming_a_column_twice_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,item_id,timestamp,event,user_id\nu1,a,2024-01-01T00:00:00Z,view,u9\n")
    model_dir = str(tmp_path / "m")
    result = runner.invoke(train, ["--interactions", str(twice), "--model-dir", model_dir])
    assert result.exit_code == 1 and "column(s) named twice: user_id" in result.stderr


@pytest.mark.parametrize("args", [["--last-days", "nan"], ["--last-days", "1e10"],
                                  ["--cutoff", "99999999999999999999"]])  # fmt: skip
def test_impossible_evaluation_windows_are_named(
    runner: CliRunner, interactions_csv: Path, args: list[str]
) -> None:
    result = runner.invoke(evaluate, ["--interactions", str(interactions_csv), *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert args[0].lstrip("-").replace("-", " ") in result.stderr.replace("-", " ")


def test_a_retail_export_cut_short_is_named_not_aborted(runner: CliRunner, tmp_path: Path) -> None:
    cut = tmp_path / "retail.csv.gz"
    whole = gzip.compress(b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,"
                          b"CustomerID,Country\n" + b"536365,85123A,MUG,6,2010-12-01 08:26,2.55,"
                          b"17850,UK\n" * 2000)  # fmt: skip
    cut.write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(datasets, ["online-retail", str(cut), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Aborted" not in result.output
    assert f"{cut}: unreadable file" in result.stderr


@pytest.mark.parametrize(
    ("command", "args", "named"),
    [
        (recommend, ["--user", "u0-00", "--n", "0"], "--n"),
        (evaluate, ["--k", "0"], "--k"),
        (train, ["--tune", "--trials", "-5"], "--trials"),
    ],
)
def test_impossible_counts_name_their_option_and_print_nothing_else(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path, command, args, named
) -> None:
    base = ["--model-dir", str(tmp_path)] if command is recommend else [
        "--interactions", str(interactions_csv)
    ]  # fmt: skip
    result = runner.invoke(command, [*base, *args])
    assert result.exit_code == 2 and named in result.stderr
    assert result.stdout == ""  # no CSV header before the error


def test_converter_categories_match_whole_words() -> None:
    from engine.datasets import category_of

    assert category_of("VINTAGE NOTEBOOK PARIS DAYS") == "stationery"  # not "TAG" in VINTAGE
    assert category_of("CHATEAU DESIGN BOX") != "kitchen"  # not "TEA" in CHATEAU
    assert category_of("RED HANDBAG") == "bags" and category_of("GIFT TAGS") == "cards-and-wrap"
    assert category_of("WHITE HANGING HEART T-LIGHT HOLDER") == "candles-and-lights"


def test_training_on_too_short_a_history_warns_that_relevance_is_zero(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "short.csv"
    rows = [f"u{n % 7},i{n % 11},2024-03-0{1 + n % 5}T10:00:00Z,purchase,1" for n in range(60)]
    path.write_text("user_id,item_id,timestamp,event,value\n" + "\n".join(rows) + "\n")
    result = runner.invoke(train, ["--interactions", str(path), "--model-dir", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "warning: relevance not calibrated" in result.output and "min_relevance" in result.output


def test_a_catalog_that_matches_no_interaction_is_warned_about(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title\nX1,Nobody bought this\nX2,Nor this\n")
    args = ["--interactions", str(interactions_csv), "--catalog", str(catalog),
            "--model-dir", str(tmp_path / "m")]  # fmt: skip
    result = runner.invoke(train, args)
    assert result.exit_code == 0, result.output
    assert "0 of 2 catalog items appear in the interactions" in result.output


def _logged(user: str, item: str, when: str, event_id: object) -> str:
    row = {"user_id": user, "item_id": item, "timestamp": when, "event": "purchase",
           "value": 1.0, "event_id": event_id}  # fmt: skip
    return json.dumps(row) + "\n"


def test_training_reads_history_plus_the_event_log_directory(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    """The next training run: the history file and EVENT_LOG_DIR, a retry logged twice once."""
    log_dir = tmp_path / "events"
    log_dir.mkdir()
    (log_dir / "interactions-2024-03-01.jsonl").write_text(
        _logged("new-1", "i-00", "2024-03-01T10:00:00Z", "e1")
        + _logged("new-1", "i-01", "2024-03-01T23:59:59Z", "e2")
    )
    (log_dir / "interactions-2024-03-02.jsonl").write_text(  # the batch retried after midnight
        _logged("new-1", "i-01", "2024-03-01T23:59:59Z", "e2")
    )
    (log_dir / "events-2024-03-01.jsonl").write_text("not read by training\n")
    model_dir = tmp_path / "model"
    history = len(interactions_csv.read_text().splitlines()) - 1
    result = runner.invoke(train, ["--interactions", str(interactions_csv),
                                   "--interactions", str(log_dir), "--model-dir", str(model_dir),
                                   *SMALL])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"loaded {history + 2:,} interactions from" in result.stderr
    assert "(3 file(s))" in result.stderr
    assert read_meta(model_dir)["data_window"]["users"] == 61  # the 60 known ones and new-1


def test_a_log_directory_without_interaction_files_is_a_clear_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(train, ["--interactions", str(tmp_path), "--model-dir",
                                   str(tmp_path / "model")])  # fmt: skip
    assert result.exit_code == 1
    assert f"{tmp_path}: no interactions-*.jsonl files in this directory" in result.stderr


def test_a_damaged_event_id_names_its_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    damaged = tmp_path / "interactions-2024-03-01.jsonl"
    damaged.write_text(
        _logged("u1", "a", "2024-03-01T10:00:00Z", "e1")
        + _logged("u1", "b", "2024-03-01T10:01:00Z", ["x"])
    )
    result = runner.invoke(train, ["--interactions", str(damaged), "--model-dir",
                                   str(tmp_path / "model")])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{damaged}:2 [event_id]: expected a string, got list" in result.stderr


def test_old_history_beside_fresh_events_is_not_published_unless_forced(
    runner: CliRunner, tmp_path: Path, interactions_csv: Path
) -> None:
    """Decay counts back from the newest row: one fresh event makes old history weigh ~0."""
    from engine.artifact import current_version

    fresh = tmp_path / "interactions-2026-11-01.jsonl"
    fresh.write_text(_logged("new-1", "i-00", "2026-11-01T10:00:00Z", "e1"))
    model_dir = str(tmp_path / "model")
    current = runner.invoke(train, ["--interactions", str(interactions_csv), "--model-dir",
                                    model_dir, "--seed", "1"])  # fmt: skip
    assert current.exit_code == 0 and "weighs" not in current.stderr
    serving = current_version(model_dir)
    both = ["--interactions", str(interactions_csv), "--interactions", str(fresh)]
    result = runner.invoke(train, [*both, "--model-dir", model_dir, "--seed", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not published: 60 of 61 customers' history weighs almost nothing at a 30-day" in (
        result.stderr
    )
    assert "--force publishes it anyway" in result.stderr
    assert current_version(model_dir) == serving  # the model in service stays
    forced = runner.invoke(train, [*both, "--model-dir", model_dir, "--seed", "1", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "warning: 60 of 61 customers' history weighs almost nothing" in forced.stderr
    assert current_version(model_dir) != serving


def test_a_blank_customer_id_is_refused_not_answered_with_anonymous_picks(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(recommend, ["--model-dir", str(tmp_path), "--user", " "])
    assert result.exit_code == 2 and "a customer id cannot be blank" in result.output


def test_a_long_shop_history_with_churned_customers_is_published_with_a_warning(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Customers who left fade too; a history running up to today is not an old file."""
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(3)
    start = datetime(2024, 12, 1, tzinfo=UTC)
    rows = ["user_id,item_id,timestamp,event,value"]
    for n in range(300):  # each customer shops for a month somewhere in two years
        month = start + timedelta(days=30 * (n % 24))
        for _ in range(4):
            when = month + timedelta(days=rng.random() * 28)
            rows.append(f"c{n},i-{rng.randrange(30):02d},{when:%Y-%m-%dT%H:%M:%SZ},purchase,1")
    shop = tmp_path / "shop.csv"
    shop.write_text("\n".join(rows) + "\n")
    model_dir = tmp_path / "model"
    result = runner.invoke(
        train, ["--interactions", str(shop), "--model-dir", str(model_dir), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "customers' history weighs almost nothing" in result.stderr  # said, not refused
    assert current_version(str(model_dir)) is not None
