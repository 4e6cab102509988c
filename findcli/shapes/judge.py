"""Programmatic evaluator ("judge") for the shapes world: does an image show what a prompt says?

No network is involved. The steps, all vectorised over the batch except the last:
  1. Colour: each pixel goes to the nearest palette *ray* {s * colour : 0.35 <= s <= 1.25; white from
     0.5} (so shaded faces and highlights keep their colour) or to the background, whichever is
     nearer: the rendered background colour or the image's own (median of its border, as a generator
     tints it); pixels far from everything count as background.
  2. Clean-up: a 3x3 opening per colour removes noise specks and the thin rims a blur leaves between
     two touching objects (red + blue blends to purple), and keeps every 3x3-thick part exactly.
  3. Objects: 4-connected components of equal colour (label propagation with pointer jumping over the
     foreground pixels only), each cut at the valleys of its top profile where it is several objects
     side by side (`_split_touching`) and at the necks of its width profile where it is several
     objects one above the other (`_split_stacked`) -- the generator draws same-coloured objects
     touching, which the renderer never does -- kept if their area is at least MIN_AREA canvas px^2.
  4. Shape, from the component's bounding box: a pyramid has far fewer pixels in the top third of its
     box than in the bottom third; a cube (an oblique hexagon) fills its box's top-right and
     bottom-left corners but not the other two, while a sphere treats all four alike.
  5. Constraints per spec (a short Python loop per image over its few components).

Geometry is measured in canvas units (pixels of a 64x64 image; other sizes are rescaled), so the
margins below match the renderer in `world.py`.

Constraint keys returned by `judge`, all (N,) bool:
  colour            every named colour appears on some object
  shape             every named shape appears on some object
  objects_present   every named (colour, shape) object is found, as distinct objects (binding)
  relation          (kind "relation" only) some pair of matching objects satisfies the relation
  count             (kind "count" only) exactly `count` objects match the named colour and shape
  no_extra_objects  the image holds no objects besides the named ones (1, 2, 2 or `count`);
                    reported as a diagnostic, NOT part of success
Success: single/and -> objects_present; relation -> objects_present & relation; count -> count.

Limitation: touching objects of the same colour are split where they stand side by side (a valley in the
top profile) or one above the other (a neck in the width profile, read through other colours); a
pyramid resting diagonally on
another's flank makes neither and stays one component. Cubes are split less often than pyramids and
spheres (their valley and neck are the shallowest). Same-coloured "on"/"under" scenes are mostly still
judged failed on a correct render (64 clean renders each: a red cube on a red sphere 91%, a green
pyramid on a green sphere 38%, a red cube on a red cube 6%, a blue pyramid on a blue cube 0%; before
`_split_stacked` all 0%); the samplers never produce such captions (two-object captions always use
two colours).

Measured on 500 unbiased renders per kind (seed 100) against all of each scene's hard negatives
(`benchmarks/judge_rates.py`): clean 100% accepted / >= 99.99% rejected; blur sigma 0.8 px + noise
0.04: >= 99.6% / >= 99.97%; sigma 1.0 + noise 0.05: >= 99.2% / >= 99.96%; sigma 1.3 + noise 0.07:
89.8-99.2% / >= 99.09%. (Before the split of stacked objects, 2026-12-05: the same but at sigma 1.3,
90.0-99.2% / >= 99.11%.) (Before the split of touching objects, 2026-12-05: clean 100 / 100, the rest
as now but >= 99.09 rejected at sigma 1.3; before the image's own background and white's higher ray
start, 2026-12-01: >= 99.6 / 99.97, >= 98.6 / 99.89, 86.8-98.0 / >= 98.82.)
"""

from __future__ import annotations


import torch

from findcli.errors import FindError
from findcli.shapes.world import BACKGROUND, CANVAS, COLOURS, PALETTE, SHAPES, Spec, parse_prompt, with_converses

