"""The factory layer: discovery, sandbox, ranking, registry, telemetry and `PlannerFactory`."""
