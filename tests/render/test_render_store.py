"""The template store contract, run against every backend, plus the file backend's concurrency."""

from __future__ import annotations

import multiprocessing
from itertools import pairwise
from pathlib import Path

import pytest

from engine.render.library import BundledLibrary
from engine.render.store import MemoryTemplateStore, TemplateStore
from engine.render.store_files import FileTemplateStore
from fatigue.errors import ConflictError, NotFoundError, ValidationError

BACKENDS = {
    "memory": pytest.param("memory", id="memory"),
    "file": pytest.param("file", id="file"),
}


def valid_files(subject: str = "Hello {{ recipient.user_id }}") -> dict[str, str]:
    source = BundledLibrary().source("win-back")
    files = dict(source.files)
    files["template.toml"] = files["template.toml"].replace(
        "{{ recipient.first_name|default('Hello', true) }}, it has been a while", subject
    )
    return files


@pytest.fixture(params=BACKENDS.values())
def store(request, tmp_path, clock) -> TemplateStore:
    if request.param == "memory":
        return MemoryTemplateStore(clock=clock)
    return FileTemplateStore(tmp_path / "store", clock=clock)


class TestStoreContract:
    def test_save_creates_numbered_immutable_versions(self, store, clock) -> None:
        first = store.save("win-back", valid_files("One"), "ann", "first")
        clock.advance(minutes=5)
        second = store.save("win-back", valid_files("Two"), "bob", "second")
        assert (first.version, second.version) == (1, 2)
        infos = store.versions("win-back")
        assert [(i.version, i.author, i.note) for i in infos] == [
            (1, "ann", "first"),
            (2, "bob", "second"),
        ]
        assert infos[1].created_at - infos[0].created_at == clock() - infos[0].created_at
        assert "One" in store.read("win-back", 1).files["template.toml"]
        assert store.read("win-back", 2).version == 2
        assert first.content_hash != second.content_hash

    def test_a_save_after_a_version_is_refused_once_another_followed_it(self, store) -> None:
        store.save("win-back", valid_files("One"), "ann", "first")
        assert store.save("win-back", valid_files("Two"), "bob", "b", after=1).version == 2
        with pytest.raises(ConflictError, match=r"version 2 of 'win-back' was saved by bob"):
            store.save("win-back", valid_files("Three"), "cy", "c", after=1)
        with pytest.raises(NotFoundError):
            store.save("win-back", valid_files("Four"), "cy", "c", after=9)
        assert [i.version for i in store.versions("win-back")] == [1, 2]
        assert store.save("win-back", valid_files("Five"), "cy", "c").version == 3  # no after

    def test_nothing_is_published_until_publish(self, store) -> None:
        store.save("win-back", valid_files(), "ann", "draft")
        assert store.publication("win-back") is None
        with pytest.raises(NotFoundError, match="no published version"):
            store.source("win-back")

    def test_publish_and_rollback(self, store) -> None:
        for subject in ("One", "Two", "Three"):
            store.save("win-back", valid_files(subject), "ann", subject)
        store.publish("win-back", 1, "ann")
        store.publish("win-back", 3, "bob")
        assert store.source("win-back").version == 3
        back = store.rollback("win-back", "carol")
        assert (back.version, back.published_by) == (1, "carol")
        assert "One" in store.source("win-back").files["template.toml"]
        with pytest.raises(NotFoundError, match="roll back"):
            store.rollback("win-back", "carol")
        assert store.read("win-back", 3).version == 3  # old versions stay readable

    def test_republishing_the_live_version_leaves_the_history_alone(self, store) -> None:
        for subject in ("One", "Two"):
            store.save("win-back", valid_files(subject), "ann", subject)
        store.publish("win-back", 1, "ann")
        store.publish("win-back", 2, "ann")
        again = store.publish("win-back", 2, "bob")  # still succeeds
        assert (again.version, again.previous) == (2, (1,))
        assert store.rollback("win-back", "carol").version == 1
        with pytest.raises(NotFoundError, match="roll back"):
            store.rollback("win-back", "carol")

    def test_publishing_an_unknown_version_fails_and_changes_nothing(self, store) -> None:
        store.save("win-back", valid_files(), "ann", "v1")
        store.publish("win-back", 1, "ann")
        with pytest.raises(NotFoundError):
            store.publish("win-back", 7, "ann")
        assert store.publication("win-back").version == 1

    def test_diff_between_versions(self, store) -> None:
        store.save("win-back", valid_files("One"), "ann", "v1")
        store.save("win-back", valid_files("Two"), "ann", "v2")
        diff = store.diff("win-back", 1, 2)
        assert "--- win-back/v1/template.toml" in diff
        assert '-subject = "One"' in diff and '+subject = "Two"' in diff
        assert "email.mjml" not in diff

    def test_save_refuses_invalid_templates_listing_every_problem(self, store) -> None:
        files = valid_files()
        files["email.mjml"] = (
            files["email.mjml"]
            .replace("{{ unsubscribe_url }}", "#")
            .replace("{{ offer.text }}", "{{ offer.txt }}")
            .replace('<mj-section padding="24px 16px 8px">', '<mj-section padding="{{ pad }}">')
        )
        files["email.txt"] = "{% if %}"
        with pytest.raises(ValidationError) as caught:
            store.save("win-back", files, "ann", "broken")
        found = {(p.source, p.line, p.field) for p in caught.value.problems}
        assert ("email.mjml", 25, "padding") in found
        assert ("email.mjml", 27, ".txt") in found
        assert ("email.mjml", None, "unsubscribe_url") in found
        assert ("email.txt", 1, None) in found
        with pytest.raises(NotFoundError):
            store.versions("win-back")

    def test_unknown_names_and_versions(self, store) -> None:
        with pytest.raises(NotFoundError):
            store.versions("nope")
        store.save("win-back", valid_files(), "ann", "v1")
        with pytest.raises(NotFoundError):
            store.read("win-back", 2)
        with pytest.raises(ValidationError):
            store.save("../escape", valid_files(), "ann", "x")
        assert store.names() == ["win-back"]


