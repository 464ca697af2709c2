"""Built-in sizing generator: trade sizes chosen by the score, not by a rule of thumb."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planforge.holistic.modules import Action, ActionSequence, SequenceGenerator
from planforge.portfolio._arrays import FloatArray
from planforge.portfolio._common import BUY, SELL, Book, coerce_params, make_trade
from planforge.portfolio._model import model_for
from planforge.portfolio._settings import PortfolioSettings
from planforge.portfolio._sizing import SizingProblem, search
from planforge.portfolio.context import PortfolioContext

__all__ = ["OptimalSizingGenerator"]


class OptimalSizingGenerator(SequenceGenerator):
    """Searches whole-lot quantities of every tradable security for the highest score.

    Fixed fractions and gaps to one target rarely give the best plan: the best sell is often
    exactly what a buy needs, and the best buy lands a group on its target as far as the
    cash goes. This generator climbs from the current portfolio over signed quantities (one
    per security, whole lots or the whole position, at most `max_depth` trades, cash never
    below zero, every trading rule of the configuration), scoring each move with the
    configuration's own score; see `planforge.portfolio._sizing`. It returns the plan it
    reached and the plans it passed on the way, best first, for the evaluation to score like
    any other. Its steps carry priority 1 (the plan as a whole is what the score wants) and
    category `optimal_sizing`. The candidates it is given are not needed: it reads the
    context.
    """

    name = "optimal_sizing"
    version = "1.0.0"
    author = "planforge"
    description = "Trade sizes searched over whole lots for the best score under the rules."
    tags = ("sizing", "optimisation", "search")
    dependencies = ()

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

        max_depth: int = Field(
            default=5,
            ge=1,
            le=10,
            description="Most steps per sequence; in a configuration, [planner].max_depth.",
        )
        scoring: PortfolioSettings = Field(
            default_factory=PortfolioSettings,
            description="The score's weights and the trading rules; in a configuration, the "
            "[planner] keys.",
        )
        rounds: int = Field(default=40, ge=1, le=1000, description="Most improving moves.")
        grid_points: int = Field(
            default=24, ge=3, le=1000, description="Sizes tried across each security's range."
        )
        pair_securities: int = Field(
            default=6,
            ge=0,
            le=100,
            description="Securities whose sizes are also changed in pairs (a sell paying for a "
            "buy, one trade swapped for another), the most promising first.",
        )
        max_sequences: int = Field(
            default=8, ge=1, le=1000, description="Most sequences returned, best first."
        )

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences returned (a bound, for dry runs)."""
        p = coerce_params(cls.Params, params)
        return min(p.max_sequences, p.rounds)

    def generate(
        self, context: PortfolioContext, candidates: Sequence[Action], params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        problem = SizingProblem.of(model_for(context), p.scoring, p.max_depth)
        path = search(problem, rounds=p.rounds, coarse=p.grid_points, pair_count=p.pair_securities)
        book = Book.of(context)
        out: list[ActionSequence] = []
        for quantities in reversed(path[-p.max_sequences :]):
            sequence = _sequence(book, problem, quantities)
            if sequence:
                out.append(sequence)
        return out


def _sequence(book: Book, problem: SizingProblem, quantities: FloatArray) -> ActionSequence:
    """Sells first, then buys, each by symbol; empty when a step cannot be built."""
    symbols = problem.model.symbols
    steps: list[Action] = []
    for selling in (True, False):
        for i in sorted(range(len(symbols)), key=lambda k: symbols[k]):
            quantity = float(quantities[i])
            if quantity == 0 or (quantity < 0) != selling:
                continue
            symbol = symbols[i]
            before = book.weight(symbol)
            after = (book.position_values.get(symbol, 0.0) + quantity * problem.unit[i]) / (
                book.total_value or 1.0
            )
            action = make_trade(
                book,
                SELL if selling else BUY,
                symbol,
                quantity=abs(quantity),
                priority=1.0,
                category=OptimalSizingGenerator.name,
                reason=f"sized for the best score: {symbol} from {before * 100:.1f}% to "
                f"{after * 100:.1f}% of the portfolio",
                tags=("sizing",),
            )
            if action is None:
                return ()
            steps.append(action)
    return tuple(steps)
