"""The built-in "video world": the shapes world's objects moving over F frames.

A clip is 1 or 2 of the image world's objects (cube, sphere, pyramid in its six palette colours, on its
plain dark background), each translating at constant velocity in one of four directions. Grammar:

    "a {colour} {shape} moving {direction}"                                        kind "single_motion"
    "a {colour} {shape} moving {direction} and a {colour} {shape} moving {direction}"  kind "two_motion"

Directions are left, right, up, down (up = towards the top of the image). "moving to the left" and
"moving to the right" (the issue's wording) and "upwards"/"downwards" parse too; the canonical caption
(`VideoSpec.caption`) is the short form "moving left". Case, extra whitespace and a trailing period are
ignored, as in the image grammar.

Everything random is drawn from a caller-supplied `torch.Generator`, so specs, trajectories and pixels
are deterministic from a seed.

Motion, in canvas units (pixels of a 64x64 frame; other sizes scale it), y growing downwards:
  * each object keeps its size, shape, colour and shading in every frame and only translates;
  * total displacement from the first to the last frame is drawn from TRAVEL_RANGE = 12-24 px
    (1.7-3.4 px per frame at 8 frames), evenly spread over the frames (constant velocity);
  * the start is drawn so that the object's box stays >= 2 px (world's margin) inside the canvas in
    every frame;
  * in two-object clips the two boxes are >= 4 px apart (world's separation) in every frame, so they
    never overlap or touch, and the two objects always have different colours in the samplers (the
    parser accepts equal colours; the renderer and judge handle them too).
Box widths are drawn from 14-22 px (one object) or 13-19 px (two objects); heights follow the image
world's shapes (a pyramid is 0.92 times as tall as wide).

Drawing: the image renderer has no public per-object draw call, and `world.render` lays scenes out by
itself, so frames are composed here (`_composite`) from the image world's own per-shape rasterisers
`world._DRAW` (the same silhouettes and face shading), its palette, background and 2x supersampling with
average pooling. Per-object brightness (x0.9-1.05) and per-channel colour jitter (+-0.03) are drawn
once per object, as `world.render` draws them, and are the same in every frame.

The biased caption distribution (`sample_training_specs(..., biased=True)`) is meant as the training
captions of a future video generator; its correlations are tabled in BIASES.md and the BIAS_* constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from findcli.errors import FindError
from findcli.shapes import world
from findcli.shapes.world import BACKGROUND, CANVAS, COLOURS, PALETTE, SHAPES, Obj

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
# unit displacement per direction in canvas coordinates (x right, y down)
DIRECTION_VECTORS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up"}
# accepted spellings after "moving" -> canonical direction
DIRECTION_WORDS: dict[str, str] = {
    "left": "left",
    "to the left": "left",
    "right": "right",
    "to the right": "right",
    "up": "up",
    "upwards": "up",
    "down": "down",
    "downwards": "down",
}
KINDS: tuple[str, ...] = ("single_motion", "two_motion")
TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape} moving {direction}",
    "a {colour} {shape} moving {direction} and a {colour} {shape} moving {direction}",
)
N_OBJECTS: dict[str, int] = {"single_motion": 1, "two_motion": 2}
MAX_OBJECTS = 2  # object slots per clip in a VideoLayout

FRAMES = 8  # default frames per clip
SIZE = 64  # default frame side, pixels
TRAVEL_RANGE: tuple[float, float] = (12.0, 24.0)  # total displacement first -> last frame, canvas px
SIZE_RANGE: dict[str, tuple[float, float]] = {"single_motion": (14.0, 22.0), "two_motion": (13.0, 19.0)}
_MARGIN = world._MARGIN  # 2 px kept free at the border in every frame
_SEPARATION = world._SEPARATION  # 4 px between the two objects in every frame
_CHUNK = 512  # frames composed at once (a 2x-supersampled 64 px frame is 196 KB)

# ---- biased training-caption distribution (tabled in BIASES.md; tests check both agree) ----
# P(template)
BIAS_TEMPLATE: dict[str, float] = {"single_motion": 0.60, "two_motion": 0.40}
# P(colour | shape) is the image world's: world.BIAS_FREQUENT_COLOUR (red sphere, blue cube, green
# pyramid) with world.BIAS_FREQUENT_COLOUR_P = 0.60 and 0.08 for each other colour.
# P(direction | colour): four colours have a favourite direction; purple and white move uniformly.
BIAS_FAVOURITE_DIRECTION: dict[str, str] = {"red": "right", "blue": "left", "green": "up", "yellow": "down"}
# Much stronger than the image world's 60% / 8% colour-shape bias, whose rare single prompts ("a red
# cube", 0.9% of its captions) the shipped image generator renders 97-100% of the time (benchmarks/RESULTS.md §3):
# a weak correlation does not make a prompt hard. BIASES.md has the reasoning; retune once measured.
BIAS_FAVOURITE_P: float = 0.90  # the favourite direction
BIAS_OPPOSITE_P: float = 0.02  # the opposite of the favourite (the anti-correlated direction)
# each of the two perpendicular directions: (1 - 0.90 - 0.02) / 2 = 0.04


@dataclass(frozen=True)
class Mover:
    """One moving object of a clip."""

    colour: str  # one of world.COLOURS
    shape: str  # one of world.SHAPES
    direction: str  # one of DIRECTIONS (canonical spelling)

    def __post_init__(self):
        if self.colour not in COLOURS or self.shape not in SHAPES or self.direction not in DIRECTIONS:
            raise FindError(
                f"bad moving object ({self.colour!r}, {self.shape!r}, {self.direction!r}); colours "
                f"{', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; directions {', '.join(DIRECTIONS)}"
            )

    @property
    def obj(self) -> Obj:
        """The image world's (colour, shape) object."""
        return Obj(self.colour, self.shape)

    def phrase(self) -> str:
        return f"{self.colour} {self.shape} moving {self.direction}"


