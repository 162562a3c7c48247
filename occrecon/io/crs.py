"""Linear units of georeferenced scans, read from the coordinate reference system they carry.

Aerial and mobile LiDAR is often stored in feet (US state plane systems), and the
vertical axis may use another unit than the horizontal ones. The scene pipeline
cuts a scan into voxels of a fixed size in metres, so it must know the unit: a
scan in feet read as metres gets voxels 3.3 times too fine for the network.

LAS files state their CRS either as WKT (record 2112 of ``LASF_Projection``) or as
GeoTIFF keys (record 34735); both are read here without pyproj, which would be a
large dependency for two numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

UNITS_PER_METRE: dict[str, float] = {"m": 1.0, "cm": 100.0, "mm": 1000.0, "ft": 1 / 0.3048, "us-ft": 3937 / 1200}
"""How many input units make one metre, by the names ``--units`` takes."""

#: EPSG unit-of-measure codes for lengths: metres per unit, name.
EPSG_LENGTH_UNITS: dict[int, tuple[float, str]] = {
    9001: (1.0, "metre"),
    9002: (0.3048, "foot"),
    9003: (1200.0 / 3937.0, "US survey foot"),
    9036: (1000.0, "kilometre"),
}

_GEOKEY_PROJ_LINEAR_UNITS = 3076
_GEOKEY_PROJ_LINEAR_UNIT_SIZE = 3077
_GEOKEY_MODEL_TYPE = 1024  # 1 projected, 2 geographic, 3 geocentric
_GEOKEY_VERTICAL_UNITS = 4099
_USER_DEFINED = 32767


class GeographicCRSError(ValueError):
    """The CRS is geographic: x and y are angles (degrees), which cannot be meshed as lengths."""


@dataclass(frozen=True)
class LinearUnits:
    """Metres per unit of a scan's horizontal (x, y) and vertical (z) coordinates."""

    horizontal: float
    vertical: float
    horizontal_name: str
    vertical_name: str
    origin: str = ""
    """Where the units were read, e.g. "LAS header (WKT)"."""

    def units_per_metre(self) -> "np.ndarray":
        """(3,) input units that make one metre along x, y and z."""
        import numpy as np  # here: the CLI imports this module for its unit names and starts without numpy

        return 1.0 / np.array([self.horizontal, self.horizontal, self.vertical])

    def describe(self) -> str:
        """E.g. ``foot (0.3048 m)`` or ``x, y in US survey foot (0.3048006 m), z in metre``."""
        horizontal = _named(self.horizontal_name, self.horizontal)
        if math.isclose(self.horizontal, self.vertical, rel_tol=1e-9):
            return horizontal
        return f"x, y in {horizontal}, z in {_named(self.vertical_name, self.vertical)}"


def _named(name: str, metres: float) -> str:
    return name if metres == 1.0 else f"{name} ({metres:.7g} m)"


@dataclass
class _Node:
    keyword: str
    values: list[Any]


def _parse_wkt(text: str) -> _Node:
    """A WKT string (1 or 2) as a tree of ``_Node(keyword, values)``; values are str, float or _Node."""
    tokens = re.findall(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_]*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[\[\](),]', text)
    position = 0

    def node() -> _Node:
        nonlocal position
        keyword = tokens[position]
        position += 1
        values: list[Any] = []
        if position < len(tokens) and tokens[position] in "[(":
            position += 1
            while position < len(tokens) and tokens[position] not in "])":
                token = tokens[position]
                if token == ",":
                    position += 1
                elif token.startswith('"'):
                    values.append(token[1:-1].replace('""', '"'))
                    position += 1
                elif re.match(r"[A-Za-z_]", token):
                    values.append(node())
                else:
                    values.append(float(token))
                    position += 1
            position += 1
        return _Node(keyword.upper(), values)

    if not tokens:
        raise ValueError("empty WKT")
    return node()


def _children(node: _Node) -> list[_Node]:
    return [v for v in node.values if isinstance(v, _Node)]


def _find(node: _Node, keywords: set[str], skip: frozenset[str] = frozenset()) -> _Node | None:
    """The first node (depth first) with one of ``keywords``, not looking inside ``skip`` nodes."""
    if node.keyword in keywords:
        return node
    if node.keyword in skip:
        return None
    for child in _children(node):
        found = _find(child, keywords, skip)
        if found is not None:
            return found
    return None


def _unit_of(node: _Node | None) -> tuple[float, str] | None:
    if node is None:
        return None
    names = [v for v in node.values if isinstance(v, str)]
    factors = [v for v in node.values if isinstance(v, float)]
    if not names or not factors or factors[0] <= 0:
        return None
    return factors[0], names[0]


