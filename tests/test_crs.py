"""Linear units read from the coordinate reference systems of georeferenced scans (LAS/LAZ)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from occrecon.errors import InputError
from occrecon.io.crs import GeographicCRSError, LinearUnits, las_units, units_from_geokeys, units_from_wkt
from occrecon.io.readers import read_points

WKT1_FOOT = (
    'PROJCS["NAD_1983_HARN_Lambert_Conformal_Conic",GEOGCS["GCS_North_American_1983_HARN",'
    'DATUM["NAD83",SPHEROID["GRS_1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],'
    'PARAMETER["false_easting",1312335.958005249],UNIT["foot",0.3048,AUTHORITY["EPSG","9002"]]]'
)
# WKT 2 states the false easting in metres and the axes in US survey feet: the axes decide.
WKT2_US_FOOT = (
    'PROJCRS["NAD83 / Oregon North (ft)",BASEGEOGCRS["NAD83",DATUM["NAD83",ELLIPSOID["GRS 1980",6378137,298.257222101,'
    'LENGTHUNIT["metre",1]]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]]],'
    'CONVERSION["SPCS83 Oregon North",METHOD["Lambert Conic Conformal (2SP)"],PARAMETER["False easting",2500000.0001424,'
    'LENGTHUNIT["metre",1]]],CS[Cartesian,2],AXIS["easting (X)",east,ORDER[1],LENGTHUNIT["US survey foot",0.304800609601219]],'
    'AXIS["northing (Y)",north,ORDER[2],LENGTHUNIT["US survey foot",0.304800609601219]]]'
)
COMPOUND = (
    'COMPD_CS["NAD83 + NAVD88",PROJCS["p",GEOGCS["g",UNIT["degree",0.0174532925199433]],UNIT["US survey foot",0.3048006096012192]],'
    'VERT_CS["NAVD88",VERT_DATUM["North American Vertical Datum 1988",2005],UNIT["metre",1]]]'
)
GEOGRAPHIC = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],UNIT["degree",0.0174532925199433]]'


def test_wkt_units_are_the_projected_axes_and_the_vertical_crs():
    foot = units_from_wkt(WKT1_FOOT)
    assert (foot.horizontal, foot.vertical, foot.horizontal_name) == (0.3048, 0.3048, "foot")
    assert foot.describe() == "foot (0.3048 m)"
    us_foot = units_from_wkt(WKT2_US_FOOT)
    assert us_foot.horizontal == pytest.approx(1200 / 3937) and us_foot.vertical == us_foot.horizontal
    mixed = units_from_wkt(COMPOUND)
    assert mixed.horizontal == pytest.approx(1200 / 3937) and mixed.vertical == 1.0
    assert mixed.describe() == "x, y in US survey foot (0.3048006 m), z in metre"
    np.testing.assert_allclose(mixed.units_per_metre(), [3937 / 1200, 3937 / 1200, 1.0])
    with pytest.raises(GeographicCRSError, match="geographic"):
        units_from_wkt(GEOGRAPHIC)
    assert units_from_wkt('LOCAL_CS["arbitrary"]') is None


def test_geotiff_keys_give_units_by_epsg_code_or_size():
    assert units_from_geokeys({1024: 1, 3076: 9001}).horizontal == 1.0
    us_foot_up_metres = units_from_geokeys({1024: 1, 3076: 9003, 4099: 9001})
    assert us_foot_up_metres.horizontal == pytest.approx(0.3048006096) and us_foot_up_metres.vertical == 1.0
    assert units_from_geokeys({3076: 32767, 3077: 0.5}).horizontal == 0.5
    assert units_from_geokeys({1024: 1}) is None
    with pytest.raises(GeographicCRSError, match="geographic"):
        units_from_geokeys({1024: 2})


def _key(key_id, location, value):
    return SimpleNamespace(id=key_id, tiff_tag_location=location, count=1, value_offset=value)


def test_las_header_records_wkt_first_then_geokeys():
    wkt = SimpleNamespace(user_id="LASF_Projection", record_id=2112, string=WKT1_FOOT + "\x00")
    keys = SimpleNamespace(user_id="LASF_Projection", record_id=34735, geo_keys=[_key(1024, 0, 1), _key(3076, 0, 9001)])
    assert las_units(SimpleNamespace(vlrs=[keys, wkt], evlrs=None)).origin == "LAS header (WKT)"
    from_keys = las_units(SimpleNamespace(vlrs=[keys], evlrs=None))
    assert from_keys.horizontal == 1.0 and from_keys.origin == "LAS header (GeoTIFF keys)"
    # A user-defined unit whose size sits in the GeoDoubleParams record.
    user = SimpleNamespace(user_id="LASF_Projection", record_id=34735, geo_keys=[_key(3076, 0, 32767), _key(3077, 34736, 1)])
    doubles = SimpleNamespace(user_id="LASF_Projection", record_id=34736, doubles=[7.0, 0.25])
    assert las_units(SimpleNamespace(vlrs=[user, doubles], evlrs=None)).horizontal == 0.25
    assert las_units(SimpleNamespace(vlrs=[], evlrs=None)) is None
    # A WKT record that does not parse leaves the decision to the keys.
    broken = SimpleNamespace(user_id="LASF_Projection", record_id=2112, string="[[[")
    assert las_units(SimpleNamespace(vlrs=[broken, keys], evlrs=None)).origin == "LAS header (GeoTIFF keys)"


def _las_file(path, points, wkt=None):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = [0.001, 0.001, 0.001]
    header.offsets = [0.0, 0.0, 0.0]
    if wkt is not None:
        from laspy.vlrs.known import WktCoordinateSystemVlr

        header.vlrs.append(WktCoordinateSystemVlr(wkt))
    las = laspy.LasData(header)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    las.write(str(path))
    return path


def test_las_files_carry_their_units_and_geographic_ones_are_refused(tmp_path):
    points = np.random.default_rng(0).uniform(0, 30, (200, 3))
    cloud = read_points(_las_file(tmp_path / "feet.las", points, WKT1_FOOT))
    assert cloud.units == LinearUnits(0.3048, 0.3048, "foot", "foot", origin="LAS header (WKT)")
    np.testing.assert_allclose(cloud.points, points, atol=1e-3)
    assert read_points(_las_file(tmp_path / "plain.las", points)).units is None
    with pytest.raises(InputError, match=r"lonlat\.las: its header says the coordinates are geographic \(degrees\)"):
        read_points(_las_file(tmp_path / "lonlat.las", points, GEOGRAPHIC))


def test_eval_aerial_tile_is_in_feet(eval_dir):
    pytest.importorskip("lazrs")
    units = read_points(eval_dir / "formats" / "autzen_trim.laz").units
    assert units is not None and units.horizontal == 0.3048 and units.vertical == 0.3048


def test_a_malformed_crs_record_leaves_the_points_readable(tmp_path):
    points = np.random.default_rng(1).uniform(0, 10, (100, 3))
    for text in ("[[[", 'PROJCS["cut off",UNIT["foot",'):
        cloud = read_points(_las_file(tmp_path / "odd.las", points, text))
        assert cloud.units is None and len(cloud.points) == 100