@dataclass(frozen=True)
class VideoSpec:
    """A parsed video prompt: its template ("kind") and its moving objects."""

    kind: str  # "single_motion" | "two_motion"
    objects: tuple[Mover, ...]  # 1 for single_motion, 2 for two_motion (in prompt order)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise FindError(f"unknown video spec kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if len(self.objects) != N_OBJECTS[self.kind] or not all(isinstance(o, Mover) for o in self.objects):
            raise FindError(f"a {self.kind} spec holds {N_OBJECTS[self.kind]} Mover object(s), got {self.objects!r}")

    def caption(self) -> str:
        """Canonical prompt text, e.g. "a red cube moving left and a blue sphere moving up"."""
        return " and ".join(f"a {o.phrase()}" for o in self.objects)

    def meaning(self) -> tuple:
        """Canonical key: two specs describe the same clips iff their meanings are equal ("A and B" is
        symmetric)."""
        return (self.kind, tuple(sorted(self.objects, key=lambda o: (o.colour, o.shape, o.direction))))

    def frequent(self) -> bool:
        """`frequent(self)`."""
        return frequent(self)

    def category(self) -> str:
        """`category(self)`."""
        return category(self)


# ---------------------------------------------------------------- parsing
def _ungrammatical(text: str) -> FindError:
    forms = "; ".join(f"'{t}'" for t in TEMPLATES)
    return FindError(
        f"cannot parse {text!r} with the built-in video grammar; use one of the templates {forms} "
        f"(colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; directions {', '.join(DIRECTIONS)}, "
        f"also 'to the left', 'to the right', 'upwards', 'downwards')"
    )


def vocabulary() -> list[str]:
    """Every word the video grammar knows, in a stable order."""
    words = ["a", "and", "moving", *COLOURS, *SHAPES]
    for phrase in DIRECTION_WORDS:
        words.extend(phrase.split())
    return list(dict.fromkeys(words))


