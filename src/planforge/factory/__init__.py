"""The factory layer: discovery, sandbox, ranking, registry, telemetry and `PlannerFactory`."""

# The plugin engine, for every plugin group (the holistic modules use it too).
from planforge.factory._plugins import PluginGroup, PluginProblem, PluginScan, import_file, rank
from planforge.factory._reader import NOT_LITERAL, SourceClass, read_source
from planforge.factory.entrypoints import EntryPoint

__all__ = [
    "NOT_LITERAL",
    "EntryPoint",
    "PluginGroup",
    "PluginProblem",
    "PluginScan",
    "SourceClass",
    "import_file",
    "rank",
    "read_source",
]
