"""Synthetic portfolios: valid contexts, shaped like the sample, the same in every process."""

from __future__ import annotations

import json
import subprocess
import sys

from planforge.portfolio.context import parse_context
from planforge.portfolio.synthetic import generate_portfolio, generate_portfolios


def test_every_generated_portfolio_is_a_valid_sample_sized_context() -> None:
    for _, raw in generate_portfolios(50, seed=1):
        context = parse_context(raw)
        assert 14 <= len(context.positions) <= 24
        assert 32 <= len(context.securities) <= 40
        held = {p.symbol for p in context.positions}
        assert held <= {s.symbol for s in context.securities}
        assert set(context.restrictions.ineligible) <= held
        assert abs(sum(context.targets.by_country.values()) - 1.0) < 1e-6
        assert {p.currency for p in context.positions} - {"EUR"} <= set(context.fx_rates)


def test_the_series_is_the_same_in_a_new_process() -> None:
    code = (
        "import json; from planforge.portfolio.synthetic import generate_portfolio; "
        "print(json.dumps(generate_portfolio(17, seed=2), sort_keys=True))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == generate_portfolio(17, seed=2)
    assert generate_portfolio(17, seed=2) != generate_portfolio(18, seed=2)
