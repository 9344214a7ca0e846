from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

import engine.artifact as artifact
from engine.artifact import (
    current_version,
    list_versions,
    load_recommender,
    publish,
    read_meta,
    save_recommender,
)
from engine.interactions import Interactions
from engine.serving import Recommender
from engine.training import train
from fatigue.errors import ConfigurationError, NotFoundError, ValidationError

from .conftest import small_config


@pytest.fixture(scope="module")
def trained(interactions: Interactions) -> Recommender:
    return train(interactions, small_config())


def test_round_trip_serves_identically(
    tmp_path: Path, trained: Recommender, catalog_csv: Path
) -> None:
    version = save_recommender(trained, tmp_path, catalog_csv)
    assert current_version(tmp_path) == version
    loaded = load_recommender(tmp_path)
    assert loaded.version == version and loaded.catalog is not None and len(loaded.catalog) == 30
    for user in ("u0-00", "u2-19", "someone-new"):
        assert loaded.recommend(user, 5) == trained.recommend(user, 5)
    meta = read_meta(tmp_path)
    assert meta["algorithm"] == "als" and meta["params"]["factors"] == 8
    assert meta["data_window"]["interactions"] == 360 and "cf" in meta["calibration"]


@pytest.mark.parametrize("name", ["catalog.csv.gz", "items.JSONL"])
def test_a_catalog_in_any_readable_format_is_kept_readable(
    tmp_path: Path, trained: Recommender, catalog_csv: Path, name: str
) -> None:
    """The copy kept with the model keeps its format: a gzip copy named .csv was unreadable."""
    rows = list(csv.DictReader(catalog_csv.read_text().splitlines()))
    source = tmp_path / name
    if name.endswith(".gz"):
        source.write_bytes(gzip.compress(catalog_csv.read_bytes()))
    else:
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    save_recommender(trained, tmp_path / "model", source)
    loaded = load_recommender(tmp_path / "model")
    assert loaded.catalog is not None and len(loaded.catalog) == len(rows) == 30


def test_publish_rolls_back_and_prunes(tmp_path: Path, trained: Recommender) -> None:
    first = save_recommender(trained, tmp_path)
    second = save_recommender(trained, tmp_path)
    assert current_version(tmp_path) == second and list_versions(tmp_path) == [first, second]
    publish(tmp_path, first)
    assert load_recommender(tmp_path).version == first
    for _ in range(3):
        save_recommender(trained, tmp_path, keep=1)
    assert len(list_versions(tmp_path)) == 2  # the published one plus one spare


def test_failed_write_leaves_the_published_model_untouched(
    tmp_path: Path, trained: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = save_recommender(trained, tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifact, "_save_npz", disk_full)
    expected = f"could not save the model in {tmp_path}: No space"
    with pytest.raises(ConfigurationError, match=expected):
        save_recommender(trained, tmp_path)
    assert current_version(tmp_path) == good
    assert list_versions(tmp_path) == [good]
    assert not [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".")]