# ---- thresholds (canvas px unless noted) ----
RAY_MIN, RAY_MAX = 0.35, 1.25  # brightness range of a palette colour (renderer: 0.62-1.12 x 0.9-1.05, plus blur)
# White's ray is the grey axis, on which the background (and a generator's tinted, brightened
# background) lies: its dark end starts higher. The darkest rendered white is 0.62 x 0.9 x 0.95 = 0.53.
WHITE_RAY_MIN = 0.5
MAX_COLOUR_DIST = 0.35  # RGB distance beyond which a pixel matches no palette ray -> background
MIN_AREA = 25.0  # px^2: the smallest object (13 px pyramid) covers ~78 px^2; blur specks stay < 20
CORNER = 0.4  # corner triangles: u + v < CORNER etc. in box coordinates u, v in [0, 1]
# Cube vs sphere by diagonal asymmetry (`diag` in `segment`): a cube fills its box's top-right and
# bottom-left corner triangles and is cut in the other two (those are 1 - (0.31 / 0.4)^2 = 40% full),
# so diag = 1 - 0.4 = 0.6 as drawn; on renders blurred with sigma <= 1 px it measured 0.33 (1st
# percentile) to 0.52 (median). A sphere is symmetric: diag ~0, 99th percentile 0.15.
CUBE_DIAG = 0.24
# Pyramid: pixels in the top third / bottom third of the box = (1/9) / (5/9) = 0.2 as drawn
# (0.26-0.55 measured on blurred renders); cubes and spheres ~1 (>= 0.72).
PYRAMID_TOP_BOTTOM = 0.62
# relations (rendered: "on" sinks 1-1.5 px, above/below gap >= 7, left/right gap >= 8, next-to gap 2-4)
ON_MAX_GAP = 3.0  # touching: gap between the lower edge of the top object and the top of the base
ON_MAX_SINK = 0.45  # ... and it may sink into the base by at most this fraction of the base height
ON_MAX_OFFSET = 0.35  # |centre offset| / wider width: resting centred on the base
ABOVE_MIN_GAP = 4.0  # clear vertical gap for above/below
LEFT_MIN_GAP = 2.0  # horizontal gap for left/right of (next-to scenes, gap 2-4, also qualify)
NEXT_MAX_GAP = 7.0  # side by side: horizontal gap at most this ...
NEXT_MIN_VOVERLAP = 0.5  # ... and vertical overlap at least this fraction of the shorter object
# Same-coloured objects side by side (`_split_touching`): a valley in the component's top profile
# (3-column median) at least this deep (canvas px) and this fraction of the lower neighbouring peak's
# height. Rendered, two touching pyramids dip by the lower one's full height, spheres by a radius
# (6.5-12; ~3-5 after the median), cubes by their top face's depth (0.31 w >= 4; ~2-3 after it).
SPLIT_MIN_DEPTH = 2.0
SPLIT_MIN_REL = 0.15
# Same-coloured objects one above the other (`_split_stacked`): a neck in the component's width profile
# (per row, rightmost - leftmost pixel + 1; 3-row median) at least SPLIT_MIN_DEPTH narrower than the
# narrower of the widest rows above and below it, and at least this fraction of that width. Rendered,
# a pyramid resting on another narrows to the lower apex (~90% of the upper base), a sphere on a
# sphere by ~35-60%, a cube on a cube by ~0.3 of its width before the median and a blur flatten it;
# no single rendered object narrows and widens again. Chosen on the development draw (reward_auc.py
# --seed 1): 0.3 left most stacked cubes whole, 0.15 cut a single, lumpy generated cube in two.
STACK_MIN_REL = 0.2


