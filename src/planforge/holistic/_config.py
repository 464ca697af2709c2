"""The holistic planner's TOML configuration: parsed into typed models, or one clear error.

```toml
[planner]                 # the engine's keys (EngineSettings) and the domain's (its Settings)
max_depth = 5
[opportunity_calculators.profit_taking]
enabled = true
[opportunity_calculators.profit_taking.params]
windfall_threshold = 0.3
```

Rules:

- Every problem is a `ConfigError` whose `key` names the offending key (`None` for the whole
  document: bad TOML, too large). Nothing is returned until everything is valid, so a bad
  file never half-applies.
- `[planner]` keys go to `EngineSettings` when the engine owns them, the others to the
  domain's Settings model; a key that neither knows is an error listing the valid keys. A key
  both declare is given to both.
- Module tables must name registered modules (metadata only, no import). Only ENABLED modules
  are imported, and their `params` validated against the module's `Params` model; a disabled
  module's params are kept as written and validated when it is enabled. `enabled` defaults to
  false.
- Module order never depends on the file: `enabled(kind)` lists modules by name.
- TOML has no null: `module_timeout_s = 0` means "no timeout, run modules inline" (None), and
  `dump_config` leaves out keys whose value is None.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from planforge.holistic._cache import sha256_digest
from planforge.holistic._estimate import estimate_sequences
from planforge.holistic._models import ENGINE_PARAMS, HolisticConfig, ModuleConfig, default_config
from planforge.holistic._parse import MAX_CONFIG_BYTES, load_config, parse_config
from planforge.holistic._schema import config_json_schema
from planforge.holistic._settings import EngineSettings
from planforge.holistic.errors import ConfigError
from planforge.holistic.modules import KINDS

__all__ = [
    "ENGINE_PARAMS",
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "EngineSettings",
    "HolisticConfig",
    "ModuleConfig",
    "config_digest",
    "config_json_schema",
    "default_config",
    "dump_config",
    "estimate_sequences",
    "load_config",
    "parse_config",
]


def _without_none(value: Any) -> Any:
    """TOML has no null: unset optional values are left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(item) for item in value]
    return value


def dump_config(config: HolisticConfig) -> str:
    """TOML text that parses back to an equal configuration (same `config_digest`).

    Every key is written, defaults included, so the text is a complete record; planner keys
    in model order, modules by kind (pipeline order) then name, params by name.
    """
    planner = config.planner.model_dump(mode="json")
    if planner.get("module_timeout_s") is None:
        planner["module_timeout_s"] = 0
    for key, value in config.domain.model_dump(mode="json", by_alias=True).items():
        planner.setdefault(key, value)
    document: dict[str, Any] = {"planner": planner}
    for kind in KINDS:
        modules: dict[str, Any] = {}
        for name, module in config.modules[kind].items():
            table: dict[str, Any] = {"enabled": module.enabled}
            params = module.params_dict()
            if params:
                table["params"] = dict(sorted(params.items()))
            modules[name] = table
        if modules:
            document[kind] = modules
    return tomli_w.dumps(_without_none(document))


def config_digest(config: HolisticConfig) -> str:
    """sha256 of the canonical JSON of `to_dict()`: equal configurations, equal digests."""
    return sha256_digest(config.to_dict())