def test_file_store_seeds_the_bundle_once(tmp_path) -> None:
    bundle = BundledLibrary()
    first = FileTemplateStore(tmp_path, seed=bundle)
    assert first.names() == bundle.names()
    assert first.source("win-back").files == bundle.source("win-back").files
    first.save("win-back", valid_files("Changed"), "ann", "edit")
    first.publish("win-back", 2, "ann")
    again = FileTemplateStore(tmp_path, seed=bundle)  # a restart, or another worker
    assert again.source("win-back").version == 2
    assert len(again.versions("win-back")) == 2


def _save_many(root: str, worker: int, count: int) -> None:
    store = FileTemplateStore(root, validator=lambda source: None)
    for index in range(count):
        store.save("win-back", valid_files(f"w{worker}-{index}"), f"w{worker}", "concurrent")


def _publish_many(root: str, versions: list[int]) -> None:
    store = FileTemplateStore(root, validator=lambda source: None)
    for version in versions:
        store.publish("win-back", version, "worker")


def _run(target, *arguments) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in arguments]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0


def test_concurrent_saves_from_processes_never_share_a_number(tmp_path) -> None:
    root = str(tmp_path / "store")
    _run(_save_many, *[(root, worker, 5) for worker in range(4)])
    store = FileTemplateStore(root)
    infos = store.versions("win-back")
    assert [info.version for info in infos] == list(range(1, 21))
    subjects = {store.read("win-back", i.version).files["template.toml"] for i in infos}
    assert len(subjects) == 20  # every save kept, none overwritten


def _save_after(root: str, worker: int, after: int, results: str) -> None:
    try:
        store = FileTemplateStore(root, validator=lambda source: None)
        store.save("win-back", valid_files(f"W{worker}"), f"w{worker}", "n", after=after)
        outcome = "saved"
    except ConflictError:
        outcome = "conflict"
    Path(results, f"{worker}.txt").write_text(outcome)


def test_processes_saving_from_one_version_at_once_land_one_save(tmp_path) -> None:
    """The check and the save are one step: of four saves made from v1, exactly one lands."""
    root, results = str(tmp_path / "store"), tmp_path / "results"
    results.mkdir()
    _save_many(root, 0, 1)
    _run(_save_after, *[(root, worker, 1, str(results)) for worker in range(4)])
    outcomes = sorted(path.read_text() for path in results.iterdir())
    assert outcomes == ["conflict", "conflict", "conflict", "saved"]
    assert [i.version for i in FileTemplateStore(root).versions("win-back")] == [1, 2]


def test_concurrent_publishes_keep_a_consistent_rollback_stack(tmp_path) -> None:
    root = str(tmp_path / "store")
    _save_many(root, 0, 4)
    _run(_publish_many, *[(root, [1, 2, 3, 4] * 5) for _ in range(3)])
    publication = FileTemplateStore(root).publication("win-back")
    assert publication is not None and publication.version == 4
    # 60 publishes, stack capped at 50; republishing the live version adds nothing to it.
    assert 0 < len(publication.previous) <= 50
    stack = [*publication.previous, publication.version]
    assert all(a != b for a, b in pairwise(stack))
    leftovers = [p for p in Path(root, "win-back").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
