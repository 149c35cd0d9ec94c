"""Latitude/longitude <-> local east/north metres around a reference point (the base station).

A local tangent plane on the WGS84 ellipsoid: exact enough (millimetres) over the few hundred metres of a site.
"""

import numpy as np

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


def _radii(lat0_deg):
    """Meridional and prime-vertical radii of curvature (m) at the reference latitude."""
    s2 = np.sin(np.radians(lat0_deg)) ** 2
    meridional = WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s2) ** 1.5
    prime_vertical = WGS84_A / np.sqrt(1 - WGS84_E2 * s2)
    return meridional, prime_vertical


def latlon_to_enu(lat, lon, lat0, lon0):
    """Degrees -> (..., 2) east and north metres from (lat0, lon0)."""
    meridional, prime_vertical = _radii(lat0)
    east = np.radians(np.asarray(lon) - lon0) * prime_vertical * np.cos(np.radians(lat0))
    north = np.radians(np.asarray(lat) - lat0) * meridional
    return np.stack([east, north], axis=-1)


def enu_to_latlon(east, north, lat0, lon0):
    """Inverse of `latlon_to_enu`: metres -> (lat, lon) degrees."""
    meridional, prime_vertical = _radii(lat0)
    lat = lat0 + np.degrees(np.asarray(north) / meridional)
    lon = lon0 + np.degrees(np.asarray(east) / (prime_vertical * np.cos(np.radians(lat0))))
    return lat, lon
