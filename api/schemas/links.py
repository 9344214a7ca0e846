"""Schemas of the links in emails: the preferences page's form."""

from __future__ import annotations

from enum import StrEnum

from api.schemas.common import Strict


class PreferenceChoice(StrEnum):
    """What the preferences page's buttons post."""

    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"


class PreferencesForm(Strict):
    """The preferences page's form (``application/x-www-form-urlencoded``)."""

    choice: PreferenceChoice
