"""Deterministic synthetic land-cover scenes: the built-in demo data and the test data.

Why synthetic: the demo and the tests must run offline with no download, yet exercise the whole
pipeline on imagery that looks like a 1-2 m/px aerial scene, written as georeferenced GeoTIFFs.
Every feature is a function of global pixel coordinates plus a small per-scene plan, so a scene
is rendered in fixed tiles (bounded memory, threads) that join without seams, at any size.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from rsseg.classes import ClassTable
from rsseg.errors import RsSegError

BARE, CROP, FOREST, WATER, ROAD, BUILDING, URBAN = range(7)
SYNTHETIC_CLASSES = ClassTable(
    names=("bare land", "cropland", "forest", "water", "road", "building", "urban ground"),
    colors=((210, 180, 140), (240, 220, 90), (30, 120, 45), (40, 100, 210), (70, 70, 70),
            (220, 40, 40), (200, 150, 210)),
)

# Appearance of each class (RGB before shadows, illumination and sensor noise).
BARE_DARK, BARE_LIGHT = (150, 122, 90), (208, 184, 142)
CROP_RGB = ((92, 128, 48), (126, 152, 62), (68, 104, 42), (200, 182, 104), (176, 154, 84),
            (120, 96, 70))
PASTURE_RGB, FIELD_MARGIN_RGB = (128, 148, 80), (98, 108, 62)
FOREST_DARK, FOREST_LIGHT = (26, 46, 28), (74, 102, 54)
WATER_DEEP, WATER_SHALLOW = (22, 48, 64), (54, 88, 86)
ROAD_RGB, ROAD_MARK_RGB = (96, 98, 104), (214, 212, 200)
URBAN_RGB = (176, 168, 154)
ROOF_RGB = ((172, 74, 54), (140, 62, 48), (194, 114, 82), (88, 100, 122), (222, 222, 216),
            (150, 168, 186))
FLAT_ROOF_FROM = 4  # ROOF_RGB[4:] are flat roofs (dark parapet), the others gabled (two halves)
HAZE_RGB = (0.8, 0.9, 1.1)


_TILE, _PAD = 1024, 16  # render tile and its halo (shadows, blurs), pixels
_TOWN_CELL, _FARM_CELL, _P_TOWN = 360.0, 210.0, 0.3  # spacing of town / farm centres
_NOISE_NORM = 7.0  # ~1 / std of one B-spline-smoothed uniform noise octave
_FOREST_OCT = ((150, 1.0), (60, 0.5), (24, 0.28), (10, 0.12))  # (cell px, amplitude)
_LAKE_OCT = ((220, 1.0), (90, 0.45), (32, 0.22), (12, 0.1))
_AGRI_OCT = ((260, 1.0), (110, 0.5))
_TONE_OCT = ((80, 1.0), (28, 0.5), (9, 0.3))
_BANK_OCT = ((14, 1.0), (6, 0.5))
_F32 = np.float32


# ---------------------------------------------------------------- primitives
def _hash(*keys, salt: int) -> np.ndarray:
    """uint32 hash of integer keys (arrays broadcast): per-parcel randomness without tables."""
    with np.errstate(over="ignore"):
        h = np.asarray(salt & 0xFFFFFFFF, dtype=np.uint32)
        for k in keys:
            k = np.asarray(k)
            k = (k.astype(np.int64) if k.dtype.kind == "f" else k).astype(np.uint32)
            h = h ^ (k + np.uint32(0x9E3779B9) + (h << np.uint32(6)) + (h >> np.uint32(2)))
            h = (h ^ (h >> np.uint32(16))) * np.uint32(0x7FEB352D)
            h = (h ^ (h >> np.uint32(15))) * np.uint32(0x846CA68B)
            h = h ^ (h >> np.uint32(16))
    return h


def _rand(*keys, salt: int) -> np.ndarray:
    return (_hash(*keys, salt=salt) >> np.uint32(8)).astype(_F32) * _F32(1.0 / (1 << 24))


def _bspline(coords: np.ndarray, cell: float) -> tuple[np.ndarray, int]:
    """Cubic B-spline weights (n, m) from grid nodes g0..g0+m-1 to 1-D pixel coordinates."""
    t = coords.astype(np.float64) / cell
    i = np.floor(t).astype(np.int64)
    f = (t - i).astype(_F32)
    g0 = int(i.min()) - 1
    mat = np.zeros((coords.size, int(i.max()) - g0 + 3), _F32)
    weights = ((1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3)
    for k, wk in enumerate(weights):
        mat[np.arange(coords.size), i - g0 - 1 + k] = wk / 6
    return mat, g0


def _fbm(ys: np.ndarray, xs: np.ndarray, salt: int, octaves) -> np.ndarray:
    """Smooth fractal noise on the grid ys x xs (separable matmuls: fast, and tiles agree)."""
    out = np.zeros((ys.size, xs.size), _F32)
    for k, (cell, amp) in enumerate(octaves):
        (my, gy), (mx, gx) = _bspline(ys, cell), _bspline(xs, cell)
        grid = _rand(np.arange(my.shape[1])[:, None] + gy, np.arange(mx.shape[1])[None, :] + gx,
                     salt=salt + 7919 * k) - _F32(0.5)
        out += _F32(amp * _NOISE_NORM) * (my @ grid @ mx.T)
    return out


def _seeds(rng, h: int, w: int, cell: float):
    """Jittered-grid seed points for cells -2..n+2 (the border covers tile halos)."""
    ny, nx = int(h // cell) + 5, int(w // cell) + 5
    gy, gx = np.arange(ny)[:, None] - 2, np.arange(nx)[None, :] - 2
    return (((gy + rng.uniform(0.3, 0.7, (ny, nx))) * cell).astype(_F32),
            ((gx + rng.uniform(0.3, 0.7, (ny, nx))) * cell).astype(_F32))


def _worley(y, x, cell, sy, sx):
    """Distances to the nearest and second-nearest seed, and the nearest seed's table index."""
    cy, cx = np.floor(y / cell).astype(np.int64) + 2, np.floor(x / cell).astype(np.int64) + 2
    best = np.full(y.shape, np.inf, _F32)
    sec, by, bx = best.copy(), np.zeros(y.shape, np.int64), np.zeros(y.shape, np.int64)
    for dy in (-1, 0, 1):
        gy = np.clip(cy + dy, 0, sy.shape[0] - 1)
        for dx in (-1, 0, 1):
            gx = np.clip(cx + dx, 0, sy.shape[1] - 1)
            d = (y - sy[gy, gx]) ** 2 + (x - sx[gy, gx]) ** 2
            closer = d < best
            sec = np.where(closer, best, np.minimum(sec, d))
            best, by = np.where(closer, d, best), np.where(closer, gy, by)
            bx = np.where(closer, gx, bx)
    return np.sqrt(best), np.sqrt(sec), by, bx


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out, (h, w) = np.zeros_like(m), m.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        m[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _mix(a, b, t, mod) -> np.ndarray:
    """Per-pixel colours: a..b by t in [0, 1], times the brightness modulation mod."""
    a = np.asarray(a, _F32)
    return (a + (np.asarray(b, _F32) - a) * np.clip(t, 0, 1)[:, None]) * mod[:, None]


class _Curve:
    """A meandering river or a long road: centreline offset f(u) from a straight axis, tabulated."""

    def __init__(self, rng, cx: float, cy: float, half: int, width: float, river: bool):
        ang = rng.uniform(0, math.pi)
        self.cx, self.cy, self.c, self.s, self.half = cx, cy, math.cos(ang), math.sin(ang), half
        u = np.arange(-half, half + 1, dtype=np.float64)
        f, fp = np.zeros_like(u), np.zeros_like(u)
        specs = (((rng.uniform(500, 1100), rng.uniform(0.3, 0.8)),
                  (rng.uniform(150, 300), rng.uniform(0.05, 0.15))) if river else
                 ((rng.uniform(900, 2500), rng.uniform(0, 0.25)),
                  (rng.uniform(300, 600), rng.uniform(0, 0.04))))
        for lam, slope in specs:  # amplitude from a max slope keeps the distance estimate valid
            a, ph = slope * lam / (2 * math.pi), rng.uniform(0, 2 * math.pi)
            f += a * np.sin(2 * math.pi * u / lam + ph)
            fp += slope * np.cos(2 * math.pi * u / lam + ph)
        self.f = f - f[half]
        self.k = 1 / np.sqrt(1 + fp**2)  # turns the offset across the axis into a normal distance
        wobble = (0.25 if river else 0.0) * np.sin(2 * math.pi * u / rng.uniform(200, 500))
        self.hw = width / 2 * (1 + wobble)
        self.px, self.py = cx + u * self.c - self.f * self.s, cy + u * self.s + self.f * self.c
        self.grid, self.dashed = np.arange(u.size, dtype=np.float64), not river and width >= 9

    def frame(self, y, x):
        """(signed normal distance to the centreline, along-axis u, local half width)."""
        dx, dy = x - self.cx, y - self.cy
        u = dx * self.c + dy * self.s
        t = u + self.half
        off = (dy * self.c - dx * self.s) - np.interp(t, self.grid, self.f)
        dist = (off * np.interp(t, self.grid, self.k)).astype(_F32)
        return dist, u, np.interp(t, self.grid, self.hw)

    def near(self, y0, y1, x0, x1) -> bool:
        m = float(self.hw.max()) + _PAD + 12
        return bool(np.any((self.px > x0 - m) & (self.px < x1 + m)
                           & (self.py > y0 - m) & (self.py < y1 + m)))


def _plan(h: int, w: int, seed: int) -> SimpleNamespace:
    """Everything random about a scene that is not a pure function of pixel coordinates."""
    rng = np.random.default_rng(seed)
    p = SimpleNamespace(h=h, w=w, seed=seed, salt=int(rng.integers(1, 2**31)))
    st = max(1, min(h, w) // 256)  # thresholds are quantiles, so every scene has forest and lakes
    ys, xs = np.arange(0, h, st), np.arange(0, w, st)
    p.thr = {name: float(np.quantile(_fbm(ys, xs, p.salt + off, octs), 1 - q))
             for name, off, octs, q in (("forest", 10, _FOREST_OCT, rng.uniform(0.18, 0.28)),
                                        ("lake", 20, _LAKE_OCT, rng.uniform(0.03, 0.08)))}
    sy, sx = _seeds(rng, h, w, _TOWN_CELL)
    flag = rng.random(sy.shape) < _P_TOWN
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    if not (flag & inside).any():  # every scene gets at least one town
        d = (sy - h / 2) ** 2 + (sx - w / 2) ** 2 + np.where(inside, 0, 1e12)
        flag[np.unravel_index(np.argmin(d), d.shape)] = True
    n = int(flag.sum())
    p.towns = {"sy": sy[flag], "sx": sx[flag], "ang": rng.uniform(0, math.pi / 2, n).astype(_F32),
               "bu": rng.uniform(50, 84, n).astype(_F32), "bv": rng.uniform(42, 66, n).astype(_F32),
               "sw": rng.uniform(7, 10.5, n).astype(_F32),
               "r": (_TOWN_CELL * rng.uniform(0.3, 0.4, n)).astype(_F32)}
    p.farm_sy, p.farm_sx = _seeds(rng, h, w, _FARM_CELL)  # whole farms cultivated: parcel edges
    agri = _fbm(ys, xs, p.salt + 30, _AGRI_OCT)[
        np.clip(np.rint(p.farm_sy / st).astype(int), 0, ys.size - 1),
        np.clip(np.rint(p.farm_sx / st).astype(int), 0, xs.size - 1)]
    fin = (p.farm_sy >= 0) & (p.farm_sy < h) & (p.farm_sx >= 0) & (p.farm_sx < w)
    p.farm_on = agri >= np.quantile(agri[fin] if fin.any() else agri, 1 - rng.uniform(0.5, 0.7))
    half, area = int(math.hypot(h, w)) + 64, math.sqrt(h * w)
    p.rivers = [_Curve(rng, rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, half,
                       rng.uniform(18, 38), True) for _ in range(1 + rng.poisson(area / 3000))]
    in_scene, p.roads = np.flatnonzero(inside[flag]), []
    for _ in range(1 + rng.poisson(area / 900)):
        if in_scene.size and rng.random() < 0.75:  # most long roads run through a town
            t = rng.choice(in_scene)
            cy, cx = p.towns["sy"][t] + rng.normal(0, 20), p.towns["sx"][t] + rng.normal(0, 20)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        p.roads.append(_Curve(rng, float(cx), float(cy), half, rng.uniform(7, 11), False))
    sun, lb, lf = rng.uniform(0, 2 * math.pi), rng.uniform(3, 6), rng.uniform(3, 6)
    gdir = rng.uniform(0, 2 * math.pi)
    p.shadow = (round(lb * math.sin(sun)), round(lb * math.cos(sun)))
    p.fshadow = (round(lf * math.sin(sun)), round(lf * math.cos(sun)))
    p.gain = (rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3)).astype(_F32)  # brightness, colour
    p.haze = rng.uniform(0, 10)
    p.grad = (math.cos(gdir) * rng.uniform(0, 0.12), math.sin(gdir) * rng.uniform(0, 0.12))
    p.vig, p.sigma = rng.uniform(0, 0.12), rng.uniform(1.2, 2.5)
    return p


# ---------------------------------------------------------------- layers
def _town_layer(p, y, x, ti, tone, grain):
    """Street grid, yards and buildings of town ti -> (inside, class, rgb of yards and roofs)."""
    T = {k: v[ti] for k, v in p.towns.items()}
    c, s = np.cos(T["ang"]), np.sin(T["ang"])
    dx, dy = x - T["sx"], y - T["sy"]
    u, v = dx * c + dy * s, dy * c - dx * s
    bu, bv, sw = T["bu"], T["bv"], T["sw"]
    bi, bj = np.floor(u / bu), np.floor(v / bv)
    reach = T["r"] * (0.75 + 0.5 * _rand(ti, bi, bj, salt=p.salt + 100))
    inside = np.hypot((bi + 0.5) * bu, (bj + 0.5) * bv) < reach  # whole blocks: straight edges
    lu, lv = u - bi * bu - sw, v - bj * bv - sw  # coordinates inside the block; street where < 0
    street = (lu < 0) | (lv < 0)
    nlot = np.maximum(1, np.floor((bu - sw) / (14 + 12 * _rand(ti, bi, bj, salt=p.salt + 101))))
    Lu, Lv = (bu - sw) / nlot, (bv - sw) / 2
    li, lj = np.clip(np.floor(lu / Lu), 0, nlot - 1), np.clip(np.floor(lv / Lv), 0, 1)
    la, lb = lu - li * Lu, lv - lj * Lv
    r = [_rand(ti, bi, bj, li, lj, salt=p.salt + 110 + k) for k in range(7)]
    a0, a1 = 1.5 + 0.15 * Lu * r[0], Lu - 1.5 - 0.15 * Lu * r[1]
    b0, b1 = 1.5 + 0.2 * Lv * r[2], Lv - 1.5 - 0.1 * Lv * r[3]
    park = _rand(ti, bi, bj, salt=p.salt + 102) < 0.08
    bld = inside & ~street & ~park & (r[4] > 0.08) & (la > a0) & (la < a1) & (lb > b0) & (lb < b1)
    k = np.flatnonzero(bld)  # drop buildings that a river or a long road would cut
    cu = (bi * bu + sw + li * Lu + (a0 + a1) / 2)[k]
    cv = (bj * bv + sw + lj * Lv + (b0 + b1) / 2)[k]
    gy, gx = T["sy"][k] + cu * s[k] + cv * c[k], T["sx"][k] + cu * c[k] - cv * s[k]
    clear = np.ones(k.size, bool)
    for cur in p.rivers + p.roads:
        d, _, hw = cur.frame(gy, gx)
        clear &= np.abs(d) - hw > 0.5 * np.hypot(a1 - a0, b1 - b0)[k] + 6
    bld[k[~clear]] = False
    ri = np.minimum((r[5] * len(ROOF_RGB)).astype(np.int64), len(ROOF_RGB) - 1)
    ridge_side = np.where((a1 - a0) >= (b1 - b0), lb - (b0 + b1) / 2, la - (a0 + a1) / 2)
    edge = np.minimum(np.minimum(la - a0, a1 - la), np.minimum(lb - b0, b1 - lb)) < 1.5
    shade = np.where(ri >= FLAT_ROOF_FROM, np.where(edge, 0.8, 1.0),
                     np.where(ridge_side < 0, 1.12, 0.86)).astype(_F32)
    cls = np.where(street, ROAD, np.where(bld, BUILDING, URBAN)).astype(np.uint8)
    rgb = np.multiply.outer(1 + 0.12 * (r[6] - 0.5) + 0.05 * tone + 0.05 * grain,
                            np.asarray(URBAN_RGB, _F32))  # yards: per-lot pavement tone
    rgb[bld] = np.asarray(ROOF_RGB, _F32)[ri[bld]] * (shade[bld] * (1 + 0.03 * grain[bld]))[:, None]
    return inside, cls, rgb


def _field_layer(p, y, x, tone, grain):
    """Farm parcels (strips in a per-farm frame) with crop rows -> (is field, rgb of fields)."""
    f1, f2, fy, fx = _worley(y, x, _FARM_CELL, p.farm_sy, p.farm_sx)
    on = p.farm_on[fy, fx]
    y, x, tone, grain, f1, f2, fy, fx = (a[on] for a in (y, x, tone, grain, f1, f2, fy, fx))
    fid = fy * p.farm_sy.shape[1] + fx
    ang = _rand(fid, salt=p.salt + 40) * _F32(math.pi)
    c, s = np.cos(ang), np.sin(ang)
    dx, dy = x - p.farm_sx[fy, fx], y - p.farm_sy[fy, fx]
    u, v = dx * c + dy * s, dy * c - dx * s
    wu, lv = 26 + 50 * _rand(fid, salt=p.salt + 41), 60 + 120 * _rand(fid, salt=p.salt + 42)
    iu = np.floor(u / wu)
    v = v + lv * _rand(fid, iu, salt=p.salt + 43)  # stagger the parcels of neighbouring strips
    iv = np.floor(v / lv)
    border = (u - iu * wu < 1.5) | (v - iv * lv < 1.5) | (f2 - f1 < 2.5)
    r = [_rand(fid, iu, iv, salt=p.salt + 44 + k) for k in range(5)]
    ci = np.minimum((r[1] * len(CROP_RGB)).astype(np.int64), len(CROP_RGB) - 1)
    ra = ang + np.where(r[2] < 0.6, 0, _F32(math.pi / 2)) + (r[2] - 0.5) * 0.1  # row direction
    period, amp = 3.2 + 5.0 * r[3], 0.08 + 0.14 * r[4]
    rows = np.sin((x * np.cos(ra) + y * np.sin(ra)) * (2 * np.pi / period) + 6.28 * r[4])
    pasture, fallow = r[0] > 0.85, r[0] < 0.12  # fallow parcels stay bare land
    rgb = np.asarray(CROP_RGB, _F32)[ci] * (1 + amp * rows + 0.06 * tone + 0.035 * grain)[:, None]
    rgb[pasture] = np.multiply.outer(1 + 0.1 * tone[pasture] + 0.04 * grain[pasture],
                                     np.asarray(PASTURE_RGB, _F32))
    rgb[border] = np.multiply.outer(1 + 0.06 * grain[border], np.asarray(FIELD_MARGIN_RGB, _F32))
    on[on] = ~fallow
    return on, rgb[~fallow]


def _render_tile(p, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
    """Render rows y0:y1, cols x0:x1 (with a halo, cropped) -> image (3, h, w), mask (h, w)."""
    P = _PAD
    ys, xs = np.arange(y0 - P, y1 + P), np.arange(x0 - P, x1 + P)
    h, w = ys.size, xs.size
    yy, xx = np.repeat(ys.astype(_F32), w), np.tile(xs.astype(_F32), h)
    rng = np.random.default_rng([p.seed, y0, x0])
    grain = rng.standard_normal(h * w, dtype=_F32)
    tone = _fbm(ys, xs, p.salt + 5, _TONE_OCT).ravel()
    forest = (_fbm(ys, xs, p.salt + 10, _FOREST_OCT) > p.thr["forest"]).ravel()
    lake = (_fbm(ys, xs, p.salt + 20, _LAKE_OCT) > p.thr["lake"]).ravel()
    mask, rgb = np.full(h * w, BARE, np.uint8), np.zeros((h * w, 3), _F32)
    T, reach = p.towns, float(p.towns["r"].max(initial=0)) * 1.3
    near = np.flatnonzero((T["sy"] > y0 - P - reach) & (T["sy"] < y1 + P + reach)
                          & (T["sx"] > x0 - P - reach) & (T["sx"] < x1 + P + reach))
    town = np.zeros(h * w, bool)
    if near.size:  # pixels belong to the nearest town centre within reach
        best, ti = np.full(h * w, np.inf, _F32), np.zeros(h * w, np.int64)
        for t in near:
            d = (yy - T["sy"][t]) ** 2 + (xx - T["sx"][t]) ** 2
            closer = d < best
            ti[closer], best[closer] = t, d[closer]
        cand = np.flatnonzero(best < reach**2)
        inside, cls, trgb = _town_layer(p, yy[cand], xx[cand], ti[cand], tone[cand], grain[cand])
        idx = cand[inside]
        town[idx], mask[idx], rgb[idx] = True, cls[inside], trgb[inside]
    sel = np.flatnonzero(~forest & ~lake & ~town)
    field, crgb = _field_layer(p, yy[sel], xx[sel], tone[sel], grain[sel])
    mask[sel[field]], rgb[sel[field]] = CROP, crgb
    mask[forest & ~town] = FOREST
    mask[lake & ~town] = WATER
    rivers = [c for c in p.rivers if c.near(y0, y1, x0, x1)]
    if rivers:  # rivers cross towns; long roads cross everything (bridges)
        bank = 2.5 * _fbm(ys, xs, p.salt + 50, _BANK_OCT).ravel()
        for cur in rivers:
            d, _, hw = cur.frame(yy, xx)
            mask[np.abs(d) - hw + bank < 0] = WATER
    marks = np.zeros(h * w, bool)
    for cur in (c for c in p.roads if c.near(y0, y1, x0, x1)):
        d, u, hw = cur.frame(yy, xx)
        mask[np.abs(d) < hw] = ROAD
        if cur.dashed:
            marks |= (np.abs(d) < 0.7) & (np.mod(u, 14) < 7)
    # class appearance (cropland, buildings and yards were painted by their layers)
    canopy = ndimage.gaussian_filter(grain.reshape(h, w), 1.6).ravel() / _F32(0.176)  # ~N(0, 1)
    water2d = (mask == WATER).reshape(h, w)
    shore = ndimage.gaussian_filter(water2d.astype(_F32), 3.0).ravel()
    one = np.ones(1, _F32)
    for cls, paint in (
        (BARE, lambda i: _mix(BARE_DARK, BARE_LIGHT, 0.55 + 0.3 * tone[i],
                              (1 + 0.03 * canopy[i] + 0.04 * grain[i])
                              * np.where(canopy[i] > 2.7, _F32(0.75), _F32(1)))),  # shrubs, stones
        (FOREST, lambda i: _mix(FOREST_DARK, FOREST_LIGHT, 0.45 + 0.3 * canopy[i],  # tree crowns
                                (1 + 0.07 * tone[i])
                                * np.where(canopy[i] < -1.2, _F32(0.7), _F32(1)))),
        (WATER, lambda i: _mix(WATER_DEEP, WATER_SHALLOW, (1 - shore[i]) * 2.0,
                               1 + 0.04 * tone[i] + 0.012 * grain[i])),
        (ROAD, lambda i: _mix(ROAD_RGB, ROAD_RGB, one, 1 + 0.03 * tone[i] + 0.035 * grain[i])),
    ):
        i = np.flatnonzero(mask == cls)
        rgb[i] = paint(i)
    rgb[marks & (mask == ROAD)] = ROAD_MARK_RGB
    # shadows (labels keep the shadowed class), optics blur, illumination, sensor noise
    img = np.ascontiguousarray(rgb.reshape(h, w, 3).transpose(2, 0, 1))
    bmask, fmask = (mask == BUILDING).reshape(h, w), (mask == FOREST).reshape(h, w)
    dark = np.ones((h, w), _F32)
    cast = _shift(bmask, *p.shadow) | _shift(bmask, p.shadow[0] // 2, p.shadow[1] // 2)
    dark[cast & ~bmask] = 0.6
    dark[_shift(fmask, *p.fshadow) & ~fmask & ~bmask & ~water2d] = 0.7
    img = ndimage.gaussian_filter(img * dark, (0, 0.6, 0.6))
    cy, cx = ys[:, None].astype(_F32) - p.h / 2, xs[None, :].astype(_F32) - p.w / 2
    diag = math.hypot(p.h, p.w) / 2
    light = 1 + (p.grad[0] * cx + p.grad[1] * cy) / diag - p.vig * (cx**2 + cy**2) / diag**2
    haze = _F32(p.haze) * np.array(HAZE_RGB, _F32)[:, None, None]
    img = img * light * p.gain[:, None, None] + haze
    img += rng.standard_normal(img.shape, dtype=_F32) * _F32(p.sigma)
    img = np.clip(np.rint(img[:, P:-P, P:-P]), 0, 255).astype(np.uint8)
    return img, mask.reshape(h, w)[P:-P, P:-P]


# ---------------------------------------------------------------- public API
def generate_scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scene: image (3, H, W) uint8 RGB and mask (H, W) uint8 class indices."""
    height, width = int(height), int(width)
    if not (16 <= height <= 16384 and 16 <= width <= 16384):
        raise RsSegError(f"synthetic scene size must be 16..16384 px a side, got {height}x{width}")
    plan = _plan(height, width, int(seed) % 2**63)
    image, mask = np.empty((3, height, width), np.uint8), np.empty((height, width), np.uint8)

    def render(t):
        y0, x0 = t
        y1, x1 = min(y0 + _TILE, height), min(x0 + _TILE, width)
        image[:, y0:y1, x0:x1], mask[y0:y1, x0:x1] = _render_tile(plan, y0, y1, x0, x1)

    tiles = [(y, x) for y in range(0, height, _TILE) for x in range(0, width, _TILE)]
    with ThreadPoolExecutor(max_workers=max(1, min(len(tiles), os.cpu_count() or 1, 4))) as pool:
        list(pool.map(render, tiles))
    return image, mask


