"""The runtime engine tests' fixtures: plugin planners in a directory, a factory over them
and an in-process bus (a test module may define its own of the same name)."""

from tests.runtime._engine_support import bus, factory, plugin_dir

__all__ = ["bus", "factory", "plugin_dir"]
