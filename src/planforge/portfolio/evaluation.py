"""Vectorised simulation and scoring of portfolio trade sequences.

One score function rates the current portfolio and every end state, so `improvement`
always compares like with like.

The score
---------
With v_i the value of security i in the base currency (quantity x current price x FX rate),
c the cash, V = sum(v_i) the invested value and T = V + c the total value:

    fit_S = 1 - 0.5 * sum_{g in S} |W_g - t_g|,  W_g = sum_{i in g} v_i / T
                      for each non-empty target set S (by_security, by_country, by_industry);
                      a group without a target is not counted (neutral)
    A     = mean of fit_S over the non-empty target sets (1.0 when there are none)
    D     = 1 - sum_i (v_i / V)^2     (1 - Herfindahl index of the invested positions)
    Q     = sum_i q_i * v_i / V       (value-weighted mean of Security.quality)
    score = (w_A * A + w_D * D + w_Q * Q) / (w_A + w_D + w_Q)  -  k * C / T_0

where w_A, w_D, w_Q are `allocation_weight`, `diversification_weight` and `quality_weight`,
k is `cost_penalty_factor`, C the sequence's total transaction costs and T_0 the total value
before trading (the penalty is 0 when T_0 is 0). D and Q are 0 when less than 1e-9 of the
total value is invested. Every A, D, Q lies in [0, 1].

The simulation
--------------
Steps execute in order at the price the context gives: a held symbol at its position's
`current_price` (in the position's currency), another at its security's `price`, and only
when the context has neither at the action's own price. The value in the base currency is
quantity x price x FX rate and the cost is `costs.fixed + costs.percent * value`. A sell adds
`value - cost` to the cash, a buy takes `value + cost`. A sequence is infeasible (score
-inf, nothing skipped silently) when the cash would go below zero after any step, it sells
more than is held, it names a symbol twice, or a step breaks a rule (unknown symbol or side,
no price or FX rate, buying or selling not allowed, an ineligible symbol, a trade below the
minimum value, a sell before the minimum holding period or within the sell cooldown or at a
loss beyond `max_loss`, a buy within the buy cooldown). The empty sequence is the current
state.

How it is fast: the context is turned once into a `PortfolioModel` (cached by digest), each
distinct `Action` object once into a row of per-action numbers (a step touches one security,
so the end state differs from the current one in at most depth positions, and every sum the
score needs changes by a per-action delta), and a batch of sequences into a depth x batch
matrix of action rows. The allocation terms of untouched groups depend on the sequence only
through 1/T, a convex piecewise-linear function evaluated with one binary search; the
touched groups are corrected step by step. Batches run in chunks of
`evaluation_chunk_size` sequences to bound memory.

Where it lives
--------------
`_settings` (the `[planner]` keys), `_model` (the context as arrays, the per-action table
and the model cache), `_address` (each step's table row, from its action's address),
`_targets` (the allocation terms), `_rules` (whether one action may execute) and `_scoring`
(the kernel). This module is their public face.
"""

from __future__ import annotations

from planforge.portfolio._model import ActionRecord, PortfolioModel, model_for
from planforge.portfolio._rules import action_problem
from planforge.portfolio._scoring import ScoreDetail, evaluate_sequences, score_detail
from planforge.portfolio._settings import PortfolioSettings

__all__ = [
    "ActionRecord",
    "PortfolioModel",
    "PortfolioSettings",
    "ScoreDetail",
    "action_problem",
    "evaluate_sequences",
    "model_for",
    "score_detail",
]
