"""Portfolio rebalancing: the holistic engine's reference domain."""