def _parse_mover(tokens: list[str], text: str) -> Mover:
    if len(tokens) < 5 or tokens[0] != "a" or tokens[1] not in COLOURS or tokens[2] not in SHAPES:
        raise _ungrammatical(text)
    if tokens[3] != "moving":
        raise _ungrammatical(text)
    direction = DIRECTION_WORDS.get(" ".join(tokens[4:]))
    if direction is None:
        raise _ungrammatical(text)
    return Mover(tokens[1], tokens[2], direction)


def parse_video_prompt(text: str) -> VideoSpec:
    """Parse a prompt of the video grammar (module docstring); FindError (one line, the templates) if
    it is outside it."""
    if not isinstance(text, str):
        raise FindError(f"a video prompt is text, got {type(text).__name__}")
    norm = " ".join(text.lower().split()).rstrip(".").strip()
    tokens = norm.split()
    known = set(vocabulary())
    for tok in tokens:
        if tok not in known:
            raise FindError(
                f"unknown word '{tok}' for the built-in video world; known words: {', '.join(vocabulary())}; "
                f"templates: {'; '.join(repr(t) for t in TEMPLATES)}"
            )
    parts: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "and":
            parts.append([])
        else:
            parts[-1].append(tok)
    if len(parts) == 1:
        return VideoSpec("single_motion", (_parse_mover(parts[0], text),))
    if len(parts) == 2:
        return VideoSpec("two_motion", (_parse_mover(parts[0], text), _parse_mover(parts[1], text)))
    raise _ungrammatical(text)


def load_video_suite(path) -> list[tuple[str, str]]:
    """Read a video prompt suite: `category<TAB>prompt` per line (a bare prompt gets `category(spec)`);
    blank lines and `#` comments are skipped; every prompt must parse. Returns [(category, prompt)].
    The public suite is benchmarks/prompts/video_suite.txt (beside the image world's suites)."""
    return world.read_suite_file(path, parse_video_prompt, category, "video prompt suite")


# ---------------------------------------------------------------- biases and categories
def direction_probs(colour: str) -> dict[str, float]:
    """P(direction | colour) in the biased training distribution."""
    fav = BIAS_FAVOURITE_DIRECTION.get(colour)
    if fav is None:
        return {d: 1.0 / len(DIRECTIONS) for d in DIRECTIONS}
    perp = (1.0 - BIAS_FAVOURITE_P - BIAS_OPPOSITE_P) / 2
    return {d: BIAS_FAVOURITE_P if d == fav else BIAS_OPPOSITE_P if d == OPPOSITE[fav] else perp for d in DIRECTIONS}


def colour_probs(shape: str, avoid: str | None = None) -> dict[str, float]:
    """P(colour | shape) in the biased distribution (the image world's), with `avoid` removed and the
    rest renormalised (the second object of a two-object clip never repeats the first's colour)."""
    w = {c: float(p) for c, p in zip(COLOURS, world._colour_given_shape_probs(shape).tolist())}
    if avoid is not None:
        w[avoid] = 0.0
    total = sum(w.values())
    return {c: p / total for c, p in w.items()}


def caption_probability(spec: VideoSpec) -> float:
    """Probability that one biased training caption has exactly this spec (objects in this order)."""
    p = BIAS_TEMPLATE[spec.kind]
    avoid = None
    for o in spec.objects:
        if o.colour == avoid:
            return 0.0
        p *= (1.0 / len(SHAPES)) * colour_probs(o.shape, avoid)[o.colour] * direction_probs(o.colour)[o.direction]
        avoid = o.colour
    return p


def motion_class(mover: Mover) -> str:
    """"frequent": the shape's frequent colour (world.BIAS_FREQUENT_COLOUR) moving that colour's
    favourite direction; "anti": moving opposite its colour's favourite direction; else "neutral"."""
    fav = BIAS_FAVOURITE_DIRECTION.get(mover.colour)
    if fav is not None and mover.direction == OPPOSITE[fav]:
        return "anti"
    if fav is not None and mover.direction == fav and world.BIAS_FREQUENT_COLOUR[mover.shape] == mover.colour:
        return "frequent"
    return "neutral"


