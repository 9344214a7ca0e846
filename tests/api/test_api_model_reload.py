"""The served model follows the published pointer without dropping requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from api import create_app
from api.model import ModelHolder
from engine.artifact import current_version, publish
from engine.serving import Recommender
from fatigue.errors import ConfigurationError, ValidationError


@pytest.fixture
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def second_version(directory: Path) -> str:
    """Publish a copy of the current version under a new name (as a retrain would)."""
    current = current_version(directory)
    assert current is not None
    shutil.copytree(directory / "versions" / current, directory / "versions" / "v-next")
    publish(directory, "v-next")
    return "v-next"


def test_a_published_version_is_loaded_in_the_background(model_copy: Path):
    clock = [0.0]
    holder = ModelHolder(model_copy, Recommender.load, interval=5.0, monotonic=lambda: clock[0])
    first = holder.model
    new = second_version(model_copy)
    assert holder.model is first  # not checked again before the interval
    clock[0] = 6.0
    served_meanwhile = holder.model  # starts the reload; this request still gets a model
    assert served_meanwhile.version in {first.version, new}
    holder._loading.join(timeout=30)  # type: ignore[union-attr]
    assert holder.model.version == new


def test_a_broken_version_keeps_the_old_one_serving(model_copy: Path, caplog):
    holder = ModelHolder(model_copy, Recommender.load, interval=0.0)
    first = holder.model
    (model_copy / "versions" / "broken").mkdir()
    (model_copy / "versions" / "broken" / "meta.json").write_text("{}")
    publish(model_copy, "broken")
    assert holder.reload_now() is True  # it tried
    assert holder.model is first
    assert "could not load" in caplog.text


def test_a_worker_started_after_a_broken_publication_serves_the_last_good_version(
    model_copy: Path, caplog
):
    """gunicorn stops every worker when one fails to boot: a restarted one must not fail."""
    good = current_version(model_copy)
    (model_copy / "versions" / "zz-broken").mkdir()
    (model_copy / "versions" / "zz-broken" / "meta.json").write_text("{}")
    publish(model_copy, "zz-broken")
    holder = ModelHolder(model_copy, Recommender.load)
    assert holder.model.version == good
    assert "zz-broken" in caplog.text and f"serving {good}" in caplog.text
    (model_copy / "versions" / good / "data.npz").unlink()  # nothing loads any more
    with pytest.raises(ValidationError, match="unsupported artifact format"):  # the published one's
        ModelHolder(model_copy, Recommender.load)


def test_after_a_rollback_a_restarted_worker_falls_back_to_what_was_published_before(
    model_copy: Path, caplog
):
    """The newest version by name was rolled back: a worker must not serve it again."""
    good = current_version(model_copy)
    assert good is not None
    rolled_back = second_version(model_copy)  # "v-next", newer than the good one by name
    publish(model_copy, good)  # rolled back
    (model_copy / "versions" / "zz-broken").mkdir()
    (model_copy / "versions" / "zz-broken" / "meta.json").write_text("{}")
    publish(model_copy, "zz-broken")
    holder = ModelHolder(model_copy, Recommender.load)
    assert holder.model.version == good != rolled_back
    assert f"serving {good}" in caplog.text


def test_no_published_model_is_a_clear_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="rapport train"):
        ModelHolder(tmp_path, Recommender.load)


def test_recommendations_report_the_new_version(settings, auth, model_copy: Path):
    app = create_app({**settings, "MODEL_DIR": str(model_copy), "MODEL_RELOAD_INTERVAL": 0.0})
    client = app.test_client()
    before = client.post(
        "/v1/recommendations", json={"user_id": "12347"}, headers=auth("platform")
    ).json["model_version"]
    assert before == current_version(model_copy)
    new = second_version(model_copy)
    app.extensions["rapport"].get("model").reload_now()
    after = client.post(
        "/v1/recommendations", json={"user_id": "12347"}, headers=auth("platform")
    ).json["model_version"]
    assert after == new


def test_a_reload_in_a_settled_process_freezes_the_new_model_and_frees_the_old(model_copy: Path):
    import gc
    import weakref

    from api.heap import settle_heap

    holder = ModelHolder(model_copy, Recommender.load, interval=0.0)
    old = weakref.ref(holder.model)
    threshold = gc.get_threshold()
    settle_heap()
    try:
        second_version(model_copy)
        assert holder.reload_now()
        new = holder.model
        # Frozen objects belong to no generation: the collector no longer walks the new model.
        assert gc.is_tracked(new) and not any(found is new for found in gc.get_objects())
        # Frozen objects are never collected: the old model must go by reference counting
        # alone, so it must hold no reference cycles.
        assert old() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_cycles_frozen_in_flight_at_one_reload_are_collected_at_the_next():
    """A request's garbage frozen by a reload's freeze must not stay frozen for good."""
    import gc
    import weakref

    from api.heap import resettle_heap, settle_heap

    class Node:
        pass

    threshold = gc.get_threshold()
    settle_heap()
    try:
        in_flight = Node()
        in_flight.self = in_flight  # type: ignore[attr-defined]  # a cycle: only gc frees it
        gone = weakref.ref(in_flight)
        resettle_heap()  # a model reload while the request still holds it
        del in_flight  # the request ends
        gc.collect()
        assert gone() is not None  # frozen: the collector cannot see it
        resettle_heap()  # the next reload
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def half_copied(directory: Path) -> str:
    """Copy the current version as v-fixed, its factors cut short; return the current one."""
    current = current_version(directory)
    assert current is not None
    shutil.copytree(directory / "versions" / current, directory / "versions" / "v-fixed")
    factors = directory / "versions" / "v-fixed" / "model.npz"
    factors.write_bytes(factors.read_bytes()[:100])
    return current


def repair(directory: Path, source: str) -> None:
    """Copy the factors in again, as an operator finishing the copy would (not republished)."""
    shutil.copy(directory / "versions" / source / "model.npz", directory / "versions" / "v-fixed")


def test_a_version_repaired_in_place_is_loaded_at_the_next_retry(model_copy: Path, caplog):
    """An operator copies the missing files in; every worker must end up serving it."""
    from api.model import RETRY_FAILED

    clock = [0.0]
    holder = ModelHolder(model_copy, Recommender.load, interval=1.0, monotonic=lambda: clock[0])
    good = half_copied(model_copy)
    publish(model_copy, "v-fixed")
    clock[0] = 2.0
    assert holder.reload_now() is True and holder.model.version == good
    assert "could not load" in caplog.text
    repair(model_copy, good)
    clock[0] = 3.0 + RETRY_FAILED / 2
    assert holder.model.version == good  # a broken version is not read again on every check
    assert holder._loading is None
    clock[0] = 3.0 + RETRY_FAILED
    assert holder.model.version in {good, "v-fixed"}  # starts the retry in the background
    holder._loading.join(timeout=30)  # type: ignore[union-attr]
    assert holder.model.version == "v-fixed"


def test_a_worker_that_fell_back_retries_the_published_version(model_copy: Path, caplog):
    from api.model import RETRY_FAILED

    good = half_copied(model_copy)
    publish(model_copy, "v-fixed")  # a worker (re)starts while it is broken
    clock = [0.0]
    holder = ModelHolder(model_copy, Recommender.load, interval=1.0, monotonic=lambda: clock[0])
    assert holder.model.version == good and f"serving {good}" in caplog.text
    repair(model_copy, good)
    clock[0] = RETRY_FAILED
    assert holder.model.version in {good, "v-fixed"}  # starts the retry in the background
    holder._loading.join(timeout=30)  # type: ignore[union-attr]
    assert holder.model.version == "v-fixed"
