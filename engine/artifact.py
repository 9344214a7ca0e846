"""The model artifact: one directory per version, published by atomically swapping a pointer.

Layout of a model directory::

    CURRENT                     the published version's name (replaced with os.replace)
    publications.log            every version published (rollbacks too), oldest first
    versions/<version>/
        meta.json               algorithm, parameters, weighting, data window, metrics, calibration
        model.npz               the model's arrays (factors, similarity or popularity)
        data.npz                id maps, history matrices, popularity and trending vectors
        catalog.csv             optional copy of the catalog, so serving needs nothing else

A version is written into a hidden temporary directory, flushed, renamed into ``versions/`` and
only then named in ``CURRENT``: a reader never sees half a model. Arrays are loaded with
``allow_pickle=False`` so a model file cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.calibration import PlattCalibrator
from engine.catalog import load_catalog
from engine.matrix import IdMap, ValueScale, Weighting
from engine.models import Algorithm, ModelParams, create_model
from engine.serving import Recommender, Source
from fatigue.errors import ConfigurationError, NotFoundError, Problem, ValidationError
from fatigue.writable import unwritable

POINTER = "CURRENT"
VERSIONS = "versions"
# Every publication, one version name per line, oldest first: where a worker that cannot load
# the published version falls back to (the one published before, not the newest by name).
PUBLICATIONS = "publications.log"
FORMAT_VERSION = 1
_MATRICES = ("user_items", "excluded", "history")
CATALOG = "catalog"


def new_version_name(now: datetime | None = None) -> str:
    """Return a sortable, unique version name: UTC time plus a random suffix."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{moment}-{os.urandom(3).hex()}"


def check_writable(model_dir: str | Path) -> None:
    """Fail now, not after training, when versions could not be written under ``model_dir``.

    Nothing is created: a run that then fails on its input leaves no empty model directory.
    """
    reason = unwritable(Path(model_dir) / VERSIONS)
    if reason:
        raise ConfigurationError(f"cannot write models to {model_dir}: {reason}")


def save_recommender(
    recommender: Recommender,
    model_dir: str | Path,
    catalog_path: str | Path | None = None,
    keep: int = 5,
) -> str:
    """Write ``recommender`` as a new version, publish it, prune old versions; return its name."""
    root = Path(model_dir)
    unfit = _unfit(recommender)
    if unfit:  # refused before anything is written: the published version stays as it was
        raise ValidationError(Problem(f"refusing to publish this model: {unfit}", str(root)))
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    _clear_abandoned(versions)
    name = new_version_name()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=versions))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide it from a serving user
        _write_version(recommender, staging, name, catalog_path)
        os.replace(staging, versions / name)
    except OSError as exc:  # a full disk: the published version stays as it was
        shutil.rmtree(staging, ignore_errors=True)
        reason = exc.strerror or exc
        raise ConfigurationError(f"could not save the model in {root}: {reason}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(versions)
    publish(root, name)
    _prune(root, keep)
    recommender.version = name
    return name


def publish(model_dir: str | Path, version: str) -> None:
    """Point ``CURRENT`` at ``version`` atomically (also used to roll back)."""
    root = Path(model_dir)
    if not (root / VERSIONS / version / "meta.json").is_file():
        raise NotFoundError(f"no model version {version!r} in {root}")
    fd, tmp = tempfile.mkstemp(prefix=".pointer-", dir=root)
    os.fchmod(fd, 0o666 & ~_umask())  # as any file this user writes, not mkstemp's 0600
    with os.fdopen(fd, "w") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / POINTER)
    fsync_directory(root)
    with open(root / PUBLICATIONS, "a", encoding="utf-8") as log:
        log.write(version + "\n")


def publication_history(model_dir: str | Path) -> list[str]:
    """Return the versions published so far, most recently published first, each once."""
    try:
        lines = (Path(model_dir) / PUBLICATIONS).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(reversed(lines)))