def frequent(spec: VideoSpec) -> bool:
    """True when every object of the spec is the most frequent training combination (motion_class
    "frequent"), e.g. "a red sphere moving right", "a blue cube moving left"."""
    return all(motion_class(o) == "frequent" for o in spec.objects)


def anti_correlated(spec: VideoSpec) -> bool:
    """True when some object moves opposite its colour's favourite direction, e.g. "a red sphere
    moving left"."""
    return any(motion_class(o) == "anti" for o in spec.objects)


def category(spec: VideoSpec) -> str:
    """Suite category: "frequent" | "anti" | "neutral" for one object, "two_frequent" | "two_anti" |
    "two_neutral" for two (anti if any object is anti, frequent if all are frequent)."""
    base = "frequent" if frequent(spec) else "anti" if anti_correlated(spec) else "neutral"
    return base if spec.kind == "single_motion" else f"two_{base}"


# ---------------------------------------------------------------- samplers
_pick = world.pick_index  # one categorical draw from a pre-drawn uniform, as the image world's sampler


def sample_training_specs(n: int, generator: torch.Generator, biased: bool = True) -> list[VideoSpec]:
    """Draw n video specs.

    biased=True: the training caption distribution of BIASES.md (template, then per object a uniform
    shape, P(colour | shape) of the image world, P(direction | colour) of BIAS_*).
    biased=False: uniform template, shape, colour and direction (the second object's colour uniform
    over the five colours the first does not use).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise FindError(f"the number of video specs must be a whole number >= 0, got {n!r}")
    if n == 0:
        return []
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    rows = torch.rand(n, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    uniform = {len(x): [1.0 / len(x)] * len(x) for x in (COLOURS, SHAPES, DIRECTIONS, KINDS)}
    specs: list[VideoSpec] = []
    for row in rows:
        weights = [BIAS_TEMPLATE[k] for k in KINDS] if biased else uniform[len(KINDS)]
        kind = KINDS[_pick(weights, row[0])]
        movers: list[Mover] = []
        avoid = None
        for j in range(N_OBJECTS[kind]):
            r_shape, r_colour, r_dir = row[1 + 3 * j : 4 + 3 * j]
            shape = SHAPES[_pick(uniform[len(SHAPES)], r_shape)]
            if biased:
                cw = colour_probs(shape, avoid)
            else:
                cw = {c: (0.0 if c == avoid else 1.0) for c in COLOURS}
                total = sum(cw.values())
                cw = {c: p / total for c, p in cw.items()}
            colour = COLOURS[_pick([cw[c] for c in COLOURS], r_colour)]
            dw = direction_probs(colour) if biased else {d: 0.25 for d in DIRECTIONS}
            direction = DIRECTIONS[_pick([dw[d] for d in DIRECTIONS], r_dir)]
            movers.append(Mover(colour, shape, direction))
            avoid = colour
        specs.append(VideoSpec(kind, tuple(movers)))
    return specs


def hard_negatives(spec: VideoSpec, generator: torch.Generator, k: int) -> list[VideoSpec]:
    """Up to k specs of the same template whose meaning differs from `spec`, drawn without replacement.

    Candidates: one object's direction changed (each of the 3 others), the two objects' directions
    swapped, one object's colour changed (each of the 5 others) or its shape changed (each of the 2
    others). Every candidate's `meaning()` differs from the spec's, and no clip rendered from `spec`
    satisfies it (the object it names does not exist or moves another way)."""
    cands: list[VideoSpec] = []
    objs = spec.objects

    def replaced(i: int, new: Mover) -> VideoSpec:
        return VideoSpec(spec.kind, tuple(new if j == i else o for j, o in enumerate(objs)))

    for i, o in enumerate(objs):
        cands += [replaced(i, Mover(o.colour, o.shape, d)) for d in DIRECTIONS if d != o.direction]
    if len(objs) == 2:
        a, b = objs
        cands.append(VideoSpec(spec.kind, (Mover(a.colour, a.shape, b.direction), Mover(b.colour, b.shape, a.direction))))
    for i, o in enumerate(objs):
        cands += [replaced(i, Mover(c, o.shape, o.direction)) for c in COLOURS if c != o.colour]
        cands += [replaced(i, Mover(o.colour, s, o.direction)) for s in SHAPES if s != o.shape]
    seen = {spec.meaning()}
    unique: list[VideoSpec] = []
    for c in cands:
        if c.meaning() not in seen:
            seen.add(c.meaning())
            unique.append(c)
    order = torch.randperm(len(unique), generator=generator, device=generator.device)[: max(k, 0)].tolist()
    return [unique[i] for i in order]


# ---------------------------------------------------------------- layout
@dataclass
class VideoLayout:
    """The renderer's ground truth for a batch of clips. Boxes are (x0, y0, w, h) in canvas units
    (pixels of a 64x64 frame), per frame; slot j holds the spec's j-th object."""

    boxes: torch.Tensor  # (N, F, MAX_OBJECTS, 4) float, per-frame box of each slot
    shape_ids: torch.Tensor  # (N, MAX_OBJECTS) long, indices into world.SHAPES
    colour_ids: torch.Tensor  # (N, MAX_OBJECTS) long, indices into world.COLOURS
    direction_ids: torch.Tensor  # (N, MAX_OBJECTS) long, indices into DIRECTIONS
    travel: torch.Tensor  # (N, MAX_OBJECTS) float, total displacement first -> last frame, canvas px
    used: torch.Tensor  # (N, MAX_OBJECTS) bool, which slots hold an object


