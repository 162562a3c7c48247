"""Random shapes: CSG compositions and parametric everyday-object families.

Every family is a function ``family(rng) -> Shape`` that builds the object at
metric scale (metres, roughly real-world sizes), standing on the floor ``y = 0``,
centred on the ``y`` axis, ``y`` up, front facing ``+z``. That is the frame a
room composer needs (place with ``shape.rotate((0, 1, 0), a).translate(...)``).
:func:`canonicalize` then maps a shape into the ONet canonical frame (bounding
box centred at the origin, longest side 1) for object-level training.

Material tags (``Shape.tag``) mark parts (0 main body, 1 frame/legs, 2 accents
such as cushions, glass or wheels) so renders can colour parts differently.
"""

from __future__ import annotations

from typing import Callable, Sequence

import mcubes
import numpy as np

from occrecon.data.sdf import (
    Box,
    Capsule,
    Cone,
    Cylinder,
    Ellipsoid,
    HalfSpace,
    Intersect,
    RoundCone,
    Shape,
    Sphere,
    Torus,
    Transform,
    box_at,
    cylinder_between,
    rotation_matrix,
    sdf_grid,
    smooth_union,
    union,
)

Rng = np.random.Generator


def _u(rng: Rng, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _legs(
    rng: Rng, w: float, d: float, h: float, thick: float, inset: float, splay: float = 0.0, round_legs: bool | None = None
) -> Shape:
    """Four legs from the floor to height ``h`` under a ``w x d`` footprint."""
    if round_legs is None:
        round_legs = bool(rng.random() < 0.5)
    parts = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = np.array([sx * (w / 2 - inset), h, sz * (d / 2 - inset)])
            bot = top + np.array([sx * splay, -h, sz * splay])
            if round_legs:
                parts.append(cylinder_between(bot, top, thick / 2))
            else:
                # A square leg, tilted like the round one when splayed.
                length = float(np.linalg.norm(top - bot))
                leg = Box((thick / 2, length / 2, thick / 2))
                axis = (top - bot) / length
                parts.append(_orient_y(leg, axis).translate((top + bot) / 2))
    return union(*parts)


def _orient_y(shape: Shape, direction: np.ndarray) -> Shape:
    """Rotate ``shape`` so its +y axis points along unit ``direction``."""
    y = np.array([0.0, 1.0, 0.0])
    v = np.cross(y, direction)
    s = float(np.linalg.norm(v))
    if s < 1e-9:
        return shape
    return shape.rotate(v / s, float(np.arctan2(s, float(y @ direction))))


# --------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------
def chair(rng: Rng) -> Shape:
    """Chairs: four-legged, splayed, pedestal or sled bases; slab, slatted or framed backs; optional arms."""
    w, d = _u(rng, 0.38, 0.65), _u(rng, 0.38, 0.65)
    seat_h = _u(rng, 0.3, 0.55)
    t = _u(rng, 0.02, 0.1)
    leg = _u(rng, 0.025, 0.06)
    rad = _u(rng, 0.0, 0.4) * t
    seat = box_at((0, seat_h - t / 2, 0), (w, t, d), rad).tag(0)
    base_kind = rng.choice(["legs", "splayed", "pedestal", "sled"], p=[0.5, 0.15, 0.2, 0.15])
    y0 = seat_h - t
    if base_kind == "legs":
        base = _legs(rng, w, d, y0, leg, leg * 0.7)
        if rng.random() < 0.4:  # stretchers between the legs
            ys = _u(rng, 0.1, 0.4) * y0
            base = union(base, box_at((0, ys, d / 2 - leg * 0.7), (w - leg, leg * 0.6, leg * 0.6)),
                         box_at((0, ys, -d / 2 + leg * 0.7), (w - leg, leg * 0.6, leg * 0.6)))
    elif base_kind == "splayed":
        base = _legs(rng, w, d, y0, leg, leg * 1.5, splay=_u(rng, 0.02, 0.08))
    elif base_kind == "pedestal":
        r = _u(rng, 0.02, 0.05)
        stem = Cylinder(r, y0 / 2).translate((0, y0 / 2, 0))
        n = int(rng.integers(4, 6))
        foot_len = _u(rng, 0.5, 0.7) * max(w, d)
        feet = [
            box_at((foot_len / 4, 0.02, 0), (foot_len / 2, 0.04, 0.04)).rotate((0, 1, 0), 2 * np.pi * k / n)
            for k in range(n)
        ]
        base = union(stem, *feet) if rng.random() < 0.7 else union(stem, Cylinder(foot_len / 2, 0.015).translate((0, 0.015, 0)))
    else:  # sled: two U-shaped runners
        r = leg / 2
        parts = []
        for sx in (-1, 1):
            x = sx * (w / 2 - r)
            a, b = (x, r, d / 2), (x, r, -d / 2)
            parts += [Capsule(a, b, r), Capsule(a, (x, y0, d / 2 - r), r), Capsule(b, (x, y0, -d / 2 + r), r)]
        base = union(*parts)
    base = base.tag(1)

    back_h = _u(rng, 0.2, 0.6)
    back_t = _u(rng, 0.02, 0.08)
    tilt = _u(rng, 0.0, 0.3)
    back_kind = rng.choice(["slab", "frame", "slats", "round"])
    if back_kind == "slab":
        back = box_at((0, back_h / 2, 0), (w, back_h, back_t), _u(rng, 0, 0.5) * back_t)
    elif back_kind == "frame":
        outer = box_at((0, back_h / 2, 0), (w, back_h, back_t))
        bw = _u(rng, 0.12, 0.3)
        hole = box_at((0, back_h / 2 + bw * back_h * 0.2, 0), (w * (1 - bw), back_h * (1 - bw), back_t * 3))
        back = outer - hole
    elif back_kind == "slats":
        n = int(rng.integers(2, 6))
        sw = _u(rng, 0.03, 0.08)
        rail = box_at((0, back_h - 0.03, 0), (w, 0.06, back_t))
        xs = np.linspace(-w / 2 + sw / 2, w / 2 - sw / 2, n)
        back = union(rail, *[box_at((x, back_h / 2, 0), (sw, back_h, back_t * 0.8)) for x in xs])
    else:
        back = Cylinder(w / 2, back_t / 2).rotate((1, 0, 0), np.pi / 2).scale((1.0, back_h / w, 1.0))
        back = back.translate((0, back_h / 2, 0))
        back = Intersect([back, box_at((0, back_h / 2, 0), (w, back_h, back_t))]) if rng.random() < 0.5 else back
    back = back.rotate((1, 0, 0), -tilt).translate((0, seat_h, -d / 2 + back_t / 2)).tag(2 if rng.random() < 0.5 else 0)
    parts = [seat, base, back]
    if rng.random() < 0.35:  # armrests
        ah = _u(rng, 0.15, 0.3)
        aw = _u(rng, 0.03, 0.07)
        for sx in (-1, 1):
            x = sx * (w / 2 - aw / 2)
            parts.append(box_at((x, seat_h + ah, 0), (aw, 0.03, d * 0.9)).tag(1))
            parts.append(box_at((x, seat_h + ah / 2, d * 0.35), (aw * 0.8, ah, aw * 0.8)).tag(1))
    return union(*parts)


def table(rng: Rng) -> Shape:
    """Tables and desks: rectangular, round or oval tops; legs, pedestal or panel ends; optional shelf."""
    round_top = rng.random() < 0.3
    w = _u(rng, 0.5, 2.2)
    d = w * _u(rng, 0.9, 1.1) if round_top and rng.random() < 0.6 else _u(rng, 0.4, 1.1)
    h = _u(rng, 0.35, 0.95)
    t = max(_u(rng, 0.02, 0.08), 0.016 * w)
    if round_top:
        top = Cylinder(0.5, t / 2).scale((w, 1.0, d)).translate((0, h - t / 2, 0))
    else:
        top = box_at((0, h - t / 2, 0), (w, t, d), _u(rng, 0, 0.5) * t)
    top = top.tag(0)
    kind = rng.choice(["legs", "pedestal", "panels"], p=[0.6, 0.2, 0.2])
    y0 = h - t
    leg = max(_u(rng, 0.03, 0.09), 0.02 * w)
    if kind == "legs":
        inset = leg / 2 + (_u(rng, 0.0, 0.12) * min(w, d) if rng.random() < 0.5 else 0.0)
        if round_top:
            inset += 0.15 * min(w, d)
        base = _legs(rng, w, d, y0, leg, inset)
        if rng.random() < 0.4:  # apron under the top
            ah = _u(rng, 0.04, 0.12)
            base = union(base, box_at((0, y0 - ah / 2, 0), (w - 2 * inset + leg, ah, d - 2 * inset + leg))
                         - box_at((0, y0 - ah / 2, 0), (w - 2 * inset - leg, ah * 2, d - 2 * inset - leg)))
    elif kind == "pedestal":
        r = _u(rng, 0.03, 0.12)
        fr = _u(rng, 0.15, 0.45) * min(w, d)
        base = union(Cylinder(r, y0 / 2).translate((0, y0 / 2, 0)),
                     Cone(0.03, fr, fr * _u(rng, 0.3, 1.0)).translate((0, 0.03, 0)))
    else:
        pt = _u(rng, 0.02, 0.06)
        x = w / 2 - pt / 2 - _u(rng, 0.0, 0.1) * w
        base = union(box_at((x, y0 / 2, 0), (pt, y0, d * 0.9)), box_at((-x, y0 / 2, 0), (pt, y0, d * 0.9)))
        if rng.random() < 0.5:
            base = union(base, box_at((0, y0 * _u(rng, 0.3, 0.8), -d * 0.4), (2 * x, _u(rng, 0.1, 0.3) * y0, pt)))
    parts = [top, base.tag(1)]
    if kind != "pedestal" and rng.random() < 0.25:
        parts.append(box_at((0, y0 * _u(rng, 0.15, 0.35), 0), (w * 0.8, t * 0.7, d * 0.8)).tag(0))
    return union(*parts)


def sofa(rng: Rng) -> Shape:
    """Sofas and armchairs: rounded base, back and arms; seat cushions; optional legs."""
    w = _u(rng, 0.7, 2.6)
    d = _u(rng, 0.7, 1.1)
    leg_h = _u(rng, 0.0, 0.15)
    base_h = _u(rng, 0.2, 0.35)
    back_h = _u(rng, 0.3, 0.6)
    back_t = _u(rng, 0.12, 0.3)
    arm_w = _u(rng, 0.08, 0.3) if rng.random() < 0.85 else 0.0
    arm_h = _u(rng, 0.1, 0.35)
    r = _u(rng, 0.01, 0.08)
    y = leg_h
    parts = [box_at((0, y + base_h / 2, 0), (w, base_h, d), r).tag(0)]
    parts.append(box_at((0, y + base_h + back_h / 2, -d / 2 + back_t / 2), (w, back_h, back_t), r).tag(0))
    if arm_w > 0:
        for sx in (-1, 1):
            parts.append(box_at((sx * (w / 2 - arm_w / 2), y + base_h + arm_h / 2, 0), (arm_w, arm_h + 0.02, d), r).tag(0))
    n_cush = int(rng.integers(1, 4))
    cw = (w - 2 * arm_w) / n_cush
    ct = _u(rng, 0.06, 0.15)
    for i in range(n_cush):
        x = -w / 2 + arm_w + cw * (i + 0.5)
        parts.append(box_at((x, y + base_h + ct / 2 - 0.01, back_t / 2), (cw * 0.97, ct, d - back_t), ct * 0.4).tag(2))
    if leg_h > 0.02:
        parts.append(_legs(rng, w, d, leg_h + 0.01, _u(rng, 0.03, 0.06), 0.06).tag(1))
    return union(*parts)


def cabinet(rng: Rng) -> Shape:
    """Shelves, bookcases and cabinets: a carcass with open compartments, doors or drawers."""
    w = _u(rng, 0.4, 2.0)
    h = _u(rng, 0.4, 2.2)
    d = _u(rng, 0.25, 0.65)
    t = max(_u(rng, 0.015, 0.05), 0.016 * max(w, h))
    foot = _u(rng, 0.0, 0.15) if rng.random() < 0.5 else 0.0
    body = box_at((0, foot + h / 2, 0), (w, h, d))
    n_rows = int(rng.integers(1, max(2, int(h / 0.3)) + 1))
    n_cols = int(rng.integers(1, max(2, int(w / 0.5)) + 1))
    open_front = rng.random() < 0.55
    cw = (w - (n_cols + 1) * t) / n_cols
    ch = (h - (n_rows + 1) * t) / n_rows
    holes = []
    fronts = []
    for i in range(n_cols):
        for j in range(n_rows):
            cx = -w / 2 + t + cw / 2 + i * (cw + t)
            cy = foot + t + ch / 2 + j * (ch + t)
            if open_front:
                holes.append(box_at((cx, cy, t), (cw, ch, d)))
            else:
                # Doors/drawers are shallow recesses with a handle: cheap to evaluate, still visible.
                holes.append(box_at((cx, cy, d / 2), (cw * 0.98, ch * 0.98, 0.02)))
                fronts.append(box_at((cx + (cw * 0.35 if rng.random() < 0.5 else 0), cy + ch * 0.3, d / 2 + 0.01),
                                     (0.02 if ch > cw else 0.1, 0.1 if ch > cw else 0.02, 0.03)))
    carcass = (body - union(*holes)).tag(0)
    parts = [carcass]
    if fronts:
        parts.append(union(*fronts).tag(1))
    if foot > 0.01:
        parts.append(_legs(rng, w, d, foot + 0.01, _u(rng, 0.03, 0.06), 0.04).tag(1))
    return union(*parts)


def lamp(rng: Rng) -> Shape:
    """Table and floor lamps: disk/cone/sphere base, straight or bent stem, conical or cylindrical shade."""
    height = _u(rng, 0.35, 1.8)
    br = _u(rng, 0.08, 0.25) * max(height, 0.6) * 0.6
    kind = rng.choice(["disk", "cone", "sphere"])
    if kind == "disk":
        base = Cylinder(br, 0.02 + 0.02 * rng.random()).translate((0, 0.025, 0))
        base_top = 0.045
    elif kind == "cone":
        bh = _u(rng, 0.05, 0.2) * height
        base = Cone(bh / 2, br, br * _u(rng, 0.1, 0.6)).translate((0, bh / 2, 0))
        base_top = bh
    else:
        base = (Sphere(br) - box_at((0, -br, 0), (3 * br, 2 * br * 0.6, 3 * br))).translate((0, br * 0.4, 0))
        base_top = br * 1.4
    stem_r = _u(rng, 0.008, 0.025) * max(height, 0.6)
    shade_h = _u(rng, 0.15, 0.35) * height
    top_y = height - shade_h
    if rng.random() < 0.7:
        stem = Capsule((0, base_top * 0.5, 0), (0, top_y + shade_h * 0.5, 0), stem_r)
        sx = 0.0
    else:  # bent arm lamp: the shade hangs off to the side
        sx = _u(rng, 0.1, 0.3) * height
        mid = (sx * 0.3, top_y * 0.8, 0)
        stem = union(Capsule((0, base_top * 0.5, 0), mid, stem_r), Capsule(mid, (sx, top_y + shade_h * 0.6, 0), stem_r))
    r_bot = _u(rng, 0.3, 0.7) * shade_h * 1.5
    r_top = r_bot * _u(rng, 0.3, 1.0)
    wall = max(0.02 * height, 0.008)
    outer = Cone(shade_h / 2, r_bot, r_top)
    if rng.random() < 0.7:
        # Open shade: a frustum shell, open at the bottom.
        inner = Cone(shade_h / 2 + wall, r_bot - wall, r_top - wall).translate((0, -wall, 0))
        shade = outer - inner
        bulb = Sphere(min(r_top, r_bot) * 0.35).translate((0, -shade_h * 0.1, 0))
        shade = union(shade, bulb)
    else:
        shade = outer
    shade = shade.translate((sx, top_y + shade_h / 2, 0)).tag(2)
    return union(base.tag(1), stem.tag(1), shade)


def car(rng: Rng) -> Shape:
    """Cars: rounded lower body, cabin with sloped windscreens, four wheels in arches. Length along z."""
    length = _u(rng, 3.0, 5.5)
    width = length * _u(rng, 0.33, 0.48)
    wheel_r = _u(rng, 0.28, 0.45)
    clear = _u(rng, 0.1, 0.3)
    body_h = _u(rng, 0.45, 0.9)
    y_body = clear + body_h / 2
    body = box_at((0, y_body, 0), (width, body_h, length), _u(rng, 0.05, 0.2)).tag(0)
    cab_h = _u(rng, 0.35, 0.8)
    cab_len = length * _u(rng, 0.35, 0.75)
    cab_off = _u(rng, -0.15, 0.1) * length
    cab = box_at((0, clear + body_h + cab_h / 2 - 0.05, cab_off), (width * _u(rng, 0.8, 0.95), cab_h + 0.1, cab_len), 0.05)
    # Sloped windscreen and rear window: cut the cabin box with two tilted half-spaces.
    a_f, a_r = _u(rng, 0.3, 1.0), _u(rng, 0.2, 1.2)
    y_top = clear + body_h + cab_h
    nf = np.array([0.0, np.sin(a_f), np.cos(a_f)])
    nr = np.array([0.0, np.sin(a_r), -np.cos(a_r)])
    pf = np.array([0.0, y_top, cab_off + cab_len / 2 - 0.1])
    pr = np.array([0.0, y_top, cab_off - cab_len / 2 + 0.1])
    cab = Intersect([cab, HalfSpace(tuple(nf), float(nf @ pf)), HalfSpace(tuple(nr), float(nr @ pr))]).tag(2)
    wheel_w = _u(rng, 0.18, 0.3)
    axle = length * _u(rng, 0.3, 0.38)
    wheels, arches = [], []
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (width / 2 - wheel_w / 2 + 0.02), wheel_r, sz * axle)
            wheels.append(Cylinder(wheel_r, wheel_w / 2).rotate((0, 0, 1), np.pi / 2).translate(c))
            arches.append(Cylinder(wheel_r * 1.12, wheel_w).rotate((0, 0, 1), np.pi / 2).translate(c))
    body = (body - union(*arches)).tag(0)
    parts = [body, cab, union(*wheels).tag(1)]
    if rng.random() < 0.3:  # spoiler
        parts.append(box_at((0, y_body + body_h / 2 + 0.15, -length / 2 + 0.15), (width * 0.9, 0.04, 0.25)).tag(1))
    return union(*parts)


