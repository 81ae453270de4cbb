import numpy as np

from visloc_ros.core.geo import Datum, datum_for, enu_to_geodetic, geodetic_to_enu


def test_roundtrip_and_axes():
    d = Datum(31.262, 34.804, 280.0)
    lat = d.lat + np.array([0.0, 0.001, -0.002])
    lon = d.lon + np.array([0.0, 0.002, 0.001])
    enu = geodetic_to_enu(lat, lon, np.full(3, 290.0), d)
    assert np.allclose(enu[0], [0, 0, 10.0], atol=1e-3)
    la, lo, al = enu_to_geodetic(enu, d)
    assert np.allclose(la, lat, atol=1e-9) and np.allclose(lo, lon, atol=1e-9) and np.allclose(al, 290.0, atol=1e-3)
    # 0.001 deg north is ~110.9 m at this latitude; east is x, north is y
    north = geodetic_to_enu(d.lat + 0.001, d.lon, d.alt, d)
    east = geodetic_to_enu(d.lat, d.lon + 0.001, d.alt, d)
    assert abs(north[1] - 110.9) < 0.5 and abs(north[0]) < 1e-6
    assert abs(east[0] - 95.2) < 0.5 and abs(east[1]) < 0.01


def test_datum_for_is_the_centre():
    d = datum_for(np.array([10.0, 12.0]), np.array([20.0, 22.0]), np.array([5.0, 3.0]))
    assert (d.lat, d.lon, d.alt) == (11.0, 21.0, 3.0)