# ---------------------------------------------------------------- segmentation
def _classify_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, H, W) long: 0 background, 1 + index into COLOURS."""
    x = images.float().permute(0, 2, 3, 1)  # (N, H, W, 3)
    pal = torch.tensor([PALETTE[c] for c in COLOURS], device=x.device)  # (C, 3)
    pal_sq = (pal * pal).sum(1)  # (C,) |c|^2
    xc = x @ pal.T  # (N, H, W, C) x . c
    lo = torch.tensor([WHITE_RAY_MIN if c == "white" else RAY_MIN for c in COLOURS], device=x.device)
    s = torch.maximum(xc / pal_sq, lo).clamp(max=RAY_MAX)  # brightness of the nearest point on each ray segment
    x_sq = (x * x).sum(-1, keepdim=True)  # (N, H, W, 1)
    d2 = x_sq - 2 * s * xc + s * s * pal_sq  # |x - s c|^2, expanded to avoid an (N, H, W, C, 3) tensor
    bg = torch.tensor(BACKGROUND, device=x.device)
    d2_bg = ((x - bg) ** 2).sum(-1)  # (N, H, W)
    # The image's own background: the per-channel median of its 1-px border (objects never cover
    # most of it). A generator tints the background (e.g. (0.38, 0.28, 0.30) instead of the rendered
    # (0.20, 0.20, 0.22)); that tint lies on the white ray's dark end, and before this every such
    # pixel was "white", the whole image one white object. A pixel is background if it is nearer
    # either background than any palette ray.
    border = torch.cat([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], 1)  # (N, 2W + 2H - 4, 3)
    own_bg = border.median(dim=1).values[:, None, None, :]  # (N, 1, 1, 3)
    d2_bg = torch.minimum(d2_bg, ((x - own_bg) ** 2).sum(-1))
    best_d2, best = d2.min(dim=-1)
    return torch.where((best_d2 < d2_bg) & (best_d2 < MAX_COLOUR_DIST**2), best + 1, 0)


def _shifted(x: torch.Tensor, dy: int, dx: int, fill: int = 0) -> torch.Tensor:
    """x[..., y + dy, x + dx] with `fill` outside the image."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = x[
        ..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _open(cls: torch.Tensor) -> torch.Tensor:
    """3x3 opening of each colour class of a (N, H, W) class map: removes specks and the rims
    (< 3 px thick) that a blur leaves between two touching objects, keeps every 3x3-thick part.

    Erosion keeps a pixel whose 3x3 neighbourhood is all its class (pixels outside the image count as
    its class); dilation then restores a pixel if any eroded pixel of its class lies within 3x3."""
    cls = cls.to(torch.uint8)
    left, right = _shifted(cls, 0, -1, 255), _shifted(cls, 0, 1, 255)  # 255 marks "outside the image"
    up, down = _shifted(cls, -1, 0, 255), _shifted(cls, 1, 0, 255)
    same_row = ((left == cls) | (left == 255)) & ((right == cls) | (right == 255))
    keep = (
        same_row
        & _shifted(same_row, -1, 0, 1)
        & _shifted(same_row, 1, 0, 1)
        & ((up == cls) | (up == 255))
        & ((down == cls) | (down == 255))
    )
    eroded = cls * keep  # class of eroded pixels, 0 elsewhere
    restored = eroded > 0
    for dy, dx in _NEIGHBOURS:
        restored |= _shifted(eroded, dy, dx) == cls
    return cls * (restored & (cls > 0))


