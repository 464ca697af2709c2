"""The engine's own `[planner]` keys, each with its bound."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EngineSettings"]


class EngineSettings(BaseModel):
    """The engine's own `[planner]` keys; every stage's output has an explicit bound here."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_depth: int = Field(5, ge=1, le=10, description="Most steps in one sequence.")
    max_opportunities_per_category: int = Field(
        5, ge=1, le=1000, description="Most candidates each opportunity calculator keeps."
    )
    priority_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Sequences whose mean action priority is below this are infeasible.",
    )
    beam_width: int = Field(10, ge=1, le=1000, description="Sequences a beam search keeps.")
    max_candidates: int = Field(
        24,
        ge=1,
        le=1000,
        description="Most candidates (all categories, by priority) given to sequence generators.",
    )
    candidate_variants: Literal["all", "best"] = Field(
        "all",
        description="Sizes of one trade given to sequence generators: every distinct size "
        "the calculators proposed (`all`), or only the highest-priority one per side and "
        "symbol (`best`, the behaviour before 2.0, kept for comparisons).",
    )
    max_sequences: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="Bound on every stage's output, and on the sequences evaluated.",
    )
    max_patterns_per_generator: int = Field(
        200, ge=1, le=100_000, description="Most sequences one pattern generator may return."
    )
    module_timeout_s: float | None = Field(
        2.0,
        ge=0.0,
        le=600.0,
        description="Seconds a module call may take; 0 runs modules inline without a timeout.",
    )
    slow_call_s: float = Field(
        1.0,
        gt=0.0,
        le=600.0,
        description="A module call slower than this counts as slow for its circuit breaker.",
    )
    breaker_window: int = Field(
        20, ge=1, le=10_000, description="Module calls in each circuit breaker's sliding window."
    )
    breaker_min_calls: int = Field(
        5, ge=1, le=10_000, description="Calls needed in the window before a breaker can trip."
    )
    breaker_failure_rate: float = Field(
        0.5, gt=0.0, le=1.0, description="Failure rate in the window that opens a breaker."
    )
    breaker_slow_call_rate: float = Field(
        1.0, gt=0.0, le=1.0, description="Slow-call rate in the window that opens a breaker."
    )
    breaker_open_s: float = Field(
        30.0,
        gt=0.0,
        le=86_400.0,
        description="Seconds an open breaker skips its module before trial calls (backs off).",
    )
    cache_ttl_s: float = Field(
        60.0,
        ge=0.0,
        le=86_400.0,
        description="Seconds a cached module result stays valid; 0 turns the cache off.",
    )
    cache_max_entries: int = Field(
        512, ge=0, le=1_000_000, description="Most cached module results; 0 turns the cache off."
    )
    evaluation_batch_size: int = Field(
        65_536, ge=1, le=10_000_000, description="Sequences scored per vectorised batch."
    )

    @field_validator("module_timeout_s")
    @classmethod
    def _zero_means_inline(cls, value: float | None) -> float | None:
        return None if value == 0 else value
