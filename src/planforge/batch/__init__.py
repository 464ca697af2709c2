"""Batch planning: many portfolios planned on the runtime's executors, on one machine or Ray.

`plan_many(contexts, executor="process" | "ray", config=...)` yields each input's result as
it finishes, with bounded memory whatever the input's size; `planforge batch` writes them to
a resumable JSON Lines (or Parquet) OUTPUT in input order.
"""

from planforge.batch._inputs import (
    CONTEXT_SUFFIXES,
    BatchInput,
    as_toml_text,
    bucket_inputs,
    config_digest,
    context_digest,
    generated_inputs,
    inputs_from,
    read_inputs,
)
from planforge.batch._output import JsonlOutput, OutputExists
from planforge.batch._parquet import parquet_paths, write_parquet
from planforge.batch._plan_many import DEFAULT_OBJECTIVE, EXECUTOR_NAMES, BatchResult, plan_many
from planforge.batch._record import RunRecorder

__all__ = [
    "CONTEXT_SUFFIXES",
    "DEFAULT_OBJECTIVE",
    "EXECUTOR_NAMES",
    "BatchInput",
    "BatchResult",
    "JsonlOutput",
    "OutputExists",
    "RunRecorder",
    "as_toml_text",
    "bucket_inputs",
    "config_digest",
    "context_digest",
    "generated_inputs",
    "inputs_from",
    "parquet_paths",
    "plan_many",
    "read_inputs",
    "write_parquet",
]