def current_version(model_dir: str | Path) -> str | None:
    """Return the published version's name, or None when nothing is published."""
    try:
        return (Path(model_dir) / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


def list_versions(model_dir: str | Path) -> list[str]:
    """Return every complete version, oldest first."""
    versions = Path(model_dir) / VERSIONS
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if not p.name.startswith("."))


def read_meta(model_dir: str | Path, version: str | None = None) -> dict[str, Any]:
    """Return a version's ``meta.json`` (the published one by default)."""
    directory = _version_dir(Path(model_dir), version)
    meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    return meta


def load_recommender(model_dir: Path, version: str | None = None) -> Recommender:
    """Load a version (the published one by default) into a serving ``Recommender``.

    A damaged version (a file missing or cut short, arrays that do not fit together) is a
    ``ValidationError`` naming it, so a server keeps the model it has rather than switching.
    """
    directory = _version_dir(model_dir, version)
    try:
        recommender = _load(directory)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise ValidationError(Problem(f"damaged model version: {exc!r}", str(directory))) from exc
    _check_fit(recommender, directory)
    return recommender


def _check_fit(recommender: Recommender, directory: Path) -> None:
    """Refuse a version that would fail, or answer nonsense, on every request."""
    unfit = _unfit(recommender)
    if unfit:
        raise ValidationError(Problem(f"damaged model version: {unfit}", str(directory)))


def _unfit(recommender: Recommender) -> str:
    """Say what makes ``recommender`` unservable ("" when nothing): sizes or values."""
    return "; ".join([*_wrong_sizes(recommender), *_not_finite(recommender)])


def _wrong_sizes(recommender: Recommender) -> list[str]:
    """Arrays whose sizes disagree with the id maps."""
    users, items = len(recommender.users), len(recommender.items)
    sizes = {
        "items in the model": (recommender.model.item_count, items),
        "popularity scores": (len(recommender.popular), items),
        "trending scores": (len(recommender.trending), items),
    }
    factors = recommender.model.arrays().get("user_factors")
    if factors is not None:
        sizes["user factor rows"] = (len(factors), users)
    wrong = [f"{what}: {found} (expected {wanted})" for what, (found, wanted) in sizes.items()
             if found != wanted]  # fmt: skip
    for key in _MATRICES:
        matrix: sp.csr_matrix = getattr(recommender, key)
        if matrix.nnz and int(matrix.indices.max()) >= items:
            wrong.append(f"{key} names item column {int(matrix.indices.max())} of {items}")
    return wrong


def _not_finite(recommender: Recommender) -> list[str]:
    """Arrays holding NaN or infinity, named as saved (file and array).

    One NaN factor makes every score it touches NaN, and NaN never ranks: such a model loaded
    as healthy and then answered every known customer with a short list or an error.
    """
    arrays: dict[str, Any] = {f"model.npz {k}": v for k, v in recommender.model.arrays().items()}
    arrays.update(
        {"data.npz popular": recommender.popular, "data.npz trending": recommender.trending}
    )
    arrays.update({f"data.npz {k}_data": getattr(recommender, k).data for k in _MATRICES})
    for source, curve in recommender.calibrators.items():
        arrays[f"meta.json calibration {source.value}"] = [curve.slope, curve.intercept]
    found = []
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            found.append(f"{name} holds {bad:,} non-finite values (NaN or infinity)")
    return found


