"""The compose pipeline's input: built at once on the batch path, as its constructor builds it."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

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


def merged_item_variables(catalog, chosen):
    """The items as ``Composer._render`` built them before: each catalog entry merged anew."""
    return [
        {
            **(
                catalog[item.item_id].as_template_dict()
                if catalog and item.item_id in catalog
                else {"item_id": item.item_id}
            ),
            "relevance": item.relevance,
            "source": item.source,
        }
        for item in chosen
    ]


def test_an_input_showing_no_items_is_refused_before_any_decision() -> None:
    """The API's schema says items >= 1; a library caller asking for 0 would send empty mail."""
    from types import SimpleNamespace

    import pytest

    from engine.compose import _check_item_counts
    from fatigue.errors import ValidationError

    request = ComposeInput(
        Recipient("u", "u@example.com"), (Campaign("c"),), {"c": "t"}, "k", items=0
    )
    templates: Any = {"t": SimpleNamespace(template=SimpleNamespace(min_items=0))}
    with pytest.raises(ValidationError) as caught:
        _check_item_counts([request], templates)
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("items", "items must be at least 1 (got 0)")
    ]


def test_item_variables_are_the_merged_catalog_entries_key_for_key_in_order() -> None:
    from engine.catalog import Catalog, CatalogItem
    from engine.compose import _item_variables
    from fatigue.domain import Candidate

    shown = CatalogItem("i1", "Mug", "https://shop.example/i1", extra={"relevance": "x", "a": "1"})
    chosen = (Candidate("i1", 0.5, 1.0, "cf"), Candidate("gone", 0.25, 0.5, "trending"))
    for catalog in (None, Catalog(), Catalog({"i1": shown}), {"i1": shown}):
        made = _item_variables(catalog, chosen)
        expected = merged_item_variables(catalog, chosen)
        assert made == expected
        assert [list(item.items()) for item in made] == [list(item.items()) for item in expected]
    assert _item_variables(Catalog({"i1": shown}), chosen)[0] is not shown.as_template_dict()


def test_the_deciding_campaign_and_its_link_campaign_are_what_they_were() -> None:
    import pytest

    from engine.compose import _deciding_campaign, _link_campaign
    from engine.render.links import Campaign as LinkCampaign

    campaigns = (Campaign("first"), Campaign("second"), Campaign("second", "again"))
    for deciding in (None, "first", "second"):
        wanted = deciding or campaigns[0].id
        assert _deciding_campaign(campaigns, deciding) is next(
            c for c in campaigns if c.id == wanted
        )
    with pytest.raises(ValueError, match="campaign 'unknown'"):
        _deciding_campaign(campaigns, "unknown")
    link = _link_campaign(campaigns[1])
    assert link == LinkCampaign("second", "second") and _link_campaign(campaigns[1]) is link
    assert _link_campaign(Campaign("second")) == link  # an equal campaign: an equal link
