"""The portfolio domain's settings: the `[planner]` keys that weigh the score and set the
trading rules (see `planforge.portfolio.evaluation` for the formula they enter)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PortfolioSettings"]


class PortfolioSettings(BaseModel):
    """The portfolio domain's `[planner]` keys: scoring weights, costs and trading rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_penalty_factor: float = Field(
        default=1.0,
        ge=0.0,
        le=1000.0,
        description="Weight of transaction costs in the score: k in score - k * costs / value.",
    )
    allocation_weight: float = Field(
        default=0.5, ge=0.0, le=100.0, description="Weight of the allocation fit to targets."
    )
    diversification_weight: float = Field(
        default=0.3, ge=0.0, le=100.0, description="Weight of diversification (1 - HHI)."
    )
    quality_weight: float = Field(
        default=0.2, ge=0.0, le=100.0, description="Weight of the value-weighted quality."
    )
    min_hold_days: int = Field(
        default=90, ge=0, le=36_500, description="A position is sold only after this many days."
    )
    sell_cooldown_days: int = Field(
        default=180, ge=0, le=36_500, description="No sell of a symbol sold within this many days."
    )
    buy_cooldown_days: int = Field(
        default=30, ge=0, le=36_500, description="No buy of a symbol bought within this many days."
    )
    max_loss: float = Field(
        default=-0.20,
        ge=-1.0,
        le=0.0,
        description="No sell of a position whose loss on the average price is worse than this.",
    )
    allow_buy: bool = Field(
        default=True, description="Buys are allowed (and the context's restriction too)."
    )
    allow_sell: bool = Field(
        default=True, description="Sells are allowed (and the context's restriction too)."
    )
    min_trade_value: float | None = Field(
        default=None,
        ge=0.0,
        description="Smallest trade in the base currency; unset uses the context's.",
    )
    evaluation_chunk_size: int = Field(
        default=16_384,
        ge=1,
        le=1_000_000,
        description="Sequences scored per vectorised chunk (bounds memory).",
    )

    @model_validator(mode="after")
    def _check_weights(self) -> PortfolioSettings:
        if self.allocation_weight + self.diversification_weight + self.quality_weight <= 0:
            raise ValueError("allocation, diversification and quality weights cannot all be 0")
        return self