def _components(cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """4-connected components of equal nonzero class in a (N, H, W) class map.

    Works on the list of foreground pixels only (~10% of an image): each pixel repeatedly takes the
    largest index among itself and its same-class 4-neighbours, then jumps to the label its label
    holds (pointer jumping), until nothing changes. Returns fg (K,) flat indices into N*H*W of the
    foreground pixels and comp (K,) their component ids 0..Q-1."""
    n, h, w = cls.shape
    flat_cls = cls.reshape(-1)
    fg = (flat_cls > 0).nonzero().squeeze(1)  # (K,) flat pixel index
    k = fg.numel()
    pos = torch.full((n * h * w,), -1, dtype=torch.long, device=cls.device)
    pos[fg] = torch.arange(k, device=cls.device)
    x, y = fg % w, (fg // w) % h
    nbs = []
    for step, ok in ((-1, x > 0), (1, x < w - 1), (-w, y > 0), (w, y < h - 1)):
        other = (fg + step).clamp(0, n * h * w - 1)
        j = pos[other]
        same = ok & (j >= 0) & (flat_cls[other] == flat_cls[fg])
        nbs.append(torch.where(same, j, torch.arange(k, device=cls.device)))
    nbs = torch.stack(nbs, 1)  # (K, 4) same-class neighbours, self where there is none
    label = torch.arange(k, device=cls.device)
    for _ in range(h * w):
        new = torch.maximum(label, label[nbs].amax(1))
        new = new[new]  # pointer jumping: labels are pixel ids of the same component, >= our own
        if torch.equal(new, label):
            break
        label = new
    _, comp = torch.unique(label, return_inverse=True)
    return fg, comp


def _run_start(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, H, W) long: for each pixel, the index along `dim` (1: rows, 2: columns)
    where the run of True pixels holding it starts; a False pixel's own index. One running maximum of
    "last False index + 1", no loop over rows or columns (the judge reward's hot path)."""
    idx = torch.arange(mask.shape[dim], device=mask.device).view([-1 if d == dim else 1 for d in range(3)])
    after_gap = torch.where(mask, 0, idx + 1).cummax(dim).values
    return torch.where(mask, after_gap, idx.expand_as(after_gap))


def _run_end(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """As `_run_start`, the index where the run ends (its last True pixel)."""
    last = mask.shape[dim] - 1
    return last - _run_start(mask.flip(dim), dim).flip(dim)


def _median3(values: list[int]) -> list[int]:
    """Running median over 3 neighbours (2 at the ends, the larger then): a single noisy column (a speck
    above the top edge, a notch in it) makes neither a peak nor a valley; a valley between two objects
    is wider than one column."""
    out = []
    for i in range(len(values)):
        window = sorted(values[max(0, i - 1) : i + 2])
        out.append(window[len(window) // 2])
    return out


def _valley_cuts(
    prof: list[int], mass: list[int], min_depth: float, min_rel: float, min_area: float, smoother_side: bool
) -> list[int]:
    """Where to cut a profile (one value per column or row of a component) into single-peaked parts.

    Recursively takes the deepest valley: a position whose value is at least `min_depth` and `min_rel`
    of the peak below the lower of the highest values on either side of it, provided each side holds
    at least `min_area` pixels (`mass`: pixels per position). Returns the cuts as the last position of
    the part before each cut. The valley position itself goes to the side it continues more smoothly
    (`smoother_side`) or to the side after it (a neck row belongs to the lower object's apex)."""
    cuts: list[int] = []
    todo = [(0, len(prof) - 1)]
    while todo:
        a, b = todo.pop()
        best, best_v = 0.0, None
        after_max = prof[a : b + 1] + [0]  # after_max[i - a]: highest value in i..b
        for i in range(b - 1, a - 1, -1):
            after_max[i - a] = max(after_max[i - a], after_max[i - a + 1])
        before_max = 0
        for v in range(a + 1, b):
            before_max = max(before_max, prof[v - 1])
            peak = min(before_max, after_max[v - a + 1])
            depth = peak - prof[v]
            if depth >= min_depth and depth >= min_rel * peak and depth > best:
                best, best_v = depth, v
        if best_v is None:
            continue
        v = best_v - 1
        if smoother_side and prof[best_v + 1] - prof[best_v] >= prof[best_v - 1] - prof[best_v]:
            v = best_v  # the valley continues the part after it less smoothly: keep it before
        if sum(mass[a : v + 1]) < min_area or sum(mass[v + 1 : b + 1]) < min_area:
            continue
        cuts.append(v)
        todo += [(a, v), (v + 1, b)]
    return cuts


def _candidates(comp: torch.Tensor, unit: float) -> list[int]:
    """Components large enough to hold two objects of at least MIN_AREA each."""
    area = torch.bincount(comp)
    return (area >= 2 * (MIN_AREA / (unit * unit))).nonzero().squeeze(1).tolist()


def _component_image(fg: torch.Tensor, comp: torch.Tensor, q: int, hw: int) -> torch.Tensor:
    """(Q,) the image index of each component."""
    return torch.zeros(q, dtype=torch.long, device=fg.device).scatter_(0, comp, fg // hw)


def _cut_components(
    comp: torch.Tensor, pos: torch.Tensor, n: int, prof: list[list[int]], mass: list[list[int]], cand: list[int],
    unit: float, min_rel: float, smoother_side: bool,
) -> torch.Tensor:
    """Cut each candidate component along one axis (columns or rows, `pos` each pixel's index on it, `n`
    positions) at the valleys of its profile `prof[c]` (3-position median, `_valley_cuts`), `mass[c]`
    its pixels per position. Returns new component ids 0..Q'-1 (`comp` itself when nothing is cut)."""
    part = torch.zeros(len(prof), n, dtype=torch.long)  # (component, position) -> part index
    for c in cand:
        used = [i for i in range(n) if mass[c][i] > 0]
        a, b = used[0], used[-1]  # every position in between (a part can skip some: width 0 there)
        cuts = _valley_cuts(_median3(prof[c][a : b + 1]), mass[c][a : b + 1], SPLIT_MIN_DEPTH / unit, min_rel,
                            MIN_AREA / (unit * unit), smoother_side)
        for v in cuts:
            part[c, a + v + 1 :] += 1
    if not bool(part.any()):
        return comp
    _, new = torch.unique(comp * n + part.to(comp.device)[comp, pos], return_inverse=True)
    return new


def _split_touching(fg: torch.Tensor, comp: torch.Tensor, fg_mask: torch.Tensor, unit: float) -> torch.Tensor:
    """Split components that are several same-coloured objects side by side (touching or merged by a
    blur) at the valleys of their top profile. Returns new component ids 0..Q'-1 for the pixels `fg`.

    Every rendered object's top profile (per column, the highest pixel of the component) has a single
    peak: a pyramid's apex, a sphere's dome, a cube's flat top face with its oblique left edge. Two
    objects side by side make two peaks with a valley between them: as deep as the lower peak for
    pyramids, a radius for spheres, the top face's depth (0.31 of the width) for cubes. The renderer
    never draws same-coloured objects touching (count scenes keep >= 4 px between boxes; two-object
    captions use two colours), so on a render this only sees single objects, and on a generator's
    images it counts two touching pyramids as two, as a person does, instead of one blob whose shape
    is then misread.

    The profile is read through other colours: a column's height is where the run of foreground
    pixels (any colour, before the clean-up) holding the component's top pixel starts, so a part of
    the object that the colour classes split off (a highlight called white, a blended rim) or another
    object resting on it makes no valley, and the heights are a 3-column median, so that one noisy
    column (a speck above the edge, a notch in it) makes neither a peak nor a valley. A component is
    cut at its deepest valley when the valley is at least SPLIT_MIN_DEPTH canvas px below the lower
    of the highest points on either side and at least SPLIT_MIN_REL of that point's height above the
    component's bottom, and each side holds at least MIN_AREA; the two sides are split again the same
    way. Measured on rendered rows of touching objects (tests/test_shapes_judge.py): pyramids 100%,
    spheres 79-100%, cubes 4-58% (a cube's one-corner dip is the shallowest), 92-100% 1 px apart."""
    cand = _candidates(comp, unit) if comp.numel() else []
    if not cand:
        return comp
    _, h, w = fg_mask.shape
    q = int(comp.max()) + 1
    xs, ys = fg % w, (fg // w) % h
    key = comp * w + xs  # (component, column)
    # the component's top pixel per column, then the start of the foreground run above it
    top_own = torch.full((q * w,), h, dtype=torch.long, device=fg.device).scatter_reduce(0, key, ys, "amin")
    column = torch.arange(w, device=fg.device).repeat(q)
    img = _component_image(fg, comp, q, h * w).repeat_interleave(w)
    at = (img * h + top_own.clamp(max=h - 1)) * w + column  # flat index of that pixel
    top = torch.where(top_own < h, _run_start(fg_mask, 1).reshape(-1)[at], h)
    bottom = torch.full((q,), -1, dtype=torch.long, device=fg.device).scatter_reduce(0, comp, ys, "amax")
    heights = (bottom[:, None] + 1 - top.view(q, w)).tolist()  # column heights above the bottom, px
    col_area = torch.bincount(key, minlength=q * w).view(q, w).tolist()
    # the valley column goes to the side it continues more smoothly (a cube's dipped front corner
    # belongs to the cube on the right, not to the top face on the left)
    return _cut_components(comp, xs, w, heights, col_area, cand, unit, SPLIT_MIN_REL, True)


def _split_stacked(fg: torch.Tensor, comp: torch.Tensor, fg_mask: torch.Tensor, unit: float) -> torch.Tensor:
    """Split components that are same-coloured objects one above the other, touching (straight or
    diagonally: a cube resting on a cube's corner, a pyramid on a pyramid's apex) at the necks of their
    width profile. Returns new component ids 0..Q'-1 for the pixels `fg`.

    Per row, the component's width is read through other colours, as `_split_touching` reads its top
    profile: from the start of the foreground run (any colour, before the clean-up) holding its
    leftmost pixel to the end of the run holding its rightmost pixel, clipped to the component's own
    columns, so a highlight the colour classes split off (a red sphere's yellow sheen reaching its
    edge) makes no notch; taken on a 3-row median. A rendered pyramid widens downwards, a
    cube widens, keeps its width and narrows, a sphere widens and narrows: no single object narrows and
    then widens again. Two stacked objects do, at the row where they meet. The top profile of
    `_split_touching` cannot see them (the upper object sits on the lower's top). A component is cut at
    its deepest neck when the neck is at least SPLIT_MIN_DEPTH canvas px and STACK_MIN_REL narrower
    than the narrower of the widest rows above and below it, and each side holds at least MIN_AREA;
    the neck row goes to the lower object (it is that object's apex or top), and both parts are split
    again the same way. The renderer never stacks same-coloured objects (relation captions use two
    colours, count scenes keep >= 4 px apart), so on renders it changes only noisy scenes at blur 1.3
    (`benchmarks/judge_rates.py`: <= 0.2 points); diagonally touching objects side by side whose rows
    overlap little (one upper left, one lower right) are cut here too."""
    cand = _candidates(comp, unit) if comp.numel() else []
    if not cand:
        return comp
    _, h, w = fg_mask.shape
    q = int(comp.max()) + 1
    xs, ys = fg % w, (fg // w) % h
    key = comp * h + ys  # (component, row)
    own_l = torch.full((q * h,), w, dtype=torch.long, device=fg.device).scatter_reduce(0, key, xs, "amin")
    own_r = torch.full((q * h,), -1, dtype=torch.long, device=fg.device).scatter_reduce(0, key, xs, "amax")
    # through other colours: the ends of the foreground runs holding those pixels, within the
    # component's own columns
    run_left, run_right = _run_start(fg_mask, 2), _run_end(fg_mask, 2)
    row = torch.arange(h, device=fg.device).repeat(q)
    base = (_component_image(fg, comp, q, h * w).repeat_interleave(h) * h + row) * w
    x_lo = torch.full((q,), w, dtype=torch.long, device=fg.device).scatter_reduce(0, comp, xs, "amin").repeat_interleave(h)
    x_hi = torch.full((q,), -1, dtype=torch.long, device=fg.device).scatter_reduce(0, comp, xs, "amax").repeat_interleave(h)
    has = own_r >= 0
    left = torch.where(has, torch.maximum(run_left.reshape(-1)[base + own_l.clamp(max=w - 1)], x_lo), w)
    right = torch.where(has, torch.minimum(run_right.reshape(-1)[base + own_r.clamp(min=0)], x_hi), -1)
    width = (right - left + 1).clamp(min=0).view(q, h).tolist()
    row_area = torch.bincount(key, minlength=q * h).view(q, h).tolist()
    # the neck row goes to the lower object
    return _cut_components(comp, ys, h, width, row_area, cand, unit, STACK_MIN_REL, False)


def segment(images: torch.Tensor) -> list[list[dict]]:
    """Objects found in each image: per image a list of dicts with colour, shape, area (canvas px^2),
    box (x0, y0, x1, y1, cx, cy in canvas units) and the shape features (fill, top_bottom, corners,
    diag)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise FindError(f"the shapes judge expects images shaped (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    dev = images.device
    unit = CANVAS / h  # canvas units per pixel (square images)
    raw = _classify_pixels(images)
    cls = _open(raw)
    fg, comp = _components(cls)
    fg_mask = raw > 0  # foreground of any colour, before the clean-up: the splits read profiles through it
    comp = _split_touching(fg, comp, fg_mask, unit)
    comp = _split_stacked(fg, comp, fg_mask, unit)
    q = int(comp.max()) + 1 if comp.numel() else 0
    xs, ys = (fg % w).float(), ((fg // w) % h).float()  # (K,) pixel column and row

    def total(val):
        return torch.zeros(q, device=dev).index_add_(0, comp, val)

    def reduce(val, how):
        init = torch.full((q,), float("inf") if how == "amin" else float("-inf"), device=dev)
        return init.scatter_reduce(0, comp, val, how, include_self=False)

    area = torch.bincount(comp, minlength=q).float()
    x0, x1 = reduce(xs, "amin"), reduce(xs, "amax") + 1
    y0, y1 = reduce(ys, "amin"), reduce(ys, "amax") + 1
    bw, bh = x1 - x0, y1 - y0
    # per-pixel position inside its component's box, in [0, 1]
    u = (xs + 0.5 - x0[comp]) / bw[comp]
    v = (ys + 0.5 - y0[comp]) / bh[comp]
    top = total((v < 1 / 3).float())  # pixels in the top third of the box
    bottom = total((v > 2 / 3).float())
    # Cubes and spheres have square boxes. An object resting on top of another hides (cube) or blurs
    # away (sphere) the top of its base, so judge cube vs sphere in a square box of side max(w, h)
    # anchored at the bottom edge: it restores the base's true box and leaves whole objects unchanged.
    side = torch.maximum(bw, bh)
    v = (ys + 0.5 - (y1 - side)[comp]) / side[comp]
    # the four corner triangles of the box (each CORNER^2 / 2 of its area): a disk barely reaches them;
    # a cube fills the top-right and bottom-left ones and is cut diagonally in the other two
    diag_main = total(((u - v > 1 - CORNER) | (v - u > 1 - CORNER)).float())  # top-right, bottom-left
    diag_anti = total(((u + v < CORNER) | (u + v > 2 - CORNER)).float())  # top-left, bottom-right
    sx, sy = total(xs + 0.5), total(ys + 0.5)
    colour = torch.zeros(q, dtype=torch.long, device=dev).scatter_(0, comp, cls.reshape(-1)[fg].long())
    image = torch.zeros(q, dtype=torch.long, device=dev).scatter_(0, comp, fg // (h * w))

    fill = area / (bw * side)
    top_bottom = top / bottom.clamp(min=1)  # pyramid ~0.2-0.5, cube and sphere ~1
    tri = CORNER**2 * bw * side  # area of two corner triangles, pixels
    corners = (diag_main + diag_anti) / (2 * tri)  # filled fraction of all four
    diag = (diag_main - diag_anti) / tri  # cube ~0.5, sphere ~0
    shape = torch.where(
        top_bottom < PYRAMID_TOP_BOTTOM,
        SHAPES.index("pyramid"),
        torch.where(diag > CUBE_DIAG, SHAPES.index("cube"), SHAPES.index("sphere")),
    )
    rows = torch.stack([x0, y0, x1, y1, sx / area, sy / area], 1) * unit
    keep = (area * unit * unit >= MIN_AREA).nonzero().squeeze(1).tolist()
    cols = [t.tolist() for t in (image, colour, shape, area * unit * unit, rows, fill, top_bottom, corners, diag)]
    out: list[list[dict]] = [[] for _ in range(n)]
    for j in keep:
        i, c, s, ar, box, f, tb, cr, dg = (col[j] for col in cols)
        out[i].append(
            {
                "colour": COLOURS[c - 1],
                "shape": SHAPES[s],
                "area": ar,
                "box": tuple(box),
                "fill": f,
                "top_bottom": tb,
                "corners": cr,
                "diag": dg,
            }
        )
    return out


# ---------------------------------------------------------------- relations
def _on(a: dict, b: dict) -> bool:
    """a rests on top of b, touching."""
    ax0, ay0, ax1, ay1, acx, _ = a["box"]
    bx0, by0, bx1, by1, bcx, _ = b["box"]
    gap = by0 - ay1  # > 0: a floats above b; < 0: a's bottom sinks into b's box
    centre_offset = abs((ax0 + ax1) / 2 - (bx0 + bx1) / 2)
    return (
        ay0 < by0
        and -ON_MAX_SINK * (by1 - by0) <= gap <= ON_MAX_GAP
        and centre_offset <= ON_MAX_OFFSET * max(ax1 - ax0, bx1 - bx0)
    )


def _above(a: dict, b: dict) -> bool:
    return b["box"][1] - a["box"][3] >= ABOVE_MIN_GAP


def _left(a: dict, b: dict) -> bool:
    return b["box"][0] - a["box"][2] >= LEFT_MIN_GAP


def _next(a: dict, b: dict) -> bool:
    ax0, ay0, ax1, ay1 = a["box"][:4]
    bx0, by0, bx1, by1 = b["box"][:4]
    gap = max(bx0 - ax1, ax0 - bx1)
    overlap = min(ay1, by1) - max(ay0, by0)
    return -2.0 <= gap <= NEXT_MAX_GAP and overlap >= NEXT_MIN_VOVERLAP * min(ay1 - ay0, by1 - by0)


RELATION_TESTS = with_converses({"on": _on, "above": _above, "to the left of": _left, "next to": _next})


# ---------------------------------------------------------------- judge
def constraint_keys(spec: Spec) -> tuple[str, ...]:
    """The keys `judge` returns for this spec's kind."""
    keys = ["colour", "shape", "objects_present"]
    if spec.kind == "relation":
        keys.append("relation")
    if spec.kind == "count":
        keys.append("count")
    return (*keys, "no_extra_objects")


def _judge_one(objs: list[dict], spec: Spec) -> dict[str, bool]:
    def matches(o):
        return [i for i, x in enumerate(objs) if x["colour"] == o.colour and x["shape"] == o.shape]

    res = {
        "colour": all(any(x["colour"] == o.colour for x in objs) for o in spec.objects),
        "shape": all(any(x["shape"] == o.shape for x in objs) for o in spec.objects),
    }
    if spec.kind in ("single", "count"):
        found = matches(spec.objects[0])
        res["objects_present"] = len(found) >= 1
        if spec.kind == "count":
            res["count"] = len(found) == spec.count
        expected = spec.count if spec.kind == "count" else 1
    else:
        a, b = spec.objects
        ma, mb = matches(a), matches(b)
        res["objects_present"] = any(i != j for i in ma for j in mb)
        if spec.kind == "relation":
            test = RELATION_TESTS[spec.relation]
            res["relation"] = any(i != j and test(objs[i], objs[j]) for i in ma for j in mb)
        expected = 2
    res["no_extra_objects"] = len(objs) == expected
    return res


def _success(res: dict[str, bool], spec: Spec) -> bool:
    if spec.kind == "count":
        return res["count"]
    if spec.kind == "relation":
        return res["objects_present"] and res["relation"]
    return res["objects_present"]


def judge(images: torch.Tensor, spec: Spec) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Judge each image against one spec.

    images: (N, 3, H, W) float in [0, 1] (any device; square). Returns success (N,) bool and a dict of
    (N,) bool constraint tensors (keys: `constraint_keys(spec)`, described in the module docstring),
    all on the CPU.
    """
    if isinstance(spec, str):
        spec = parse_prompt(spec)
    found = segment(images)
    per = [_judge_one(objs, spec) for objs in found]
    keys = constraint_keys(spec)
    checks = {k: torch.tensor([r[k] for r in per], dtype=torch.bool) for k in keys}
    success = torch.tensor([_success(r, spec) for r in per], dtype=torch.bool)
    return success, checks


def judge_each(images: torch.Tensor, specs: list[Spec]) -> tuple[torch.Tensor, list[dict[str, bool]]]:
    """Judge image i against specs[i] (one segmentation pass for the batch). Returns success (N,) bool
    and the per-image constraint dicts."""
    if len(specs) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(specs)} specs")
    return judge_segments(segment(images), specs)


def judge_segments(found: list[list[dict]], specs: list[Spec]) -> tuple[torch.Tensor, list[dict[str, bool]]]:
    """`judge_each` on the output of `segment` (so one segmentation can be judged against many specs)."""
    per = [_judge_one(objs, spec) for objs, spec in zip(found, specs)]
    success = torch.tensor([_success(r, s) for r, s in zip(per, specs)], dtype=torch.bool)
    return success, per


# ---------------------------------------------------------------- suites
def load_suite(path) -> list[tuple[str, str]]:
    """Read a prompt suite: one prompt per line as `category<TAB>prompt` (or a bare prompt, whose
    category is then `parse_prompt(prompt).category()`); blank lines and `#` comments are skipped.
    Every prompt must parse. Returns [(category, prompt), ...] in file order."""
    from findcli.shapes.world import read_suite_file

    return read_suite_file(path, parse_prompt, lambda spec: spec.category())


def judge_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """A rule-based reward in the `--reward module:function` form (GenEval-style, as RL papers use for
    compositional prompts): 1 for a success plus the fraction of the prompt's constraints met, so that
    partial progress is graded. Use it as `--reward findcli.shapes.judge:judge_reward`.

    It is the same judge as `find eval` uses: a policy trained on it and evaluated by it is evaluated on
    fresh noise, but not by an independent judge — report such numbers as such.
    """
    specs = [parse_prompt(p) for p in prompts]
    success, per = judge_each(images, specs)
    frac = torch.tensor([sum(bool(v) for v in r.values()) / max(len(r), 1) for r in per])
    return (success.float() + frac).to(images.device)
