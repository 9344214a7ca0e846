"""The compose pipeline's input: built at once on the batch path, as its constructor builds it."""

from __future__ import annotations

import dataclasses
import inspect

from engine.compose import ComposeInput
from fatigue.domain import Campaign, Recipient


def test_an_input_made_at_once_is_what_its_constructor_makes() -> None:
    names = [field.name for field in dataclasses.fields(ComposeInput)]
    assert list(inspect.signature(ComposeInput.made).parameters) == names  # none forgotten
    values = dict(
        recipient=Recipient("u1", "ada@example.com", "Ada"),
        campaigns=(Campaign("weekly-picks", "recommendations"),),
        templates={"weekly-picks": "picked-for-you"},
        idempotency_key="k1",
        dry_run=True,
        items=3,
        deferrable=True,
        data={"greeting": "Hi"},
    )
    made, built = ComposeInput.made(**values), ComposeInput(**values)  # type: ignore[arg-type]
    assert made == built and vars(made) == vars(built) and repr(made) == repr(built)
    assert made.digest() == built.digest()