_VEC = torch.tensor([DIRECTION_VECTORS[d] for d in DIRECTIONS])  # (4, 2)


def _layout_group(kind: str, sid: torch.Tensor, did: torch.Tensor, frames: int, g: torch.Generator, m: int):
    """m candidate trajectories for each of G clips of one kind. sid, did: (G, k) shape/direction ids.
    Returns boxes (G, m, F, k, 4), travel (G, m, k) and valid (G, m)."""
    G, k = sid.shape
    dev = g.device
    lo, hi = SIZE_RANGE[kind]
    w, h = world._box_hw(sid[:, None, :].expand(G, m, k), world._uniform(g, (G, m, k), lo, hi))
    travel = world._uniform(g, (G, m, k), *TRAVEL_RANGE)
    vec = _VEC.to(dev)[did][:, None].expand(G, m, k, 2)
    dx, dy = vec[..., 0] * travel, vec[..., 1] * travel  # total displacement per axis
    # start so that the box stays inside [margin, canvas - margin] at both ends of the path
    x_lo, x_hi = _MARGIN - dx.clamp(max=0), CANVAS - _MARGIN - w - dx.clamp(min=0)
    y_lo, y_hi = _MARGIN - dy.clamp(max=0), CANVAS - _MARGIN - h - dy.clamp(min=0)
    x0 = x_lo + world._uniform(g, (G, m, k), 0.0, 1.0) * (x_hi - x_lo)
    y0 = y_lo + world._uniform(g, (G, m, k), 0.0, 1.0) * (y_hi - y_lo)
    t = torch.arange(frames, device=dev, dtype=torch.float32) / (frames - 1)  # (F,) 0 .. 1
    xs = x0[:, :, None] + dx[:, :, None] * t[None, None, :, None]  # (G, m, F, k)
    ys = y0[:, :, None] + dy[:, :, None] * t[None, None, :, None]
    boxes = torch.stack([xs, ys, w[:, :, None].expand_as(xs), h[:, :, None].expand_as(xs)], dim=-1)
    valid = torch.ones(G, m, dtype=torch.bool, device=dev)
    for i in range(k):
        for j in range(i + 1, k):
            valid &= world._separated(boxes[..., i, :], boxes[..., j, :], _SEPARATION).all(dim=2)
    return boxes, travel, valid