def test_missing_and_unknown_versions(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no published model"):
        load_recommender(tmp_path)
    with pytest.raises(NotFoundError):
        publish(tmp_path, "nope")
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(NotFoundError):
        load_recommender(tmp_path)


def test_arrays_load_without_pickle(tmp_path: Path, trained: Recommender) -> None:
    version = save_recommender(trained, tmp_path)
    model_file = tmp_path / "versions" / version / "model.npz"
    np.savez(
        model_file, user_factors=np.array([object()], dtype=object), item_factors=np.zeros((1, 1))
    )
    with pytest.raises(ValidationError, match="allow_pickle"):
        load_recommender(tmp_path)


@pytest.mark.parametrize(
    "damage",
    ["cut model", "drop data", "empty meta", "short user factors", "short item factors"],
)
def test_a_damaged_version_is_refused_by_name_not_served(
    tmp_path: Path, trained: Recommender, damage: str
) -> None:
    """A copy cut short or arrays that disagree must not load: it would fail every request."""
    version = save_recommender(trained, tmp_path)
    folder = tmp_path / "versions" / version
    if damage == "cut model":
        (folder / "model.npz").write_bytes((folder / "model.npz").read_bytes()[:200])
    elif damage == "drop data":
        (folder / "data.npz").unlink()
    elif damage == "empty meta":
        (folder / "meta.json").write_text("")
    else:
        with np.load(folder / "model.npz") as arrays:
            parts = dict(arrays)
        key = "user_factors" if damage == "short user factors" else "item_factors"
        parts[key] = parts[key][:3]
        np.savez(folder / "model.npz", **parts)
    with pytest.raises(ValidationError, match=f"{version}.*damaged model version"):
        load_recommender(tmp_path)


def test_pointer_swap_is_atomic(
    tmp_path: Path, trained: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pointer is replaced, never rewritten in place."""
    save_recommender(trained, tmp_path)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(artifact.os, "replace", spy)
    version = save_recommender(trained, tmp_path)
    assert replaced[0][0].startswith(".staging-") and replaced[0][1] == version
    assert replaced[1][0].startswith(".pointer-") and replaced[1][1] == "CURRENT"
    assert (
        json.loads((tmp_path / "versions" / version / "meta.json").read_text())["version"]
        == version
    )


def test_a_published_version_is_readable_by_another_user(
    tmp_path: Path, trained: Recommender
) -> None:
    """The trainer and the server are often different accounts: modes follow the umask."""
    old = os.umask(0o022)
    try:
        version = save_recommender(trained, tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "CURRENT").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "versions" / version).stat().st_mode & 0o777 == 0o755


def test_staging_left_by_a_crashed_save_is_cleared_by_a_later_one(
    tmp_path: Path, trained: Recommender
) -> None:
    versions = tmp_path / "versions"
    abandoned, fresh = versions / ".staging-crashed", versions / ".staging-in-progress"
    for folder in (abandoned, fresh):
        folder.mkdir(parents=True)
        (folder / "model.npz").write_bytes(b"half written")
    os.utime(abandoned, (0, 0))  # left by a save two days ago (the epoch, here)
    save_recommender(trained, tmp_path)
    assert not abandoned.exists() and fresh.exists()  # another save may be writing that one


@pytest.mark.parametrize(
    ("array", "bad", "named"),
    [
        ("item_factors", np.nan, "model.npz item_factors"),
        ("user_factors", np.inf, "model.npz user_factors"),
        ("trending", np.nan, "data.npz trending"),
    ],
)
def test_a_model_with_non_finite_values_is_not_published(
    tmp_path: Path, interactions: Interactions, array: str, bad: float, named: str
) -> None:
    """NaN scores never rank: such a model would answer every customer with a short list."""
    good = save_recommender(train(interactions, small_config()), tmp_path)
    broken = train(interactions, small_config())
    if array == "trending":
        broken.trending.flat[:2] = bad
    else:
        arrays = {name: values.copy() for name, values in broken.model.arrays().items()}
        arrays[array].flat[:2] = bad
        broken.model.load_arrays(arrays)
    expected = f"{tmp_path}: refusing to publish this model: {named} holds 2 non-finite"
    with pytest.raises(ValidationError, match=expected):
        save_recommender(broken, tmp_path)
    assert current_version(tmp_path) == good and list_versions(tmp_path) == [good]


def nan_factors_published(model_dir: Path, trained: Recommender) -> str:
    """Publish a version whose item factors hold NaN, as a trainer elsewhere could write it."""
    version = save_recommender(trained, model_dir)
    model_file = model_dir / "versions" / version / "model.npz"
    with np.load(model_file) as arrays:
        parts = dict(arrays)
    parts["item_factors"][3, 0] = np.nan
    np.savez(model_file, **parts)
    return version


def test_a_published_version_with_non_finite_factors_is_refused_at_load(
    tmp_path: Path, trained: Recommender
) -> None:
    version = nan_factors_published(tmp_path, trained)
    expected = f"{version}: damaged model version: model.npz item_factors holds 1 non-finite"
    with pytest.raises(ValidationError, match=expected):
        load_recommender(tmp_path)


def test_a_server_keeps_its_model_and_counts_the_failure_when_factors_are_not_finite(
    tmp_path: Path, trained: Recommender
) -> None:
    """Through the API's reload path: the version before keeps serving, the failure counted."""
    from api.metrics import MODEL_LOAD_FAILURES
    from api.model import ModelHolder

    good = save_recommender(trained, tmp_path)
    holder = ModelHolder(tmp_path, Recommender.load)
    failures = MODEL_LOAD_FAILURES._value.get()
    nan_factors_published(tmp_path, trained)
    assert holder.reload_now() is True  # it tried
    assert holder.model.version == good
    assert MODEL_LOAD_FAILURES._value.get() == failures + 1
    restarted = ModelHolder(tmp_path, Recommender.load)  # a worker started after it
    assert restarted.model.version == good
    assert MODEL_LOAD_FAILURES._value.get() == failures + 2
