"""Built-in pattern generators: each turns the candidates into a few sequences with one idea.

Every pattern puts sells before buys, uses a symbol at most once per sequence, includes a buy
only when the cash at that point (starting cash plus the proceeds of the sells before it, net
of costs) covers its value and cost, and returns a bounded number of distinct, non-empty
sequences. Candidates are read best first in one deterministic order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planforge.holistic.modules import Action, ActionSequence, PatternGenerator
from planforge.portfolio._common import (
    BUY,
    SELL,
    Book,
    action_order,
    arrange,
    coerce_params,
    ranked,
    sell_proceeds,
    trade_cost,
    unique_sequences,
)
from planforge.portfolio.context import PortfolioContext

__all__ = [
    "AdaptivePattern",
    "CashGenerationPattern",
    "CostOptimizedPattern",
    "DeepRebalancePattern",
    "DirectBuyPattern",
    "MixedStrategyPattern",
    "MultiSellPattern",
    "OpportunityFirstPattern",
    "SingleBestPattern",
]

_PARAMS = ConfigDict(extra="forbid", frozen=True)

Candidates = Mapping[str, Sequence[Action]]


def _categories(description: str, default: tuple[str, ...] = ()) -> Any:
    return Field(default=default, max_length=32, description=description)


class DirectBuyPattern(PatternGenerator):
    """Spends available cash on buys alone, without selling anything.

    Proposes the greedy fill (the best buys, in priority order, that the cash covers) and
    each affordable buy on its own, so the evaluator can compare one focused purchase with
    several. Buys that the current cash cannot cover are left out: this pattern never sells.
    """

    name = "direct_buy"
    version = "1.0.0"
    author = "planforge"
    description = "Buy with the cash already available, no sells."
    tags = ("buy", "cash")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        categories: tuple[str, ...] = _categories("Buy categories to use; empty means all.")
        max_buys: int = Field(default=3, ge=1, le=20, description="Most buys in the greedy fill.")
        max_sequences: int = Field(default=5, ge=1, le=100, description="Most sequences returned.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        p = coerce_params(cls.Params, params)
        return min(p.max_sequences, candidates + 1)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        buys = ranked(candidates, p.categories, BUY)
        greedy = arrange(context, (), buys, p.max_buys)
        singles = [arrange(context, (), (buy,)) for buy in buys]
        return unique_sequences([greedy, *singles], p.max_sequences)


class SingleBestPattern(PatternGenerator):
    """The one best action across every category, as a one-step plan.

    The smallest possible change is often the wisest; it also guarantees the evaluator sees
    the top candidate alone. A buy counts only when the current cash covers its value and
    cost; otherwise the next best action is taken.
    """

    name = "single_best"
    version = "1.0.0"
    author = "planforge"
    description = "The single highest-priority action; a buy only if cash covers it."
    tags = ("buy", "sell", "minimal")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        min_priority: float = Field(
            default=0.0, ge=0.0, le=1.0, description="Ignore candidates below this priority."
        )

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        return min(1, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        for action in ranked(candidates):
            if action.priority < p.min_priority:
                break
            if action.side == BUY and action.value + trade_cost(context, action.value) > (
                context.cash + 1e-9
            ):
                continue
            return [(action,)]
        return []


class MultiSellPattern(PatternGenerator):
    """Sells only: the best one, the best two, ... up to `max_sells`.

    Useful when the portfolio is overextended and reducing risk is the point; the prefixes
    let the evaluator choose how far to go.
    """

    name = "multi_sell"
    version = "1.0.0"
    author = "planforge"
    description = "Sell the top 1..n sell candidates, no buys."
    tags = ("sell",)
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        categories: tuple[str, ...] = _categories("Sell categories to use; empty means all.")
        max_sells: int = Field(default=3, ge=1, le=20, description="Longest sell-only sequence.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        p = coerce_params(cls.Params, params)
        return min(p.max_sells, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        sells = _one_per_symbol(ranked(candidates, p.categories, SELL))[: p.max_sells]
        return unique_sequences(
            (tuple(sells[:count]) for count in range(1, len(sells) + 1)), p.max_sells
        )


class MixedStrategyPattern(PatternGenerator):
    """Sell the best 1..`max_sells` candidates, then reinvest in the best buys that fit.

    A rotation: trim what should be trimmed and put the money to work in the same plan.
    A sequence without any affordable buy is left out (multi_sell covers sells alone).
    """

    name = "mixed_strategy"
    version = "1.0.0"
    author = "planforge"
    description = "Top sells followed by the top buys their proceeds and cash can pay for."
    tags = ("buy", "sell", "rotation")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        max_sells: int = Field(default=2, ge=1, le=10, description="Most sells per sequence.")
        max_buys: int = Field(default=3, ge=1, le=10, description="Most buys per sequence.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        p = coerce_params(cls.Params, params)
        return min(p.max_sells, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        sells = _one_per_symbol(ranked(candidates, (), SELL))[: p.max_sells]
        buys = ranked(candidates, (), BUY)
        out: list[ActionSequence] = []
        for count in range(1, len(sells) + 1):
            sequence = arrange(context, sells[:count], buys, p.max_buys)
            if any(a.side == BUY for a in sequence):
                out.append(sequence)
        return unique_sequences(out, p.max_sells)


class OpportunityFirstPattern(PatternGenerator):
    """Funds the best opportunity buys first, selling only as much as they need.

    Takes the top `max_buys` buys from `buy_categories` (opportunity buys and quality dips
    by default); when cash falls short, adds the best sells (any category) one by one until
    the buys are paid for, up to `max_sells`. Buys still unaffordable are dropped, lowest
    priority last to go. Sells never exceed what the buys need.
    """

    name = "opportunity_first"
    version = "1.0.0"
    author = "planforge"
    description = "Top opportunity buys, funded by just enough of the best sells."
    tags = ("buy", "opportunity")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        buy_categories: tuple[str, ...] = _categories(
            "Categories whose buys come first.", ("opportunity_buys", "averaging_down")
        )
        max_buys: int = Field(default=3, ge=1, le=10, description="Most buys per sequence.")
        max_sells: int = Field(default=3, ge=0, le=10, description="Most funding sells.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        return min(1, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        buys = _one_per_symbol(ranked(candidates, p.buy_categories, BUY))[: p.max_buys]
        if not buys:
            return []
        bought = {a.key for a in buys}
        needed = sum(a.value + trade_cost(context, a.value) for a in buys) - context.cash
        sells: list[Action] = []
        for sell in _one_per_symbol(ranked(candidates, (), SELL)):
            if needed <= 1e-9 or len(sells) >= p.max_sells:
                break
            if sell.key in bought:
                continue
            sells.append(sell)
            needed -= sell_proceeds(context, (sell,))
        return unique_sequences([arrange(context, sells, buys, p.max_buys)], 1)


class DeepRebalancePattern(PatternGenerator):
    """Every rebalancing sell, then every rebalancing buy the cash allows, in one plan.

    For a portfolio that has drifted far from its targets, a thorough reset is cheaper than
    several partial ones. Sells and buys come from the rebalance and weight-based
    calculators by default; the plan is capped at `max_steps` trades, sells first.
    """

    name = "deep_rebalance"
    version = "1.0.0"
    author = "planforge"
    description = "All rebalancing sells, then the rebalancing buys they fund."
    tags = ("buy", "sell", "rebalance")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        sell_categories: tuple[str, ...] = _categories(
            "Categories of the rebalancing sells.", ("rebalance_sells", "weight_based")
        )
        buy_categories: tuple[str, ...] = _categories(
            "Categories of the rebalancing buys.", ("rebalance_buys", "weight_based")
        )
        max_steps: int = Field(default=8, ge=1, le=20, description="Most trades in the plan.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        return min(1, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        sells = _one_per_symbol(ranked(candidates, p.sell_categories, SELL))[: p.max_steps]
        buys = ranked(candidates, p.buy_categories, BUY)
        room = p.max_steps - len(sells)
        sequence = arrange(context, sells, buys, room) if room > 0 else tuple(sells)
        return unique_sequences([sequence], 1)


class CashGenerationPattern(PatternGenerator):
    """Sells, best first, until cash reaches `target_cash_fraction` of the portfolio.

    Keeps a cash buffer for withdrawals or coming opportunities. Nothing is proposed when the
    buffer is already there; when `max_sells` sells cannot reach it, the sequence still
    raises as much as they can.
    """

    name = "cash_generation"
    version = "1.0.0"
    author = "planforge"
    description = "Sell the best sell candidates until a cash target is reached."
    tags = ("sell", "cash")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        target_cash_fraction: float = Field(
            default=0.1, ge=0.0, le=1.0, description="Wanted cash as a share of portfolio value."
        )
        max_sells: int = Field(default=5, ge=1, le=20, description="Most sells to reach it.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        return min(1, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        target = p.target_cash_fraction * Book.of(context).total_value
        cash = context.cash
        if cash >= target:
            return []
        sells: list[Action] = []
        for sell in _one_per_symbol(ranked(candidates, (), SELL)):
            if cash >= target or len(sells) >= p.max_sells:
                break
            sells.append(sell)
            cash += sell_proceeds(context, (sell,))
        return unique_sequences([tuple(sells)], 1)


class CostOptimizedPattern(PatternGenerator):
    """The fewest trades that buy the most priority per unit of transaction cost.

    Ranks candidates by priority / cost (fixed plus percentage cost of the trade; with no
    costs configured this is plain priority order), then repeatedly adds the most efficient
    one that keeps the plan payable (sells first, so a buy may wait for a sell that funds
    it), and proposes the 1-, 2-, ... `max_steps`-trade prefixes so the
    evaluator can see whether one more trade is worth its cost.
    """

    name = "cost_optimized"
    version = "1.0.0"
    author = "planforge"
    description = "Few trades with the highest priority per transaction cost."
    tags = ("buy", "sell", "cost")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        max_steps: int = Field(default=3, ge=1, le=10, description="Most trades per sequence.")

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        p = coerce_params(cls.Params, params)
        return min(p.max_steps, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)

        def efficiency(action: Action) -> tuple[float, tuple[Any, ...]]:
            cost = max(trade_cost(context, action.value), 1e-12)
            return (-action.priority / cost, action_order(action))

        pool = sorted(ranked(candidates), key=efficiency)
        chosen: list[Action] = []
        out: list[ActionSequence] = []
        while len(chosen) < p.max_steps:
            used = {a.key for a in chosen}
            for action in pool:
                if action.key in used:
                    continue
                trial = _sells_first([*chosen, action])
                if _payable(context, trial):
                    chosen.append(action)
                    out.append(trial)
                    break
            else:
                break
        return unique_sequences(out, p.max_steps)


class AdaptivePattern(PatternGenerator):
    """Chooses its shape from the cash position: sell-heavy when short, buy-heavy when flush.

    With cash below `low_cash_fraction` of the portfolio it proposes `max_steps - 1` sells
    and one buy (raise money first); above `high_cash_fraction`, buys only (idle cash is
    a drag); in between, half sells and half buys. Sells and buys are the best candidates
    of any category; buys are kept only while cash covers them.
    """

    name = "adaptive"
    version = "1.0.0"
    author = "planforge"
    description = "Sell-heavy when cash is short, buy-heavy when cash is plentiful."
    tags = ("buy", "sell", "adaptive", "cash")
    dependencies = ()

    class Params(BaseModel):
        model_config = _PARAMS

        low_cash_fraction: float = Field(
            default=0.02, ge=0.0, le=1.0, description="Below this cash share, favour sells."
        )
        high_cash_fraction: float = Field(
            default=0.15, ge=0.0, le=1.0, description="Above this cash share, buy only."
        )
        max_steps: int = Field(default=4, ge=2, le=10, description="Most trades per sequence.")

        @model_validator(mode="after")
        def _ordered(self) -> AdaptivePattern.Params:
            if self.low_cash_fraction > self.high_cash_fraction:
                raise ValueError("low_cash_fraction must not exceed high_cash_fraction")
            return self

    @staticmethod
    def shape(context: PortfolioContext, params: AdaptivePattern.Params) -> tuple[int, int]:
        """(sells, buys) for this context: the regime the pattern picked."""
        total = Book.of(context).total_value
        share = context.cash / total if total > 0 else 0.0
        steps = params.max_steps
        if share < params.low_cash_fraction:
            return steps - 1, 1
        if share > params.high_cash_fraction:
            return 0, steps
        return steps // 2, steps - steps // 2

    @classmethod
    def estimate_output(cls, params: Any, *, candidates: int, max_depth: int) -> int:
        """Most sequences this pattern returns, for dry runs."""
        return min(1, candidates)

    def generate(
        self, context: PortfolioContext, candidates: Candidates, params: Any
    ) -> list[ActionSequence]:
        p = coerce_params(self.Params, params)
        max_sells, max_buys = self.shape(context, p)
        sells = _one_per_symbol(ranked(candidates, (), SELL))[:max_sells]
        buys = ranked(candidates, (), BUY)
        return unique_sequences([arrange(context, sells, buys, max_buys)], 1)


def _one_per_symbol(actions: Sequence[Action]) -> list[Action]:
    seen: set[str] = set()
    out: list[Action] = []
    for action in actions:
        if action.key not in seen:
            seen.add(action.key)
            out.append(action)
    return out


def _sells_first(actions: Sequence[Action]) -> ActionSequence:
    return (
        *(a for a in actions if a.side == SELL),
        *(a for a in actions if a.side != SELL),
    )


def _payable(context: PortfolioContext, sequence: ActionSequence) -> bool:
    cash = context.cash
    for action in sequence:
        cost = trade_cost(context, action.value)
        if action.side == SELL:
            cash += action.value - cost
        else:
            cash -= action.value + cost
            if cash < -1e-9:
                return False
    return True
