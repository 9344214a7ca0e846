"""``POST /v1/recommendations``: raw recommendations with filters, provenance and relevance."""

from __future__ import annotations

from flask import Blueprint

from api.auth import Role
from api.routing import operation
from api.schemas.compose import RecommendationsRequest, RecommendationsResponse
from api.services import services
from engine.compose import recommendations

bp = Blueprint("recommendations", __name__)


@operation(
    bp,
    "/v1/recommendations",
    "POST",
    roles=(Role.PLATFORM,),
    body=RecommendationsRequest,
    response=RecommendationsResponse,
    summary="Recommend items for one customer, with filters, provenance and relevance.",
)
def recommend(body: RecommendationsRequest) -> RecommendationsResponse:
    """Answer with the model's picks for ``body.user_id``."""
    found = services()
    model = found.get("model").model
    picks = recommendations(
        model,
        body.user_id,
        body.n,
        filters=body.filters.model_dump(),
        recent=[recent.model_dump() for recent in body.recent],
        now=found.clock(),
    )
    return RecommendationsResponse.model_validate(
        {"user_id": body.user_id, "model_version": model.version, "recommendations": picks}
    )