def _layout(specs: list[VideoSpec], frames: int, g: torch.Generator) -> VideoLayout:
    n, dev = len(specs), g.device
    K = MAX_OBJECTS
    out = VideoLayout(
        boxes=torch.zeros(n, frames, K, 4, device=dev),
        shape_ids=torch.zeros(n, K, dtype=torch.long, device=dev),
        colour_ids=torch.zeros(n, K, dtype=torch.long, device=dev),
        direction_ids=torch.zeros(n, K, dtype=torch.long, device=dev),
        travel=torch.zeros(n, K, device=dev),
        used=torch.zeros(n, K, dtype=torch.bool, device=dev),
    )
    for kind in KINDS:
        idx = [i for i, s in enumerate(specs) if s.kind == kind]
        if not idx:
            continue
        k = N_OBJECTS[kind]
        sid = torch.tensor([[SHAPES.index(o.shape) for o in specs[i].objects] for i in idx], device=dev)
        cid = torch.tensor([[COLOURS.index(o.colour) for o in specs[i].objects] for i in idx], device=dev)
        did = torch.tensor([[DIRECTIONS.index(o.direction) for o in specs[i].objects] for i in idx], device=dev)
        pending = torch.arange(len(idx), device=dev)
        boxes = torch.zeros(len(idx), frames, k, 4, device=dev)
        travel = torch.zeros(len(idx), k, device=dev)
        for _ in range(50):  # rejection sampling: 32 candidates per clip per round
            cand, cand_travel, valid = _layout_group(kind, sid[pending], did[pending], frames, g, 32)
            ok = valid.any(dim=1)
            first = valid.to(torch.int8).argmax(dim=1)
            rows = torch.arange(len(pending), device=dev)
            boxes[pending[ok]] = cand[rows, first][ok]
            travel[pending[ok]] = cand_travel[rows, first][ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
        else:
            raise RuntimeError(f"could not lay out {len(pending)} {kind} clips")
        ii = torch.tensor(idx, device=dev)
        out.boxes[ii, :, :k] = boxes
        out.shape_ids[ii, :k] = sid
        out.colour_ids[ii, :k] = cid
        out.direction_ids[ii, :k] = did
        out.travel[ii, :k] = travel
        out.used[ii, :k] = True
    return out


# ---------------------------------------------------------------- rendering
def _composite(boxes, shape_ids, colour_ids, used, bright, jitter, size: int) -> torch.Tensor:
    """Frames from explicit object boxes: (M, K, 4) boxes, (M, K) shape/colour ids, used, brightness,
    (M, K, 3) jitter, all on one device -> (M, 3, size, size) in [0, 1].

    Each object is rasterised by the image world's `world._DRAW[shape]` in a small window around its
    box at 2x supersampling (later slots over earlier ones), then frames are average-pooled."""
    m_all, K = shape_ids.shape
    dev = boxes.device
    palette = torch.tensor([PALETTE[c] for c in COLOURS], device=dev)
    ss = world._SUPERSAMPLE
    hs = size * ss
    scale = hs / CANVAS
    win = min(hs, int(math.ceil(float(boxes[..., 2:].max()) * scale)) + 2) if m_all else 1
    ar = torch.arange(win, device=dev)
    img = torch.tensor(BACKGROUND, device=dev)[None, :, None].expand(m_all, 3, hs * hs).clone()
    flat_img = img.view(-1)
    chan = torch.arange(3, device=dev)
    for k in range(K):
        for shape_i, shape in enumerate(SHAPES):
            sel = (used[:, k] & (shape_ids[:, k] == shape_i)).nonzero().squeeze(1)
            m = len(sel)
            if m == 0:
                continue
            box = boxes[sel, k]
            ox = (box[:, 0] * scale).floor().long().clamp(0, hs - win)
            oy = (box[:, 1] * scale).floor().long().clamp(0, hs - win)
            px = (ox[:, None, None] + ar[None, None, :] + 0.5) / scale  # (m, 1, win) canvas units
            py = (oy[:, None, None] + ar[None, :, None] + 0.5) / scale  # (m, win, 1)
            x0, y0, w, h = (box[:, i, None, None] for i in range(4))
            mask, shade = world._DRAW[shape](px - x0, py - y0, w, h)  # (m, win, win)
            base = (palette[colour_ids[sel, k]] + jitter[sel, k]) * bright[sel, k, None]  # (m, 3)
            col = (base[:, :, None, None] * shade[:, None]).clamp(0, 1)  # (m, 3, win, win)
            pix = (oy[:, None, None] + ar[None, :, None]) * hs + ox[:, None, None] + ar[None, None, :]
            idx = (sel[:, None, None, None] * 3 + chan[None, :, None, None]) * (hs * hs) + pix[:, None]
            hit = mask[:, None].expand(m, 3, win, win)
            flat_img[idx[hit]] = col[hit]
    frames = torch.nn.functional.avg_pool2d(img.view(m_all, 3, hs, hs), ss)
    return frames.clamp(0, 1).float()


def _check_render_args(specs, frames, size) -> None:
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 2:
        raise FindError(f"a clip needs a whole number of frames >= 2, got {frames!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 16:
        raise FindError(f"the video frame size must be a whole number of pixels >= 16, got {size!r}")
    for s in specs:
        if not isinstance(s, VideoSpec):
            raise FindError(f"render_video takes VideoSpec objects (parse_video_prompt), got {type(s).__name__}")


def render_video(specs: list[VideoSpec], generator: torch.Generator, frames: int = FRAMES, size: int = SIZE,
                 device="cpu") -> torch.Tensor:
    """Render one random clip per spec: (N, F, 3, size, size) float32 in [0, 1]. Trajectories, sizes,
    per-object brightness and colour jitter are drawn from `generator` (on its device); pixels are
    computed on `device`. Same draws and pixels as `render_video_with_layout(...)[0]`."""
    return render_video_with_layout(specs, generator, frames, size, device)[0]


def render_video_with_layout(specs: list[VideoSpec], generator: torch.Generator, frames: int = FRAMES,
                             size: int = SIZE, device="cpu") -> tuple[torch.Tensor, VideoLayout]:
    """`render_video`, also returning the clips' ground-truth `VideoLayout` (on `device`)."""
    specs = list(specs)
    _check_render_args(specs, frames, size)
    device = torch.device(device)
    n, K = len(specs), MAX_OBJECTS
    g = generator
    lay = _layout(specs, frames, g)
    bright = world._uniform(g, (n, K), 0.9, 1.05)
    jitter = world._uniform(g, (n, K, 3), -0.03, 0.03)
    lay = VideoLayout(**{f.name: getattr(lay, f.name).to(device) for f in fields(VideoLayout)})
    bright, jitter = bright.to(device), jitter.to(device)
    if n == 0:
        return torch.zeros(0, frames, 3, size, size, device=device), lay
    # one row per (clip, frame); per-object attributes repeat over the frames
    boxes = lay.boxes.reshape(n * frames, K, 4)

    def per_frame(t):
        return t.repeat_interleave(frames, dim=0)

    out = torch.empty(n * frames, 3, size, size, device=device)
    for s in range(0, n * frames, _CHUNK):
        e = min(s + _CHUNK, n * frames)
        cs, ce = s // frames, (e - 1) // frames + 1  # clips touched by this chunk
        rows = slice(s - cs * frames, e - cs * frames)
        out[s:e] = _composite(
            boxes[s:e],
            per_frame(lay.shape_ids[cs:ce])[rows],
            per_frame(lay.colour_ids[cs:ce])[rows],
            per_frame(lay.used[cs:ce])[rows],
            per_frame(bright[cs:ce])[rows],
            per_frame(jitter[cs:ce])[rows],
            size,
        )
    return out.view(n, frames, 3, size, size), lay
