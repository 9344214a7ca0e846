"""Arbitration: which campaign's verdict a decision acts on, and why the others lost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fatigue.domain import Action, Decision, MessageRequest, Reason
from fatigue.evaluate import Prepared, Verdict


def decision_for(
    user_id: str,
    decision_id: str,
    request: MessageRequest,
    verdicts: Sequence[Verdict],
    now: datetime,
) -> tuple[Decision, Verdict]:
    """Arbitrate between the campaigns' verdicts and build the decision."""
    winner, reasons = arbitrate(verdicts)
    decision = Decision.made(
        action=winner.action,
        user_id=user_id,
        decision_id=decision_id,
        decided_at=now,
        send_at=winner.send_at,
        items=winner.items if winner.action != Action.SUPPRESS else (),
        reasons=reasons,
        campaign=winner.campaign.id,
        idempotency_key=request.idempotency_key,
        dry_run=request.dry_run,
        request_digest=request.request_digest,
    )
    return decision, winner


def arbitrate(verdicts: Sequence[Verdict]) -> tuple[Verdict, tuple[Reason, ...]]:
    """Pick the verdict to act on: the best-scoring send, else the earliest defer."""
    if len(verdicts) == 1:
        return verdicts[0], verdicts[0].reasons
    sends = [v for v in verdicts if v.action == Action.SEND]
    defers = [v for v in verdicts if v.action == Action.DEFER]
    if sends:
        winner = max(sends, key=lambda v: (v.score, v.campaign.priority))
    elif defers:
        winner = min(defers, key=lambda v: (v.send_at or datetime.max, -v.score))
    else:
        winner = max(verdicts, key=lambda v: (v.score, v.campaign.priority))
    extra = [Reason("arbitration", True, f"{winner.campaign.id} chosen, score {winner.score:.4g}")]
    for verdict in verdicts:
        if verdict is not winner:
            extra.append(Reason("arbitration", False, _lost(verdict, winner), verdict.score))
    return winner, (*winner.reasons, *extra)


def _lost(loser: Verdict, winner: Verdict) -> str:
    name = loser.campaign.id
    deciding = next((reason for reason in loser.reasons if reason.deciding), None)
    if loser.action != Action.SEND and deciding is not None:
        return f"{name} lost: {loser.action.value} by {deciding.rule} ({deciding.detail})"
    score = (
        f"score {loser.score:.4g} (relevance {loser.relevance:.4g} x priority "
        f"{loser.campaign.priority:g})"
    )
    if loser.score == winner.score:  # ties go to the higher priority, then the one listed first
        return f"{name} lost: {score}, tied with {winner.campaign.id}, which ranks first"
    return f"{name} lost: {score} below {winner.campaign.id}'s {winner.score:.4g}"


def rank(prep: Prepared) -> tuple[float, float]:
    """Order offers as ``arbitrate`` ranks sends: relevance x priority, then priority."""
    priority = prep.campaign.priority
    return prep.relevance * priority, priority
