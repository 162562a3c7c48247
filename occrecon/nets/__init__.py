"""Network architectures of ONet and ConvONet, loadable from the original checkpoints.

Public API:
    build_network: architecture block (or preset) -> :class:`OccupancyNet`.
    ARCHITECTURE_PRESETS: registry name -> complete model config.
    legacy_cbn_to_current / current_cbn_to_legacy: ONet CBN state-dict converters.
    upstream_arithmetic: run a network as upstream's modules do, without the fast paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from occrecon._lazy import lazy_getattr

# Imported on first use (PEP 562): the presets are plain data that `occrecon models`
# lists without paying for torch, which the networks import.
_EXPORTS = {
    "ARCHITECTURE_PRESETS": "occrecon.nets.presets",
    "get_preset": "occrecon.nets.presets",
    "OccupancyNet": "occrecon.nets.model",
    "build_network": "occrecon.nets.model",
    "current_cbn_to_legacy": "occrecon.nets.onet",
    "legacy_cbn_to_current": "occrecon.nets.onet",
    "upstream_arithmetic": "occrecon.nets.fast",
}

if TYPE_CHECKING:
    from occrecon.nets.model import OccupancyNet, build_network
    from occrecon.nets.onet import current_cbn_to_legacy, legacy_cbn_to_current
    from occrecon.nets.fast import upstream_arithmetic
    from occrecon.nets.presets import ARCHITECTURE_PRESETS, get_preset


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ARCHITECTURE_PRESETS",
    "OccupancyNet",
    "build_network",
    "current_cbn_to_legacy",
    "get_preset",
    "legacy_cbn_to_current",
    "upstream_arithmetic",
]
