"""Portfolio rebalancing: the holistic engine's reference domain.

Names are imported on first use (PEP 562): the package's modules are imported on their own
by the store and the workers, and must not pull the planner in with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planforge._lazy import lazy_exports

__all__ = [
    "Bucket",
    "BucketReport",
    "ContextError",
    "HolisticPortfolioPlanner",
    "PortfolioContext",
    "PortfolioDomain",
    "PortfolioSettings",
    "compare_configs",
    "dry_run_config",
    "load_context",
    "parse_context",
    "plan_all_buckets",
]

# where each public name lives; the package imports a module only when its name is asked for
_EXPORTS: dict[str, str] = {
    "Bucket": "planforge.portfolio.buckets",
    "BucketReport": "planforge.portfolio.buckets",
    "ContextError": "planforge.portfolio.errors",
    "HolisticPortfolioPlanner": "planforge.portfolio.planner",
    "PortfolioContext": "planforge.portfolio.context",
    "PortfolioDomain": "planforge.portfolio.domain",
    "PortfolioSettings": "planforge.portfolio.evaluation",
    "compare_configs": "planforge.portfolio._compare",
    "dry_run_config": "planforge.portfolio._compare",
    "load_context": "planforge.portfolio.context",
    "parse_context": "planforge.portfolio.context",
    "plan_all_buckets": "planforge.portfolio.buckets",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from planforge.portfolio._compare import compare_configs, dry_run_config
    from planforge.portfolio.buckets import Bucket, BucketReport, plan_all_buckets
    from planforge.portfolio.context import PortfolioContext, load_context, parse_context
    from planforge.portfolio.domain import PortfolioDomain
    from planforge.portfolio.errors import ContextError
    from planforge.portfolio.evaluation import PortfolioSettings
    from planforge.portfolio.planner import HolisticPortfolioPlanner
