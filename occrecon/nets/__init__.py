"""Network architectures of ONet and ConvONet, loadable from the original checkpoints.

Public API:
    build_network: architecture block (or preset) -> :class:`OccupancyNet`.
    ARCHITECTURE_PRESETS: registry name -> complete model config.
    legacy_cbn_to_current / current_cbn_to_legacy: ONet CBN state-dict converters.
"""

from occrecon.nets.model import OccupancyNet, build_network
from occrecon.nets.onet import current_cbn_to_legacy, legacy_cbn_to_current
from occrecon.nets.presets import ARCHITECTURE_PRESETS, get_preset

__all__ = [
    "ARCHITECTURE_PRESETS",
    "OccupancyNet",
    "build_network",
    "current_cbn_to_legacy",
    "get_preset",
    "legacy_cbn_to_current",
]
