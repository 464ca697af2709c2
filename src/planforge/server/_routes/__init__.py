"""One router per resource; `create_app` includes them all."""

__all__ = ["configs", "events", "ops", "planners", "plans"]