# Not the projected axes' unit: the base CRS's is an angle, and WKT 2 states each
# conversion parameter (false easting...) with a unit of its own.
_NOT_AXES = frozenset({"GEOGCS", "BASEGEOGCRS", "BASEGEODCRS", "GEOCCS", "CONVERSION", "DERIVINGCONVERSION"})


def units_from_wkt(text: str) -> LinearUnits | None:
    """Linear units of a projected (optionally compound) CRS in WKT 1 or 2; None for other CRSs.

    Raises:
        GeographicCRSError: the CRS is geographic (coordinates in degrees).
        ValueError: the text is not WKT.
    """
    root = _parse_wkt(text)
    projected = _find(root, {"PROJCS", "PROJCRS", "PROJECTEDCRS"})
    if projected is None:
        if _find(root, {"GEOGCS", "GEOGCRS", "GEODCRS", "GEOGRAPHICCRS"}) is not None:
            raise GeographicCRSError("the coordinates are geographic (degrees), not lengths")
        return None
    # WKT 1 gives the projected unit as a direct child, WKT 2 inside its CS/AXIS nodes.
    horizontal = _unit_of(_find(projected, {"UNIT", "LENGTHUNIT"}, skip=_NOT_AXES))
    if horizontal is None:
        return None
    vertical_crs = _find(root, {"VERT_CS", "VERTCRS", "VERTICALCRS"})
    vertical = _unit_of(_find(vertical_crs, {"UNIT", "LENGTHUNIT"})) if vertical_crs is not None else None
    vertical = vertical or horizontal
    return LinearUnits(horizontal[0], vertical[0], horizontal[1], vertical[1], origin="WKT")


def units_from_geokeys(keys: dict[int, float]) -> LinearUnits | None:
    """Linear units from GeoTIFF keys (key id → value, doubles already resolved); None when they name none.

    Raises:
        GeographicCRSError: the keys state a geographic model (coordinates in degrees).
    """
    if keys.get(_GEOKEY_MODEL_TYPE) == 2:
        raise GeographicCRSError("the coordinates are geographic (degrees), not lengths")
    code = keys.get(_GEOKEY_PROJ_LINEAR_UNITS)
    if code is None:
        return None
    if int(code) == _USER_DEFINED:
        size = keys.get(_GEOKEY_PROJ_LINEAR_UNIT_SIZE)
        if not size or size <= 0:
            return None
        horizontal = (float(size), "user-defined unit")
    elif int(code) in EPSG_LENGTH_UNITS:
        horizontal = EPSG_LENGTH_UNITS[int(code)]
    else:
        return None
    vertical_code = keys.get(_GEOKEY_VERTICAL_UNITS)
    vertical = EPSG_LENGTH_UNITS.get(int(vertical_code), horizontal) if vertical_code is not None else horizontal
    return LinearUnits(horizontal[0], vertical[0], horizontal[1], vertical[1], origin="GeoTIFF keys")


def las_units(header: Any) -> LinearUnits | None:
    """Linear units stated by a laspy header's CRS records (WKT first, as LAS 1.4 prefers it); None when none is stated.

    A malformed WKT record is passed over for the GeoTIFF keys.

    Raises:
        GeographicCRSError: the CRS is geographic (degrees).
    """
    records = list(getattr(header, "vlrs", []) or []) + list(getattr(header, "evlrs", None) or [])
    for record in records:
        if getattr(record, "record_id", None) == 2112 and getattr(record, "user_id", "") == "LASF_Projection":
            text = getattr(record, "string", None)
            if text is None:
                text = bytes(getattr(record, "record_data", b"")).decode("utf-8", "replace")
            try:
                units = units_from_wkt(text.rstrip("\x00"))
            except GeographicCRSError:
                raise
            except ValueError:
                units = None
            if units is not None:
                return replace(units, origin="LAS header (WKT)")
    for record in records:
        if getattr(record, "record_id", None) == 34735 and getattr(record, "user_id", "") == "LASF_Projection":
            doubles = next((list(r.doubles) for r in records if getattr(r, "record_id", None) == 34736), [])
            keys: dict[int, float] = {}
            for key in getattr(record, "geo_keys", []):
                if key.tiff_tag_location == 0:
                    keys[int(key.id)] = float(key.value_offset)
                elif key.tiff_tag_location == 34736 and key.value_offset < len(doubles):
                    keys[int(key.id)] = float(doubles[key.value_offset])
            units = units_from_geokeys(keys)
            if units is not None:
                return replace(units, origin="LAS header (GeoTIFF keys)")
    return None
