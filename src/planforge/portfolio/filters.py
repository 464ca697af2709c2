"""Built-in filters: each drops sequences that break one rule and never adds or changes one.

The survivors keep their input order, so the output is a subsequence of the input and never
longer than it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic.modules import Action, ActionSequence, Filter
from planforge.portfolio._common import BUY, SELL, coerce_params
from planforge.portfolio.context import PortfolioContext, Security

__all__ = [
    "CorrelationAwareFilter",
    "DiversityFilter",
    "EligibilityFilter",
    "RecentlyTradedFilter",
]

_PARAMS = ConfigDict(extra="forbid", frozen=True)


def _days(default: int, description: str) -> Any:
    return Field(default=default, ge=0, le=3650, description=description)


def _within(since: date | None, as_of: date, days: int) -> bool:
    """True when `since` is less than `days` days before `as_of` (a future date counts)."""
    return since is not None and (as_of - since).days < days


class EligibilityFilter(Filter):
    """Drops sequences with a sell that trading discipline forbids.

    A sell is not allowed when the position was first bought fewer than `min_hold_days` ago
    (give a purchase time to work; an unknown purchase date passes), when the symbol was
    sold fewer than `sell_cooldown_days` ago, when it would realise a loss worse than
    `max_loss` against the average price (do not crystallise a steep loss), or when nothing
    of it is held. Any step on an ineligible symbol drops the sequence too.
    """

    name = "eligibility"
    version = "1.0.0"
    author = "planforge"
    description = "Drop sells that break the minimum hold, sell cooldown or maximum loss rules."
    tags = ("sell", "discipline", "dates")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        min_hold_days: int = _days(90, "Days a position is held before a sell.")
        sell_cooldown_days: int = _days(180, "Days after a sell before the symbol is sold again.")
        max_loss: float = Field(
            default=-0.20,
            ge=-1.0,
            le=0.0,
            description="Worst loss vs the average price a sell may realise (-0.2 = -20%).",
        )

    def apply(
        self, context: PortfolioContext, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        positions = {position.symbol: position for position in context.positions}
        ineligible = set(context.restrictions.ineligible)
        recent_sells = context.restrictions.recent_sells
        verdicts: dict[tuple[str, str, float], bool] = {}

        def allowed(action: Action) -> bool:
            if action.key in ineligible:
                return False
            if action.side != SELL:
                return True
            position = positions.get(action.key)
            if position is None or position.quantity <= 0:
                return False
            if _within(position.first_bought, context.as_of, p.min_hold_days):
                return False
            if _within(recent_sells.get(action.key), context.as_of, p.sell_cooldown_days):
                return False
            if position.average_price > 0:
                change = action.price / position.average_price - 1.0
                if change < p.max_loss:
                    return False
            return True

        def cached(action: Action) -> bool:
            probe = (action.side, action.key, action.price)
            if probe not in verdicts:
                verdicts[probe] = allowed(action)
            return verdicts[probe]

        return [s for s in sequences if all(cached(a) for a in s)]


class RecentlyTradedFilter(Filter):
    """Drops sequences that trade a symbol again too soon after the same kind of trade.

    No buy of a symbol bought fewer than `buy_cooldown_days` ago and no sell of a symbol
    sold fewer than `sell_cooldown_days` ago (dates from `restrictions.recent_buys` and
    `recent_sells`, measured to the context's `as_of`): repeated trading costs money and
    chases noise.
    """

    name = "recently_traded"
    version = "1.0.0"
    author = "planforge"
    description = "Drop buys and sells that repeat a recent trade of the same symbol."
    tags = ("buy", "sell", "churn", "dates")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        buy_cooldown_days: int = _days(30, "Days after a buy before the symbol is bought again.")
        sell_cooldown_days: int = _days(180, "Days after a sell before the symbol is sold again.")

    def apply(
        self, context: PortfolioContext, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        restrictions = context.restrictions
        blocked: set[tuple[str, str]] = set()
        for symbol, when in restrictions.recent_buys.items():
            if _within(when, context.as_of, p.buy_cooldown_days):
                blocked.add((BUY, symbol))
        for symbol, when in restrictions.recent_sells.items():
            if _within(when, context.as_of, p.sell_cooldown_days):
                blocked.add((SELL, symbol))
        if not blocked:
            return list(sequences)
        return [s for s in sequences if not any(a.identity() in blocked for a in s)]


class CorrelationAwareFilter(Filter):
    """Drops sequences that buy two securities likely to move together.

    Without price histories in the context, correlation is estimated from classification:
    the same industry and the same country count as `same_both` (1.0), the same industry
    alone as `same_industry` (0.8), the same country alone as `same_country` (0.5), anything
    else as 0; an "unknown" country or industry never matches. A sequence whose buys include
    a pair at or above `threshold` (0.7: by default same industry) is dropped, because
    buying both doubles one bet instead of diversifying.
    """

    name = "correlation_aware"
    version = "1.0.0"
    author = "planforge"
    description = "Drop sequences that buy two highly correlated securities."
    tags = ("buy", "diversification", "correlation")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        threshold: float = Field(
            default=0.7, ge=0.0, le=1.0, description="Correlation at which a pair is too close."
        )
        same_both: float = Field(
            default=1.0, ge=0.0, le=1.0, description="Proxy for same industry and country."
        )
        same_industry: float = Field(
            default=0.8, ge=0.0, le=1.0, description="Proxy for the same industry only."
        )
        same_country: float = Field(
            default=0.5, ge=0.0, le=1.0, description="Proxy for the same country only."
        )

    @staticmethod
    def proxy(first: Security | None, second: Security | None, params: Any) -> float:
        """The estimated correlation of two securities (0 when either is unknown)."""
        p = coerce_params(CorrelationAwareFilter.Params, params)
        if first is None or second is None:
            return 0.0
        industry = first.industry == second.industry and first.industry != "unknown"
        country = first.country == second.country and first.country != "unknown"
        if industry and country:
            return p.same_both
        if industry:
            return p.same_industry
        if country:
            return p.same_country
        return 0.0

    def apply(
        self, context: PortfolioContext, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        securities = {security.symbol: security for security in context.securities}
        too_close: dict[tuple[str, str], bool] = {}

        def close(a: str, b: str) -> bool:
            pair = (a, b) if a <= b else (b, a)
            if pair not in too_close:
                too_close[pair] = self.proxy(securities.get(a), securities.get(b), p) >= p.threshold
            return too_close[pair]

        kept: list[ActionSequence] = []
        for sequence in sequences:
            bought = [a.key for a in sequence if a.side == BUY]
            if not any(
                close(bought[i], bought[j])
                for i in range(len(bought))
                for j in range(i + 1, len(bought))
            ):
                kept.append(sequence)
        return kept


class DiversityFilter(Filter):
    """Keeps a varied set of sequences instead of many near-copies of one idea.

    Sequences are considered best first (by mean priority, ties in input order). One is
    dropped when its steps overlap a kept sequence's by more than 1 - `diversity_weight`
    (Jaccard similarity of their (side, symbol) sets; 0.3 drops overlaps above 0.7, 0 keeps
    everything but repeats of the same steps), or when more than `max_start_share` of the input
    (rounded up, at least one) already starts with the same step. Survivors keep their input
    order. This trades completeness for breadth: disable it when every candidate sequence
    must be evaluated (the exhaustive check does).
    """

    name = "diversity"
    version = "1.0.0"
    author = "planforge"
    description = "Drop near-duplicate sequences so a diverse set is evaluated."
    tags = ("diversity", "selection")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        diversity_weight: float = Field(
            default=0.3, ge=0.0, le=1.0, description="How different kept sequences must be."
        )
        max_start_share: float = Field(
            default=0.5,
            gt=0.0,
            le=1.0,
            description="Largest share of sequences that may start with the same step.",
        )
        max_compared: int = Field(
            default=500,
            ge=1,
            le=100_000,
            description="Kept sequences a newcomer is compared with (bounds the work).",
        )

    def apply(
        self, context: PortfolioContext, sequences: Sequence[ActionSequence], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        if not sequences:
            return []
        similarity_limit = 1.0 - p.diversity_weight
        start_cap = max(1, math.ceil(p.max_start_share * len(sequences)))

        def mean_priority(index: int) -> float:
            sequence = sequences[index]
            return sum(a.priority for a in sequence) / len(sequence) if sequence else 0.0

        order = sorted(range(len(sequences)), key=lambda i: (-mean_priority(i), i))
        # steps as rows of a 0/1 matrix, so one product gives the overlaps with every kept row
        identities = sorted({a.identity() for sequence in sequences for a in sequence})
        column = {identity: index for index, identity in enumerate(identities)}
        rows = np.zeros((len(sequences), max(1, len(identities))), dtype=np.float64)
        for index, sequence in enumerate(sequences):
            for action in sequence:
                rows[index, column[action.identity()]] = 1.0
        sizes = rows.sum(axis=1)
        kept_rows = np.zeros_like(rows)
        kept_sizes = np.zeros(len(sequences), dtype=np.float64)
        starts: dict[tuple[str, str], int] = {}
        kept: list[int] = []
        for index in order:
            sequence = sequences[index]
            start = sequence[0].identity() if sequence else ("", "")
            if starts.get(start, 0) >= start_cap:
                continue
            lo = max(0, len(kept) - p.max_compared)
            if len(kept) > lo:
                overlap = kept_rows[lo : len(kept)] @ rows[index]
                union = kept_sizes[lo : len(kept)] + sizes[index] - overlap
                # near-duplicate (Jaccard above the limit) or the very same steps
                if bool(np.any((overlap > similarity_limit * union) | (overlap >= union))):
                    continue
            kept_rows[len(kept)] = rows[index]
            kept_sizes[len(kept)] = sizes[index]
            starts[start] = starts.get(start, 0) + 1
            kept.append(index)
        return [sequences[i] for i in sorted(kept)]