def airplane(rng: Rng) -> Shape:
    """Airplanes: capsule fuselage along z, swept wings with dihedral, tailplane, fin, optional engines."""
    length = _u(rng, 10.0, 40.0)
    fr = length * _u(rng, 0.035, 0.07)
    fus = Capsule((0, 0, -length / 2 + fr), (0, 0, length / 2 - fr), fr)
    if rng.random() < 0.5:
        fus = Ellipsoid((fr, fr, length / 2))
    span = length * _u(rng, 0.6, 1.3)
    chord = length * _u(rng, 0.1, 0.25)
    # Wings at least ~2 marching-cubes cells thick once the plane is scaled to 1.
    wt = max(chord * _u(rng, 0.06, 0.12), length * 0.02)
    sweep = _u(rng, 0.0, 0.6)
    dihedral = _u(rng, -0.05, 0.12)
    wing_z = length * _u(rng, -0.1, 0.1)
    wing_y = _u(rng, -0.6, 0.6) * fr
    wings = []
    for sx in (-1, 1):
        half = Box((span / 4, wt / 2, chord / 2), min(wt / 2 * 0.9, chord * 0.1))
        # Taper: scale the tip end down by cutting with a tilted plane on the trailing edge.
        # Mirror by construction (x -> -x): sweep the tip back (-z) and lift it (+y).
        wing = half.translate((sx * span / 4, 0, 0)).rotate((0, 1, 0), sx * sweep).rotate((0, 0, 1), sx * dihedral)
        wings.append(wing.translate((0, wing_y, wing_z)))
    tail_span = span * _u(rng, 0.25, 0.45)
    tail_chord = chord * _u(rng, 0.4, 0.7)
    tz = -length / 2 + tail_chord * 0.8
    tail = box_at((0, fr * 0.3, tz), (tail_span, wt * 0.8, tail_chord), wt * 0.3)
    fin_h = length * _u(rng, 0.1, 0.2)
    fin = box_at((0, fin_h / 2, 0), (wt * 0.8, fin_h, tail_chord * 1.2), wt * 0.3).rotate((1, 0, 0), -0.4).translate((0, fr * 0.5, tz))
    parts = [fus.tag(0), union(*wings).tag(0), tail.tag(0), fin.tag(2 if rng.random() < 0.5 else 0)]
    n_eng = int(rng.choice([0, 2, 4]))
    er = fr * _u(rng, 0.35, 0.6)
    for k in range(n_eng // 2):
        off = span * (0.15 + 0.15 * k)
        z = wing_z + off * np.tan(sweep) * -1 + chord * 0.4
        for sx in (-1, 1):
            eng = Cylinder(er, chord * 0.45).rotate((1, 0, 0), np.pi / 2)
            parts.append(eng.translate((sx * off, wing_y - er * 1.1 + off * np.sin(dihedral), z)).tag(1))
    shape = union(*parts)
    return shape.translate((0, -shape.bounds()[0][1] + 0.0, 0))


def mug(rng: Rng) -> Shape:
    """Mugs and cups: open cylinder or frustum with a floor, torus handle, wide height/diameter ratios."""
    r = _u(rng, 0.03, 0.07)
    h = r * _u(rng, 1.0, 3.5)
    wall = max(r * _u(rng, 0.06, 0.15), 0.004)
    taper = _u(rng, 0.75, 1.15)
    outer = Cone(h / 2, r, r * taper).translate((0, h / 2, 0))
    inner = Cone(h / 2, r - wall, r * taper - wall).translate((0, h / 2 + wall * 1.5, 0))
    cup = (outer - inner).tag(0)
    if rng.random() < 0.85:
        hr = h * _u(rng, 0.22, 0.38)
        tr = max(wall * _u(rng, 0.7, 1.3), 0.004)
        handle = Torus(hr, tr).rotate((1, 0, 0), np.pi / 2).scale((1.0, _u(rng, 1.0, 1.4), 1.0))
        handle = handle.translate((r * (1 + taper) / 2 + hr * 0.6, h * 0.5, 0))
        # Keep only the outer part of the handle, outside the cup.
        handle = handle - Cone(h / 2, r - wall / 2, r * taper - wall / 2).translate((0, h / 2, 0))
        return union(cup, handle.tag(0 if rng.random() < 0.7 else 1))
    return cup


def bottle(rng: Rng) -> Shape:
    """Bottles: body, shoulder, neck and cap, smoothly blended; cylindrical, square or flask bodies."""
    r = _u(rng, 0.025, 0.06)
    body_h = r * _u(rng, 2.0, 6.0)
    shoulder_h = r * _u(rng, 0.3, 1.5)
    neck_r = r * _u(rng, 0.2, 0.55)
    neck_h = r * _u(rng, 0.5, 2.5)
    kind = rng.choice(["round", "square", "flask"], p=[0.6, 0.2, 0.2])
    if kind == "round":
        body = Cylinder(r, body_h / 2)
    elif kind == "square":
        body = Box((r, body_h / 2, r), r * 0.3)
    else:
        body = Ellipsoid((r, body_h / 2, r * _u(rng, 0.4, 0.8)))
    body = body.translate((0, body_h / 2, 0))
    shoulder = Cone(shoulder_h / 2, r * 0.95, neck_r).translate((0, body_h + shoulder_h / 2 - 0.002, 0))
    neck = Cylinder(neck_r, neck_h / 2).translate((0, body_h + shoulder_h + neck_h / 2 - 0.002, 0))
    k = r * 0.3
    b = smooth_union(smooth_union(body, shoulder, k), neck, k * 0.5).tag(0)
    cap_h = neck_h * _u(rng, 0.2, 0.5)
    cap = Cylinder(neck_r * 1.15, cap_h / 2).translate((0, body_h + shoulder_h + neck_h - cap_h / 2, 0)).tag(1)
    return union(b, cap)


def bench(rng: Rng) -> Shape:
    """Benches: long seat on legs or panel ends, optional slatted back."""
    w = _u(rng, 0.9, 2.2)
    d = _u(rng, 0.3, 0.6)
    h = _u(rng, 0.35, 0.5)
    t = _u(rng, 0.03, 0.08)
    n_slat = int(rng.integers(1, 5))
    gap = 0.01
    sd = (d - gap * (n_slat - 1)) / n_slat
    seat = union(*[box_at((0, h - t / 2, -d / 2 + sd / 2 + i * (sd + gap)), (w, t, sd)) for i in range(n_slat)]).tag(0)
    if rng.random() < 0.5:
        base = _legs(rng, w, d, h - t, _u(rng, 0.04, 0.08), 0.1)
    else:
        pt = _u(rng, 0.03, 0.08)
        base = union(*[box_at((sx * (w / 2 - 0.1), (h - t) / 2, 0), (pt, h - t, d * 0.9)) for sx in (-1, 1)])
    parts = [seat, base.tag(1)]
    if rng.random() < 0.5:
        bh = _u(rng, 0.25, 0.5)
        back = union(*[box_at((0, h + 0.05 + i * bh / 3, 0), (w, bh / 4, t * 0.7)) for i in range(3)])
        posts = union(*[box_at((sx * (w / 2 - 0.1), h + bh / 2, 0), (0.05, bh + 0.1, t * 0.7)) for sx in (-1, 1)])
        parts.append(union(back, posts).rotate((1, 0, 0), -_u(rng, 0, 0.25)).translate((0, 0, -d / 2)).tag(1))
    return union(*parts)


def bed(rng: Rng) -> Shape:
    """Beds: frame, mattress, pillows, headboard and optional footboard. Length along z."""
    w = _u(rng, 0.9, 2.0)
    L = _u(rng, 1.9, 2.2)
    frame_h = _u(rng, 0.15, 0.4)
    leg_h = _u(rng, 0.0, 0.2)
    mat_h = _u(rng, 0.15, 0.3)
    frame = box_at((0, leg_h + frame_h / 2, 0), (w, frame_h, L)).tag(1)
    mattress = box_at((0, leg_h + frame_h + mat_h / 2 - 0.02, 0), (w * 0.97, mat_h, L * 0.97), mat_h * 0.3).tag(0)
    hb_h = _u(rng, 0.4, 1.0)
    hb_top = leg_h + frame_h + hb_h
    head = box_at((0, hb_top / 2, -L / 2 - 0.03), (w + 0.04, hb_top, 0.06), 0.02).tag(1)
    parts = [frame, mattress, head]
    n_p = 1 if w < 1.3 else 2
    pw = w * 0.8 / n_p
    for i in range(n_p):
        x = -w * 0.4 + pw * (i + 0.5)
        parts.append(box_at((x, leg_h + frame_h + mat_h + 0.04, -L / 2 + 0.3), (pw * 0.9, 0.12, 0.35), 0.05).tag(2))
    if rng.random() < 0.5:
        parts.append(box_at((0, (leg_h + frame_h + 0.2) / 2, L / 2 + 0.03), (w + 0.04, leg_h + frame_h + 0.2, 0.06), 0.02).tag(1))
    if leg_h > 0.03:
        parts.append(_legs(rng, w, L, leg_h + 0.01, 0.07, 0.05).tag(1))
    return union(*parts)


def monitor(rng: Rng) -> Shape:
    """Monitors and TVs: thin panel with a bezel recess, neck and base (or a wall-style slab)."""
    w = _u(rng, 0.4, 1.6)
    h = w * _u(rng, 0.45, 0.8)
    t = _u(rng, 0.02, 0.08)
    stand_h = _u(rng, 0.05, 0.3)
    panel = box_at((0, stand_h + h / 2, 0), (w, h, t), t * 0.3)
    bezel = _u(rng, 0.01, 0.05)
    screen = box_at((0, stand_h + h / 2, t / 2), (w - 2 * bezel, h - 2 * bezel, t * 0.4))
    panel = (panel - screen).tag(0)
    neck = box_at((0, (stand_h + h / 2) / 2, -t * 0.8), (0.05 * w + 0.03, stand_h + h / 2, t * 0.6)).tag(1)
    base = box_at((0, 0.01, -t * 0.8), (w * _u(rng, 0.2, 0.6), 0.02, _u(rng, 0.12, 0.3)), 0.008).tag(1)
    return union(panel, neck, base)


def vase(rng: Rng) -> Shape:
    """Vases and bowls: a smoothly blended stack of ellipsoids, hollowed from the top."""
    r = _u(rng, 0.05, 0.2)
    n = int(rng.integers(1, 4))
    y = 0.0
    body: Shape | None = None
    for i in range(n):
        ry = r * _u(rng, 0.3, 1.5)
        rx = r * _u(rng, 0.4, 1.0)
        e = Ellipsoid((rx, ry, rx)).translate((0, y + ry, 0))
        body = e if body is None else smooth_union(body, e, r * 0.3)
        y += ry * _u(rng, 1.2, 1.8)
    top = body.bounds()[1][1]
    # Cut the top flat and the bottom flat, then hollow from the top opening.
    cut_y = top - r * _u(rng, 0.05, 0.3)
    body = Intersect([body, HalfSpace((0, 1, 0), cut_y), HalfSpace((0, -1, 0), -r * 0.1)])
    wall = max(r * 0.08, 0.004)
    cavity = Intersect([_eroded(body, wall), HalfSpace((0, -1, 0), -(r * 0.1 + wall * 2))])
    hole = Cylinder(_u(rng, 0.2, 0.6) * r, r).translate((0, cut_y, 0))
    vessel = (body - union(cavity, hole)) if rng.random() < 0.8 else body
    return vessel.translate((0, -r * 0.1, 0)).tag(0)


# --------------------------------------------------------------------------------------
# Organic families: smooth bodies that real scans are full of (animals, figures, blobs,
# tubes and knots). Furniture and CSG alone teach a points model nothing about them.
# --------------------------------------------------------------------------------------
def _limb(a: Sequence[float], b: Sequence[float], r_a: float, r_b: float) -> Shape:
    """A tapered limb from ``a`` to ``b``; a ball when one end would swallow the other."""
    if abs(r_a - r_b) >= 0.999 * float(np.linalg.norm(np.subtract(b, a))):
        return Sphere(max(r_a, r_b)).translate(a if r_a >= r_b else b)
    return RoundCone(tuple(map(float, a)), tuple(map(float, b)), float(r_a), float(r_b))


def _blend(parts: list[Shape], k: float) -> Shape:
    """Smooth union of ``parts`` in order, with fillets of radius ``k``."""
    out = parts[0]
    for part in parts[1:]:
        out = smooth_union(out, part, k)
    return out


def _on_floor(shape: Shape) -> Shape:
    """Lower ``shape`` onto ``y = 0`` (its measured bottom, not the loose node bounds)."""
    lo, _ = solid_bounds(shape, res=48)
    return shape.translate((0, -float(lo[1]), 0))


def animal(rng: Rng) -> Shape:
    """Four-legged animals, cat to cow to giraffe: ellipsoid body, tapered legs, neck, head, ears, tail."""
    length = _u(rng, 0.4, 2.0)
    half_w = length * _u(rng, 0.12, 0.25)
    half_h = length * _u(rng, 0.13, 0.25)
    leg_h = length * _u(rng, 0.2, 0.8)
    yc = leg_h + half_h * 0.6
    k = length * _u(rng, 0.03, 0.08)
    body = [Ellipsoid((half_w, half_h, length / 2)).translate((0, yc, 0))]
    if rng.random() < 0.6:  # chest or haunch bulge
        z = length * _u(rng, -0.25, 0.25)
        body.append(Ellipsoid((half_w * _u(rng, 0.9, 1.2), half_h * _u(rng, 0.9, 1.25), length * 0.25)).translate((0, yc, z)))
    limbs = []
    r_leg = half_w * _u(rng, 0.25, 0.5)
    foot = r_leg * _u(rng, 0.45, 0.9)
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = np.array([sx * half_w * _u(rng, 0.4, 0.7), yc - half_h * 0.3, sz * length * _u(rng, 0.25, 0.38)])
            bottom = np.array([top[0] * _u(rng, 0.8, 1.2), foot, top[2] + length * _u(rng, -0.06, 0.06)])
            knee = (top + bottom) / 2 + np.array([0.0, 0.0, -sz * length * _u(rng, 0.0, 0.05)])
            limbs += [_limb(top, knee, r_leg, (r_leg + foot) / 2), _limb(knee, bottom, (r_leg + foot) / 2, foot)]
    neck_base = np.array([0.0, yc + half_h * 0.4, length * 0.4])
    head_at = neck_base + np.array([0.0, length * _u(rng, 0.0, 0.6), length * _u(rng, 0.08, 0.25)])
    head_r = length * _u(rng, 0.08, 0.16)
    limbs.append(_limb(neck_base, head_at, half_w * _u(rng, 0.4, 0.8), head_r * 0.7))
    head = [Ellipsoid((head_r * _u(rng, 0.7, 1.0), head_r * _u(rng, 0.8, 1.1), head_r)).translate(head_at)]
    snout = head_at + np.array([0.0, -head_r * _u(rng, 0.0, 0.5), head_r * _u(rng, 0.6, 1.5)])
    head.append(_limb(head_at, snout, head_r * 0.8, head_r * _u(rng, 0.3, 0.6)))
    ear_len = head_r * _u(rng, 0.4, 2.5)  # up to rabbit ears
    for sx in (-1, 1):
        base = head_at + np.array([sx * head_r * 0.5, head_r * 0.6, -head_r * 0.2])
        tip = base + np.array([sx * ear_len * _u(rng, 0.1, 0.8), ear_len, -ear_len * _u(rng, 0.0, 0.4)])
        head.append(_limb(base, tip, head_r * _u(rng, 0.15, 0.3), head_r * _u(rng, 0.05, 0.15)).tag(2))
    if rng.random() < 0.3:  # horns
        for sx in (-1, 1):
            base = head_at + np.array([sx * head_r * 0.4, head_r * 0.8, 0.0])
            tip = base + np.array([sx * head_r * _u(rng, 0.3, 1.2), head_r * _u(rng, 0.2, 1.0), 0.0])
            head.append(_limb(base, tip, head_r * 0.15, head_r * 0.04).tag(2))
    if rng.random() < 0.8:  # tail
        root = np.array([0.0, yc + half_h * 0.2, -length * 0.48])
        tip = root + np.array([0.0, -length * _u(rng, -0.2, 0.5), -length * _u(rng, 0.05, 0.4)])
        limbs.append(_limb(root, tip, half_w * _u(rng, 0.1, 0.3), half_w * _u(rng, 0.03, 0.1)))
    parts = [s.tag(0) for s in body] + [s.tag(1) for s in limbs] + head
    return _on_floor(_blend(parts, k))


def figure(rng: Rng) -> Shape:
    """Standing figures and toys: pear-shaped torso, tapered arms and legs, a big head, optional round ears."""
    height = _u(rng, 0.2, 1.8)
    head_r = height * _u(rng, 0.09, 0.22)
    leg_h = height * _u(rng, 0.15, 0.45)
    torso_h = max(height - leg_h - 2 * head_r, height * 0.2)
    half_w = torso_h * _u(rng, 0.25, 0.6)
    k = height * _u(rng, 0.015, 0.05)
    y_t = leg_h + torso_h / 2
    parts: list[Shape] = [Ellipsoid((half_w, torso_h / 2, half_w * _u(rng, 0.6, 1.0))).tag(0).translate((0, y_t, 0))]
    if rng.random() < 0.6:  # belly
        parts.append(Ellipsoid((half_w * 1.1, torso_h * 0.3, half_w * _u(rng, 0.7, 1.1))).tag(0).translate((0, y_t - torso_h * 0.15, 0)))
    r_leg = half_w * _u(rng, 0.25, 0.45)
    for sx in (-1, 1):
        hip = np.array([sx * half_w * 0.45, leg_h + torso_h * 0.1, 0.0])
        ankle = np.array([sx * half_w * _u(rng, 0.35, 0.7), r_leg * 0.6, 0.0])
        parts.append(_limb(hip, ankle, r_leg, r_leg * 0.6).tag(1))
        parts.append(Ellipsoid((r_leg * 0.8, r_leg * 0.5, r_leg * _u(rng, 1.0, 1.8))).tag(1).translate(ankle + np.array([0, -r_leg * 0.1, r_leg * 0.5])))
        shoulder = np.array([sx * half_w * 0.85, y_t + torso_h * 0.3, 0.0])
        hand = shoulder + np.array([sx * torso_h * _u(rng, 0.1, 0.6), -torso_h * _u(rng, -0.3, 0.8), torso_h * _u(rng, -0.1, 0.4)])
        parts.append(_limb(shoulder, hand, r_leg * _u(rng, 0.5, 0.8), r_leg * _u(rng, 0.3, 0.5)).tag(1))
    head_at = np.array([0.0, leg_h + torso_h + head_r * 0.9, 0.0])
    parts.append(Ellipsoid((head_r * _u(rng, 0.8, 1.1), head_r, head_r * _u(rng, 0.8, 1.1))).tag(0).translate(head_at))
    if rng.random() < 0.6:  # nose
        parts.append(Sphere(head_r * _u(rng, 0.1, 0.3)).tag(2).translate(head_at + np.array([0, -head_r * 0.1, head_r * 0.95])))
    if rng.random() < 0.5:  # big round ears, flat discs at the sides of the head
        ear_r = head_r * _u(rng, 0.4, 0.9)
        for sx in (-1, 1):
            at = head_at + np.array([sx * head_r * 1.1, head_r * _u(rng, 0.0, 0.6), 0.0])
            parts.append(Ellipsoid((ear_r * 0.5, ear_r, ear_r * 0.25)).rotate((0, 0, 1), -sx * _u(rng, 0.0, 0.8)).tag(2).translate(at))
    return _on_floor(_blend(parts, k))


def blob(rng: Rng) -> Shape:
    """Pebbles, potatoes, bean bags and lumps: a few ellipsoids and tapered lobes blended with wide fillets."""
    size = _u(rng, 0.1, 1.0)
    parts: list[Shape] = []
    for _ in range(int(rng.integers(2, 8))):
        r = size * rng.uniform(0.12, 0.35, 3)
        at = rng.normal(scale=size * 0.18, size=3)
        if rng.random() < 0.7:
            part: Shape = Ellipsoid(tuple(r)).rotate(rng.normal(size=3), _u(rng, 0, np.pi))
        else:
            d = rng.normal(size=3)
            d *= size * _u(rng, 0.15, 0.4) / np.linalg.norm(d)
            part = _limb(-d, d, float(r[0]), float(r[1]) * 0.5)
        parts.append(part.translate(at).tag(int(rng.integers(0, 3))))
    shape = _blend(parts, size * _u(rng, 0.08, 0.3))
    if rng.random() < 0.3:  # a dent
        d = rng.normal(size=3)
        d *= size * 0.45 / np.linalg.norm(d)
        dented = shape - Sphere(size * _u(rng, 0.1, 0.25)).translate(d)
        if _rough_volume(dented) > 0.5 * _rough_volume(shape):
            shape = dented
    return _on_floor(shape)


def _tube_along(curve: np.ndarray, radius: float, closed: bool) -> Shape:
    """A tube of ``radius`` around a polyline ``(n, 3)``: capsules joined at the vertices."""
    ends = np.concatenate([curve, curve[:1]]) if closed else curve
    return union(*[Capsule(tuple(a), tuple(b), radius) for a, b in zip(ends[:-1], ends[1:])])


def tube(rng: Rng) -> Shape:
    """Torus knots, wobbly rings and bent pipes: a round tube swept along a curve."""
    size = _u(rng, 0.1, 0.6)
    t = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    kind = rng.choice(["knot", "ring", "pipe"], p=[0.5, 0.25, 0.25])
    if kind == "knot":
        p, q = [(2, 3), (2, 5), (3, 4), (3, 5), (2, 7), (3, 2), (5, 2)][int(rng.integers(7))]
        small = _u(rng, 0.3, 0.6)
        rad = 1.0 + small * np.cos(q * t)
        curve = np.stack([rad * np.cos(p * t), small * np.sin(q * t) * _u(rng, 0.6, 1.5), rad * np.sin(p * t)], 1)
        radius = _u(rng, 0.1, 0.25)
    elif kind == "ring":
        wobble = sum(rng.normal(scale=0.15) * np.cos(f * t + rng.uniform(0, 2 * np.pi)) for f in range(2, 5))
        curve = np.stack([(1 + wobble) * np.cos(t), sum(rng.normal(scale=0.2) * np.sin(f * t) for f in range(1, 4)), np.sin(t)], 1)
        radius = _u(rng, 0.08, 0.35)
    else:
        steps = rng.normal(size=(6, 3))
        knots = np.cumsum(steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
        s = np.linspace(0.0, 5.0, 80)
        curve = np.stack([np.interp(s, np.arange(6), knots[:, i]) for i in range(3)], 1)
        # Chaikin-style smoothing rounds the corners of the random walk.
        for _ in range(10):
            curve[1:-1] = 0.25 * curve[:-2] + 0.5 * curve[1:-1] + 0.25 * curve[2:]
        radius = _u(rng, 0.1, 0.3)
    rot = rotation_matrix(rng.normal(size=3), _u(rng, 0, np.pi)) if kind != "ring" or rng.random() < 0.5 else np.eye(3)
    curve = curve @ rot.T
    scale = size / float(np.max(np.ptp(curve, axis=0)) + 2 * radius)
    curve = curve * scale
    curve[:, 1] -= curve[:, 1].min() - radius * scale
    return _tube_along(curve, radius * scale, closed=kind != "pipe").tag(int(rng.integers(0, 3)))


def _eroded(shape: Shape, inset: float) -> Shape:
    """The solid shrunk by ``inset`` (an eroded copy)."""
    return shape.round(-inset)


def random_csg(rng: Rng) -> Shape:
    """Random CSG: 2-6 primitives with unions, smooth unions, subtractions (holes), rounding and thin parts."""
    n = int(rng.integers(2, 7))

    def prim() -> Shape:
        k = rng.choice(["box", "sphere", "cylinder", "capsule", "cone", "torus", "ellipsoid", "plate", "rod"])
        s = _u(rng, 0.15, 0.5)
        if k == "box":
            p: Shape = Box(tuple(rng.uniform(0.05, s, 3)), _u(rng, 0.0, 0.04))
        elif k == "sphere":
            p = Sphere(s * 0.7)
        elif k == "cylinder":
            p = Cylinder(_u(rng, 0.04, s), _u(rng, 0.04, s))
        elif k == "capsule":
            a = rng.uniform(-s, s, 3)
            p = Capsule(tuple(a), tuple(-a), _u(rng, 0.03, 0.15))
        elif k == "cone":
            p = Cone(_u(rng, 0.05, s), _u(rng, 0.02, s), _u(rng, 0.0, s * 0.7))
        elif k == "torus":
            R = _u(rng, 0.1, s)
            p = Torus(R, _u(rng, 0.02, R * 0.6))
        elif k == "ellipsoid":
            p = Ellipsoid(tuple(rng.uniform(0.05, s, 3)))
        elif k == "plate":  # thin part
            p = Box((_u(rng, 0.1, s), _u(rng, 0.012, 0.03), _u(rng, 0.1, s)))
        else:  # thin rod
            p = Cylinder(_u(rng, 0.012, 0.03), _u(rng, 0.1, s))
        axis = rng.normal(size=3)
        return p.rotate(axis, _u(rng, 0, np.pi)).translate(rng.uniform(-0.25, 0.25, 3)).tag(int(rng.integers(0, 3)))

    shape = prim()
    for _ in range(n - 1):
        op = rng.choice(["union", "smooth", "subtract"], p=[0.5, 0.25, 0.25])
        other = prim()
        if op == "union":
            shape = union(shape, other)
        elif op == "smooth":
            shape = smooth_union(shape, other, _u(rng, 0.03, 0.12))
        else:
            cand = shape - other
            # A subtraction that removes (almost) everything would leave a degenerate shape.
            if _rough_volume(cand) > 0.3 * _rough_volume(shape):
                shape = cand
    if rng.random() < 0.3:
        shape = shape.round(_u(rng, 0.005, 0.03))
    if rng.random() < 0.1:
        shape = shape.shell(_u(rng, 0.02, 0.05))
    return shape


def _rough_volume(shape: Shape, res: int = 16) -> float:
    lo, hi = shape.bounds()
    g = [np.linspace(lo[i], hi[i], res) for i in range(3)]
    pts = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
    return float(np.mean(shape.sdf(pts) < 0) * np.prod(hi - lo))


FAMILIES: dict[str, Callable[[Rng], Shape]] = {
    "chair": chair,
    "table": table,
    "sofa": sofa,
    "cabinet": cabinet,
    "lamp": lamp,
    "car": car,
    "airplane": airplane,
    "mug": mug,
    "bottle": bottle,
    "bench": bench,
    "bed": bed,
    "monitor": monitor,
    "vase": vase,
    "csg": random_csg,
    "animal": animal,
    "figure": figure,
    "blob": blob,
    "tube": tube,
}


# --------------------------------------------------------------------------------------
# Canonical frame
# --------------------------------------------------------------------------------------
def solid_bounds(shape: Shape, res: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Tight bounding box ``(lo (3,), hi (3,))`` of the solid, from a marching-cubes mesh.

    The node bounds are only conservative (rounding, cuts and smooth unions make them
    loose), so the tight box is measured on the extracted surface.
    """
    lo, hi = shape.bounds()
    ext = float(np.max(hi - lo))
    pad = ext * 0.03 + 1e-6
    lo, hi = lo - pad, hi + pad
    # Cubic cells: isotropic resolution keeps the error the same on every axis.
    step = ext * 1.06 / res
    n = np.maximum(np.ceil((hi - lo) / step / 4).astype(int) * 4, 4)
    nmax = int(n.max())
    grid = sdf_grid(shape, lo, lo + nmax * step, nmax)
    g = grid[: n[0] + 1, : n[1] + 1, : n[2] + 1]
    verts, _ = mcubes.marching_cubes(-g, 0.0)
    if len(verts) == 0:
        raise ValueError("shape is empty at the sampling resolution")
    v = lo + verts * step
    return v.min(axis=0), v.max(axis=0)


class CanonicalShape(Transform):
    """A shape mapped into the canonical frame, carrying its SDF lattice and surface.

    ``lattice`` (:class:`occrecon.data.prepare.Lattice`) lets ``prepare_sample`` reuse the
    surface that canonicalisation had to extract anyway.
    """

    lattice = None


def canonicalize(shape: Shape, res: int = 64, cells: int = 128, tol: float = 5e-3) -> Shape:
    """Map ``shape`` into the canonical frame: bounding box centred at 0, longest side 1.

    A coarse pass (``res`` cells over the shape's bounds) gives the frame; a fine pass on
    the training lattice (``cells`` per unit, as ``prepare_sample`` uses) measures the box
    on the extracted surface and corrects it to within ``tol`` (thin extremities such as
    wing tips can be missed by the coarse pass). ``cells=0`` skips the fine pass.
    """
    from occrecon.data.prepare import canonical_lattice  # prepare depends on sdf only

    lo, hi = solid_bounds(shape, res)
    ext = float(np.max(hi - lo))
    if not ext > 0:
        raise ValueError("degenerate shape")
    centre = (lo + hi) / 2
    out = CanonicalShape(shape, translation=-centre / ext, scale=np.full(3, 1.0 / ext))
    if cells:
        lat = canonical_lattice(out, cells, tol)
        if lat.shape is not out:
            # The fix composes into one transform of the original shape.
            fixed = lat.shape
            out = CanonicalShape(fixed.child, rotation=fixed.rotation, translation=fixed.translation,
                                 scale=fixed.scale_xyz)
            lat = type(lat)(out, lat.grid, lat.lo, lat.cells, lat.mesh)
        out.lattice = lat
    return out


def random_shape(rng: Rng, families: list[str] | None = None) -> tuple[Shape, str]:
    """Draw a family uniformly from ``families`` (default: all) and a shape from it, canonicalised.

    Returns:
        (canonical shape, family name).
    """
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    # A random composition occasionally cuts itself away entirely (e.g. a hole
    # larger than its body); such draws are discarded, and since the retry keeps
    # drawing from the same generator the dataset stays deterministic.
    for _ in range(_MAX_DRAWS):
        name = names[int(rng.integers(len(names)))]
        try:
            return canonicalize(FAMILIES[name](rng)), name
        except ValueError:
            continue
    raise ValueError(f"no usable shape in {_MAX_DRAWS} draws from {names}")


_MAX_DRAWS = 20