def _load(directory: Path) -> Recommender:
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValidationError(
            f"{directory}: unsupported artifact format {meta.get('format_version')}"
        )
    model = create_model(Algorithm(meta["algorithm"]), ModelParams(**meta["params"]))
    # Opened here, not by np.load: it leaves the file open when the archive is damaged.
    with open(directory / "model.npz", "rb") as raw, np.load(raw, allow_pickle=False) as arrays:
        model.load_arrays(dict(arrays))
    with open(directory / "data.npz", "rb") as raw, np.load(raw, allow_pickle=False) as data:
        users, items = IdMap(data["user_ids"]), IdMap(data["item_ids"])
        shape = (len(users), len(items))
        matrices = {key: _matrix(data, key, shape) for key in _MATRICES}
        popular, trending = data["popular"], data["trending"]
    catalog_file = next(directory.glob(f"{CATALOG}.*"), None)
    return Recommender(
        model=model,
        users=users,
        items=items,
        popular=popular,
        trending=trending,
        calibrators={
            Source(k): PlattCalibrator.from_dict(v) for k, v in meta["calibration"].items()
        },
        weighting=_weighting(meta["weighting"]),
        meta=meta,
        catalog=load_catalog(catalog_file) if catalog_file is not None else None,
        version=directory.name,
        **matrices,
    )


def catalog_name(source: Path) -> str:
    """Name the catalog's copy in a version with the source's format suffixes (it is read by them).

    ``catalog.csv.gz`` stays gzip and ``catalog.jsonl`` JSON Lines; a copy named ``.csv``
    could not be read back.
    """
    suffixes = [suffix.lower() for suffix in source.suffixes]
    kept = suffixes[-2:] if suffixes[-1:] == [".gz"] else suffixes[-1:]
    return CATALOG + ("".join(kept) or ".csv")


def _write_version(
    recommender: Recommender, directory: Path, name: str, catalog_path: str | Path | None
) -> None:
    _save_npz(directory / "model.npz", recommender.model.arrays())
    data: dict[str, np.ndarray] = {
        "user_ids": recommender.users.ids,
        "item_ids": recommender.items.ids,
        "popular": recommender.popular,
        "trending": recommender.trending,
    }
    for key in _MATRICES:
        matrix: sp.csr_matrix = getattr(recommender, key)
        data.update(
            {
                f"{key}_data": matrix.data,
                f"{key}_indices": matrix.indices,
                f"{key}_indptr": matrix.indptr,
            }
        )
    _save_npz(directory / "data.npz", data)
    if catalog_path is not None:
        shutil.copyfile(catalog_path, directory / catalog_name(Path(catalog_path)))
    meta = dict(recommender.meta, version=name, format_version=FORMAT_VERSION)
    meta["calibration"] = {s.value: c.as_dict() for s, c in recommender.calibrators.items()}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Object arrays would need pickle to load; refuse to write what we could not read back.
    np.savez(path, allow_pickle=False, **arrays)


def _weighting(data: dict[str, Any]) -> Weighting:
    return Weighting(
        data["event_weights"],
        data.get("half_life_days"),
        ValueScale(data.get("value_scale", ValueScale.IGNORE)),
    )


def _matrix(data: Any, key: str, shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (data[f"{key}_data"], data[f"{key}_indices"], data[f"{key}_indptr"]), shape=shape
    )


def _version_dir(root: Path, version: str | None) -> Path:
    name = version or current_version(root)
    if name is None:
        raise NotFoundError(f"no published model in {root} (train one with `rapport train`)")
    directory = root / VERSIONS / name
    if name != directory.name or not (directory / "meta.json").is_file():
        raise NotFoundError(f"no model version {name!r} in {root}")
    return directory


def _clear_abandoned(versions: Path, older_than: float = 86_400) -> None:
    """Remove staging folders a crashed save left (a day old: none is still being written)."""
    limit = time.time() - older_than
    for path in versions.glob(".staging-*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < limit:
                shutil.rmtree(path, ignore_errors=True)


def _prune(root: Path, keep: int) -> None:
    published = current_version(root)
    spares = [v for v in list_versions(root) if v != published]
    for name in spares[: max(len(spares) - keep, 0)]:  # oldest first: keep the newest spares
        shutil.rmtree(root / VERSIONS / name, ignore_errors=True)


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a file or folder just made or renamed in it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)  # reading the mask means setting it: put it straight back
    os.umask(mask)
    return mask
