"""The built-in "shapes world": vocabulary, prompt grammar, scene distributions and renderer.

A scene is 1-4 pseudo-3D objects (cube, sphere, pyramid) in six palette colours on a plain dark
background. Four prompt templates cover the GenEval categories:

    "a {colour} {shape}"                                   kind "single"
    "a {colour} {shape} {relation} a {colour} {shape}"     kind "relation"  (subject first)
    "a {colour} {shape} and a {colour} {shape}"            kind "and"
    "{count} {colour} {shape}s"                            kind "count"

Everything random is drawn from a caller-supplied `torch.Generator`, so specs, layouts and images are
deterministic from a seed. `render` is vectorised over scenes (a Python loop runs only over the <=4
object slots), so the same code renders training batches on a GPU and test batches on the CPU.

Geometry is defined on a 64x64 canvas ("canvas units"); other image sizes scale it. Each object has an
axis-aligned bounding box (x0, y0, w, h), y growing downwards:
  cube    front square of side s plus an oblique top face and right side face of depth d = 0.45 s,
          so w = h = 1.45 s; the silhouette fills its box but for the top-left and bottom-right
          corner triangles (legs d = 0.31 w), which the judge uses to tell a cube from a sphere
  sphere  disk of diameter w = h, shaded from a top-left highlight; fills pi/4 = 79% of its box
  pyramid isosceles triangle, apex up, h = 0.92 w, lit left face and shaded right face
Sizes (box width) are drawn from 13-24 px depending on the template (`_SIZE_RANGE`).
Relations, as rendered (the judge in `judge.py` checks the same definitions with margins):
  "on"              subject rests on top of the object (sunk 1 px into its box, so touching),
                    horizontally centred on it within +-12% of its width
  "under"           the object rests on the subject (the subject is directly beneath, touching)
  "above"/"below"   vertically separated by a 7-16 px gap, horizontally overlapping
  "to the left of"/"to the right of"  horizontally separated by an 8-20 px gap, bottoms level within 4 px
  "next to"         side by side on either side, 2-4 px apart, bottoms level within 1.5 px
Count scenes hold exactly `count` copies of one object; "and" scenes two objects anywhere; all
non-touching objects are at least 4 px apart so that same-coloured objects never merge.

The biased distribution (`sample_specs(..., biased=True)`) is the generator's training caption
distribution; its deliberate correlations are tabled in BIASES.md and in the BIAS_* constants below.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass

import torch

from findcli.errors import FindError

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
SHAPES: tuple[str, ...] = ("cube", "sphere", "pyramid")
RELATIONS: tuple[str, ...] = (
    "on",
    "under",
    "to the left of",
    "to the right of",
    "above",
    "below",
    "next to",
)
COUNTS: dict[str, int] = {"two": 2, "three": 3, "four": 4}
KINDS: tuple[str, ...] = ("single", "relation", "and", "count")
# Converse relations: "A under B" means "B on A", and so on; the judge, the detector and Spec.meaning
# define only the left-hand relations and read these from the right-hand ones with the roles swapped.
CONVERSE: dict[str, str] = {"under": "on", "below": "above", "to the right of": "to the left of"}


def with_converses(tests: dict) -> dict:
    """{relation: test(a, b)} for the left-hand relations of CONVERSE (and "next to") -> the same plus
    every converse relation, as the base test with subject and object swapped."""
    def swapped(test):
        return lambda a, b: test(b, a)
    return {**tests, **{rel: swapped(tests[base]) for rel, base in CONVERSE.items()}}

# Palette: well separated in hue (>= ~29 degrees between any two colour rays through the origin) and
# far from the background, so a blurred pixel's nearest colour ray is unambiguous.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.20, 0.75, 0.25),
    "blue": (0.10, 0.40, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.65, 0.15, 0.80),
    "white": (0.95, 0.95, 0.95),
}
BACKGROUND: tuple[float, float, float] = (0.20, 0.20, 0.22)

TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}",
    "a {colour} {shape} {relation} a {colour} {shape}",
    "a {colour} {shape} and a {colour} {shape}",
    "{count} {colour} {shape}s",
)

CANVAS = 64.0  # geometry is specified in pixels of a 64x64 image and scaled for other sizes

# ---- biased training-caption distribution (tabled in BIASES.md; tests check both agree) ----
# P(template)
BIAS_TEMPLATE: dict[str, float] = {"single": 0.35, "relation": 0.30, "and": 0.20, "count": 0.15}
# P(colour | shape): each shape has one frequent colour; the other five colours share the rest.
BIAS_FREQUENT_COLOUR: dict[str, str] = {"sphere": "red", "cube": "blue", "pyramid": "green"}
BIAS_FREQUENT_COLOUR_P: float = 0.60  # so each of the other five colours has (1 - 0.60) / 5 = 0.08
# P(shape pair | relation) for "on"/"under": mostly a sphere resting on a cube.
BIAS_STACK_PAIR: dict[str, tuple[str, str]] = {"on": ("sphere", "cube"), "under": ("cube", "sphere")}
BIAS_STACK_PAIR_P: float = 0.60  # the other eight (subject, object) pairs get (1 - 0.60) / 8 = 0.05 each
# P(count | count template): mostly two.
BIAS_COUNT: dict[int, float] = {2: 0.70, 3: 0.20, 4: 0.10}


@dataclass(frozen=True)
class Obj:
    """One object description: a palette colour and a shape."""

    colour: str
    shape: str

    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Spec:
    """A parsed prompt: which template ("kind") and its slots."""

    kind: str  # "single" | "relation" | "and" | "count"
    objects: tuple[Obj, ...]  # single: 1; relation/and: 2 (subject first); count: 1 (the counted object)
    relation: str | None = None  # one of RELATIONS, for kind "relation"
    count: int | None = None  # 2..4, for kind "count"

    def caption(self) -> str:
        """Canonical prompt text, e.g. "a red cube on a blue sphere", "three green pyramids"."""
        if self.kind == "single":
            return f"a {self.objects[0].phrase()}"
        if self.kind == "relation":
            a, b = self.objects
            return f"a {a.phrase()} {self.relation} a {b.phrase()}"
        if self.kind == "and":
            a, b = self.objects
            return f"a {a.phrase()} and a {b.phrase()}"
        if self.kind == "count":
            word = {v: k for k, v in COUNTS.items()}[self.count]
            return f"{word} {self.objects[0].phrase()}s"
        raise ValueError(f"unknown spec kind {self.kind!r}")

    def category(self) -> str:
        """GenEval-style category.

        single -> "single"; count -> "counting"; relation -> "position";
        and -> "attribute_binding" when the two objects differ in both colour and shape (so swapping
        the colours describes a different scene), otherwise "two_objects".
        """
        if self.kind == "single":
            return "single"
        if self.kind == "count":
            return "counting"
        if self.kind == "relation":
            return "position"
        a, b = self.objects
        return "attribute_binding" if (a.colour != b.colour and a.shape != b.shape) else "two_objects"

    def meaning(self) -> tuple:
        """A canonical key: two specs describe the same scenes iff their meanings are equal.

        "A under B" == "B on A", "A below B" == "B above A", "A right of B" == "B left of A",
        "next to" and "and" are symmetric.
        """
        if self.kind in ("single", "count"):
            return (self.kind, self.objects[0], self.count)
        a, b = self.objects
        if self.kind == "and":
            return ("and", tuple(sorted([a, b], key=lambda o: (o.colour, o.shape))))
        rel = self.relation
        if rel in CONVERSE:
            return ("relation", CONVERSE[rel], b, a)
        if rel == "next to":
            return ("relation", rel, tuple(sorted([a, b], key=lambda o: (o.colour, o.shape))))
        return ("relation", rel, a, b)


# ---------------------------------------------------------------- vocabulary and parsing
_PLURALS = {s + "s": s for s in SHAPES}


def vocabulary() -> list[str]:
    """Every word the grammar knows, in a stable order."""
    words = ["a", "and", *COLOURS, *SHAPES, *_PLURALS, *COUNTS]
    for rel in RELATIONS:
        words.extend(rel.split())
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    return seen


def _ungrammatical(text: str) -> FindError:
    forms = "; ".join(f"'{t}'" for t in TEMPLATES)
    return FindError(
        f"cannot parse {text!r} with the built-in shapes grammar; use one of the templates {forms} "
        f"(colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; relations {', '.join(RELATIONS)}; "
        f"counts {', '.join(COUNTS)})"
    )


def _parse_obj(tokens: list[str], text: str) -> Obj:
    if len(tokens) != 3 or tokens[0] != "a" or tokens[1] not in COLOURS or tokens[2] not in SHAPES:
        raise _ungrammatical(text)
    return Obj(tokens[1], tokens[2])


def pick_index(weights: list[float], r: float) -> int:
    """The index i whose cumulative weight first exceeds r in [0, 1) (the last index if rounding
    leaves r above the total): one categorical draw from a pre-drawn uniform."""
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if r < acc:
            return i
    return len(weights) - 1


def read_suite_file(path, parse, category_of, what: str = "prompt suite") -> list[tuple[str, str]]:
    """A suite file of a grammar: `category<TAB>prompt` per line (a bare prompt gets
    `category_of(parse(prompt))`); blank lines and `#` comments skipped; every prompt must `parse`, an
    error naming its file and line. Returns [(category, prompt), ...] in file order. (The image suites'
    `judge.load_suite` and the video suites' `video.world.load_video_suite`.)"""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise FindError(f"cannot read {what} {str(p)!r} ({e.strerror or e}); pass an existing file") from None
    out: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        category, prompt = (part.strip() for part in line.split("\t", 1)) if "\t" in line else ("", line)
        try:
            spec = parse(prompt)
        except FindError as e:
            raise FindError(f"{p}:{lineno}: {e}") from None
        out.append((category or category_of(spec), prompt))
    return out


def parse_prompt(text: str) -> Spec:
    """Parse a prompt of the shapes grammar (case, whitespace and a trailing period are ignored)."""
    norm = " ".join(str(text).lower().split()).rstrip(".").strip()
    tokens = norm.split()
    known = set(vocabulary())
    for tok in tokens:
        if tok not in known:
            raise FindError(
                f"unknown word '{tok}' for the built-in shapes model; known words: {', '.join(vocabulary())}"
            )
    if not tokens:
        raise _ungrammatical(text)
    if tokens[0] in COUNTS:
        if len(tokens) != 3 or tokens[1] not in COLOURS or tokens[2] not in _PLURALS:
            raise _ungrammatical(text)
        return Spec("count", (Obj(tokens[1], _PLURALS[tokens[2]]),), count=COUNTS[tokens[0]])
    if len(tokens) == 3:
        return Spec("single", (_parse_obj(tokens, text),))
    if len(tokens) < 7:
        raise _ungrammatical(text)
    first, middle, second = tokens[:3], tokens[3:-3], tokens[-3:]
    a, b = _parse_obj(first, text), _parse_obj(second, text)
    phrase = " ".join(middle)
    if phrase == "and":
        return Spec("and", (a, b))
    if phrase in RELATIONS:
        return Spec("relation", (a, b), relation=phrase)
    raise _ungrammatical(text)


# ---------------------------------------------------------------- caption distributions
def _colour_given_shape_probs(shape: str) -> torch.Tensor:
    frequent = BIAS_FREQUENT_COLOUR[shape]
    other = (1.0 - BIAS_FREQUENT_COLOUR_P) / (len(COLOURS) - 1)
    return torch.tensor([BIAS_FREQUENT_COLOUR_P if c == frequent else other for c in COLOURS], dtype=torch.float64)


def stack_pair_probs(relation: str) -> dict[tuple[str, str], float]:
    """P((subject shape, object shape) | relation) in the biased distribution."""
    pairs = [(s, o) for s in SHAPES for o in SHAPES]
    if relation in BIAS_STACK_PAIR:
        frequent = BIAS_STACK_PAIR[relation]
        other = (1.0 - BIAS_STACK_PAIR_P) / (len(pairs) - 1)
        return {p: (BIAS_STACK_PAIR_P if p == frequent else other) for p in pairs}
    return {p: 1.0 / len(pairs) for p in pairs}


def sample_specs(n: int, generator: torch.Generator, biased: bool) -> list[Spec]:
    """Draw n specs.

    biased=False: uniform over templates, then uniform over each slot's words (relation/and objects
    get two different colours: the object colour is uniform over the five colours not used by the
    subject, so every slot's marginal stays uniform).
    biased=True: the generator's training caption distribution (BIASES.md).
    The generator should be a CPU generator (draws are tiny; the specs are Python objects).
    """
    if n <= 0:
        return []
    cpu = torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    )
    g = cpu
    # Pre-draw a block of uniforms per spec so the Python loop does no per-draw torch calls.
    u = torch.rand(n, 8, generator=g, dtype=torch.float64).tolist()

    pick = pick_index
    uniform_c = [1.0 / len(COLOURS)] * len(COLOURS)
    uniform_s = [1.0 / len(SHAPES)] * len(SHAPES)
    colour_w = {s: _colour_given_shape_probs(s).tolist() for s in SHAPES}
    pair_w = {r: stack_pair_probs(r) for r in RELATIONS}
    specs: list[Spec] = []
    for row in u:
        if biased:
            kind = KINDS[pick([BIAS_TEMPLATE[k] for k in KINDS], row[0])]
        else:
            kind = KINDS[pick([0.25] * 4, row[0])]

        def obj(r_shape: float, r_colour: float, shape: str | None = None, avoid: str | None = None) -> Obj:
            if shape is None:
                shape = SHAPES[pick(uniform_s, r_shape)]
            w = list(colour_w[shape]) if biased else list(uniform_c)
            if avoid is not None:  # two-object scenes use two different colours (renormalised)
                w[COLOURS.index(avoid)] = 0.0
                total = sum(w)
                w = [x / total for x in w]
            return Obj(COLOURS[pick(w, r_colour)], shape)

        if kind == "single":
            specs.append(Spec("single", (obj(row[1], row[2]),)))
        elif kind == "count":
            counts = sorted(COUNTS.values())
            cw = [BIAS_COUNT[c] for c in counts] if biased else [1.0 / len(counts)] * len(counts)
            specs.append(Spec("count", (obj(row[1], row[2]),), count=counts[pick(cw, row[3])]))
        elif kind == "and":
            a = obj(row[1], row[2])
            b = obj(row[3], row[4], avoid=a.colour)
            specs.append(Spec("and", (a, b)))
        else:
            rel = RELATIONS[pick([1.0 / len(RELATIONS)] * len(RELATIONS), row[1])]
            if biased:
                pairs = list(pair_w[rel].items())
                sa, sb = pairs[pick([p for _, p in pairs], row[2])][0]
            else:
                sa, sb = SHAPES[pick(uniform_s, row[2])], SHAPES[pick(uniform_s, row[3])]
            a = obj(0.0, row[4], shape=sa)
            b = obj(0.0, row[5], shape=sb, avoid=a.colour)
            specs.append(Spec("relation", (a, b), relation=rel))
    return specs


# Relations whose scenes can never satisfy each other (as rendered and as judged). "next to" and
# "left/right of" are compatible (a close left-of scene is also next-to), so they are not negatives
# of each other.
_VERTICAL = ("on", "under", "above", "below")
_HORIZONTAL = ("to the left of", "to the right of", "next to")


def _exclusive_relations(rel: str) -> list[str]:
    if rel in _VERTICAL:
        return [r for r in RELATIONS if r != rel]
    if rel == "next to":
        return list(_VERTICAL)
    other = "to the right of" if rel == "to the left of" else "to the left of"
    return [other, *_VERTICAL]


def hard_negatives(spec: Spec, generator: torch.Generator, k: int) -> list[Spec]:
    """Up to k specs of the same template whose meaning differs from `spec`.

    Candidates change one colour, one shape, the count, or the relation (to one whose scenes are
    exclusive of the original), swap the two objects' colours, or swap subject and object. Every
    candidate's `meaning()` differs from the spec's; k are drawn without replacement (all of them if
    fewer exist).
    """
    cands: list[Spec] = []

    def variants(o: Obj) -> list[Obj]:
        return [Obj(c, o.shape) for c in COLOURS if c != o.colour] + [Obj(o.colour, s) for s in SHAPES if s != o.shape]

    if spec.kind in ("single", "count"):
        for o in variants(spec.objects[0]):
            cands.append(Spec(spec.kind, (o,), count=spec.count))
        if spec.kind == "count":
            cands += [Spec("count", spec.objects, count=c) for c in sorted(COUNTS.values()) if c != spec.count]
    else:
        a, b = spec.objects
        rel = spec.relation
        cands += [Spec(spec.kind, (o, b), relation=rel) for o in variants(a)]
        cands += [Spec(spec.kind, (a, o), relation=rel) for o in variants(b)]
        cands.append(Spec(spec.kind, (Obj(b.colour, a.shape), Obj(a.colour, b.shape)), relation=rel))
        if spec.kind == "relation":
            cands.append(Spec("relation", (b, a), relation=rel))
            cands += [Spec("relation", (a, b), relation=r) for r in _exclusive_relations(rel)]
    key = spec.meaning()
    unique: list[Spec] = []
    seen = {key}
    for c in cands:
        m = c.meaning()
        if m not in seen:
            seen.add(m)
            unique.append(c)
    order = torch.randperm(len(unique), generator=generator, device=generator.device)[: max(k, 0)].tolist()
    return [unique[i] for i in order]


# ---------------------------------------------------------------- layout
# Box tensors hold (x0, y0, w, h) in canvas units, shape (..., 4).
_MARGIN = 2.0  # px kept free at the image border
_SEPARATION = 4.0  # px between non-touching objects, so blurred same-coloured objects never merge
_SIZE_RANGE = {"single": (14.0, 24.0), "relation": (13.0, 21.0), "and": (13.0, 21.0), "count": (13.0, 19.0)}
_PYRAMID_ASPECT = 0.92  # pyramid height / width
_CUBE_DEPTH = 0.45  # oblique depth / front-face side


def _box_hw(shape_ids: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box width and height (canvas px) from a size draw u; shape ids index SHAPES."""
    h = torch.where(shape_ids == SHAPES.index("pyramid"), u * _PYRAMID_ASPECT, u)
    return u, h


def _separated(a: torch.Tensor, b: torch.Tensor, gap: float) -> torch.Tensor:
    """True where boxes a and b (..., 4) are at least `gap` px apart along x or y."""
    dx = torch.maximum(b[..., 0] - (a[..., 0] + a[..., 2]), a[..., 0] - (b[..., 0] + b[..., 2]))
    dy = torch.maximum(b[..., 1] - (a[..., 1] + a[..., 3]), a[..., 1] - (b[..., 1] + b[..., 3]))
    return torch.maximum(dx, dy) >= gap


def _inside(box: torch.Tensor) -> torch.Tensor:
    return (
        (box[..., 0] >= _MARGIN)
        & (box[..., 1] >= _MARGIN)
        & (box[..., 0] + box[..., 2] <= CANVAS - _MARGIN)
        & (box[..., 1] + box[..., 3] <= CANVAS - _MARGIN)
    )


def _uniform(g: torch.Generator, shape: tuple[int, ...], lo, hi) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=g.device)


def _layout_group(kind: str, rel: str | None, k: int, shape_ids: torch.Tensor, g: torch.Generator, m: int):
    """Candidate layouts for one group of scenes of the same kind/relation/object count.

    shape_ids (G, k). Returns boxes (G, m, k, 4) in drawing order == slot order and valid (G, m).
    For relations slot 0 is the subject and slot 1 the object; `order` says which slot is drawn last.
    """
    G = shape_ids.shape[0]
    lo, hi = _SIZE_RANGE[kind]
    sid = shape_ids[:, None, :].expand(G, m, k)
    u = _uniform(g, (G, m, k), lo, hi)
    w, h = _box_hw(sid, u)
    if kind != "relation":
        x0 = _uniform(g, (G, m, k), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - w) + _MARGIN
        y0 = _uniform(g, (G, m, k), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - h) + _MARGIN
        boxes = torch.stack([x0, y0, w, h], dim=-1)
        valid = torch.ones(G, m, dtype=torch.bool, device=g.device)
        for i in range(k):
            for j in range(i + 1, k):
                valid &= _separated(boxes[:, :, i], boxes[:, :, j], _SEPARATION)
        return boxes, valid
    # relation: place the object B uniformly, then the subject A relative to it.
    wa, ha, wb, hb = w[..., 0], h[..., 0], w[..., 1], h[..., 1]
    bx = _uniform(g, (G, m), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - wb) + _MARGIN
    by = _uniform(g, (G, m), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - hb) + _MARGIN
    r1 = _uniform(g, (G, m), 0.0, 1.0)
    r2 = _uniform(g, (G, m), 0.0, 1.0)
    r3 = _uniform(g, (G, m), 0.0, 1.0)
    pyramid = SHAPES.index("pyramid")

    def rest_on(top_w, top_h, base_x, base_y, base_w, base_shape):
        """Box of an object resting on a base: centred (+-12% of base width), its bottom sunk 1 px into
        the base's box (1.5 px into a pyramid's narrow apex) so the two touch without hiding the base."""
        cx = base_x + base_w / 2 + (r1 * 2 - 1) * 0.12 * base_w
        sink = torch.where(base_shape == pyramid, 1.5, 1.0)
        return cx - top_w / 2, base_y + sink - top_h

    if rel in ("on", "under"):
        if rel == "on":  # A on B
            ax, ay = rest_on(wa, ha, bx, by, wb, sid[..., 1])
        else:  # B on A: place A uniformly instead, then B on it
            ax = _uniform(g, (G, m), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - wa) + _MARGIN
            ay = _uniform(g, (G, m), 0.0, 1.0) * (CANVAS - 2 * _MARGIN - ha) + _MARGIN
            bx, by = rest_on(wb, hb, ax, ay, wa, sid[..., 0])
    elif rel in ("above", "below"):
        gap = 7.0 + 9.0 * r2
        ax = bx + wb / 2 + (r1 * 2 - 1) * 0.2 * torch.minimum(wa, wb) - wa / 2
        ay = by - gap - ha if rel == "above" else by + hb + gap
    else:
        if rel == "next to":
            gap = 2.0 + 2.0 * r2
            dy = (r3 * 2 - 1) * 1.5
            left = r1 < 0.5
        else:
            gap = 8.0 + 12.0 * r2
            dy = (r3 * 2 - 1) * 4.0
            left = torch.full_like(r1, rel == "to the left of", dtype=torch.bool)
        ax = torch.where(left, bx - gap - wa, bx + wb + gap)
        ay = by + hb + dy - ha
    a = torch.stack([ax, ay, wa, ha], dim=-1)
    b = torch.stack([bx, by, wb, hb], dim=-1)
    valid = _inside(a) & _inside(b)
    if rel == "under":  # draw the resting object (B) last
        boxes = torch.stack([a, b], dim=2)
    else:  # "on": draw A last; others do not overlap
        boxes = torch.stack([b, a], dim=2)
    return boxes, valid


def _layout(specs: list[Spec], g: torch.Generator):
    """Per-scene slots in drawing order: boxes (N, 4, 4), shape ids (N, 4), colour ids (N, 4), valid (N, 4)."""
    n = len(specs)
    dev = g.device
    boxes = torch.zeros(n, 4, 4, device=dev)
    shape_ids = torch.zeros(n, 4, dtype=torch.long, device=dev)
    colour_ids = torch.zeros(n, 4, dtype=torch.long, device=dev)
    used = torch.zeros(n, 4, dtype=torch.bool, device=dev)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):
        if s.kind not in KINDS:
            raise ValueError(f"unknown spec kind {s.kind!r}")
        k = {"single": 1, "relation": 2, "and": 2, "count": s.count}[s.kind]
        groups.setdefault((s.kind, s.relation, k), []).append(i)
    for (kind, rel, k), idx in groups.items():
        objs = []
        for i in idx:
            o = specs[i].objects
            if kind == "count":
                o = o * k
            if kind == "relation" and rel != "under":
                o = (o[1], o[0])  # drawing order: object B first, subject A last
            objs.append(o)
        sid = torch.tensor([[SHAPES.index(o.shape) for o in row] for row in objs], device=dev)
        cid = torch.tensor([[COLOURS.index(o.colour) for o in row] for row in objs], device=dev)
        if kind == "relation" and rel != "under":
            sid_subject_first = sid.flip(1)
        else:
            sid_subject_first = sid
        pending = torch.arange(len(idx), device=dev)
        out = torch.zeros(len(idx), k, 4, device=dev)
        m = 128 if kind == "count" else 32
        for _ in range(50):
            cand, valid = _layout_group(kind, rel, k, sid_subject_first[pending], g, m)
            ok = valid.any(dim=1)
            first = valid.to(torch.int8).argmax(dim=1)
            chosen = cand[torch.arange(len(pending), device=dev), first]
            out[pending[ok]] = chosen[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
        else:
            raise RuntimeError(f"could not lay out {len(pending)} {kind} scenes")
        ii = torch.tensor(idx, device=dev)
        boxes[ii, :k] = out
        shape_ids[ii, :k] = sid
        colour_ids[ii, :k] = cid
        used[ii, :k] = True
    return boxes, shape_ids, colour_ids, used


# ---------------------------------------------------------------- rendering
_SHADE_TOP, _SHADE_FRONT, _SHADE_SIDE = 1.12, 0.92, 0.74  # cube faces
_SHADE_LIT, _SHADE_DARK = 1.0, 0.74  # pyramid faces
_SUPERSAMPLE = 2  # render at 2x and average-pool: anti-aliased edges


def _draw_sphere(xr, yr, w, h):  # noqa: ARG001 - every _draw_* takes (xr, yr, w, h)
    """Disk filling the box, brightest at a top-left highlight. xr, yr: pixel centres relative to the
    box corner (canvas units, broadcasting to (M, H, W)); w, h: (M, 1, 1). Returns mask, shade."""
    r = w / 2
    dx, dy = xr - r, yr - r
    mask = dx * dx + dy * dy <= r * r
    hl = torch.sqrt((dx + 0.35 * r) ** 2 + (dy + 0.35 * r) ** 2) / (1.35 * r)
    return mask, 1.12 - 0.5 * hl.clamp(0, 1)


def _draw_cube(xr, yr, w, h):  # noqa: ARG001 - every _draw_* takes (xr, yr, w, h)
    """Front square of side s plus oblique top and right faces of depth d to the upper right."""
    s = w / (1 + _CUBE_DEPTH)
    d = s * _CUBE_DEPTH
    front = (xr >= 0) & (xr <= s) & (yr >= d) & (yr <= d + s)
    top = (yr >= 0) & (yr < d) & (xr >= d - yr) & (xr <= d - yr + s)
    t = xr - s
    side = (t > 0) & (t <= d) & (yr >= d - t) & (yr <= d + s - t)
    shade = torch.where(front, _SHADE_FRONT, torch.where(top, _SHADE_TOP, _SHADE_SIDE))
    return front | top | side, shade


def _draw_pyramid(xr, yr, w, h):
    """Apex at the top centre; the ridge runs from the apex to 18% right of the base centre."""
    tt = yr / h
    cx = w / 2
    mask = (tt >= 0) & (tt <= 1) & ((xr - cx).abs() <= tt * w / 2)
    return mask, torch.where(xr - cx <= tt * 0.18 * w, _SHADE_LIT, _SHADE_DARK)


_DRAW = {"cube": _draw_cube, "sphere": _draw_sphere, "pyramid": _draw_pyramid}


@dataclass
class Layout:
    """The renderer's ground truth for a batch of scenes, slots in drawing order (later slots are drawn
    over earlier ones). Boxes are (x0, y0, w, h) in canvas units (pixels of a 64x64 image)."""

    boxes: torch.Tensor  # (N, 4, 4) float
    shape_ids: torch.Tensor  # (N, 4) long, indices into SHAPES
    colour_ids: torch.Tensor  # (N, 4) long, indices into COLOURS
    used: torch.Tensor  # (N, 4) bool, which of the 4 slots hold an object


def render(specs: list[Spec], generator: torch.Generator, size: int = 64, device="cpu") -> torch.Tensor:
    """Render one random scene per spec: (N, 3, size, size) float32 in [0, 1].

    Layout (positions, sizes), per-object brightness (x0.9-1.05) and a small per-channel colour
    jitter (+-0.03) are drawn from `generator` (on its device); pixels are computed on `device`.
    Same draws and pixels as `render_with_layout(...)[0]`.
    """
    return render_with_layout(specs, generator, size, device)[0]


def sample_layout(specs: list[Spec], generator: torch.Generator) -> Layout:
    """The layout `render` would draw for `specs` from `generator` (the same draws, on its device)."""
    return Layout(*_layout(specs, generator))


def render_with_layout(
    specs: list[Spec], generator: torch.Generator, size: int = 64, device="cpu", layout: Layout | None = None
) -> tuple[torch.Tensor, Layout]:
    """`render`, also returning the scenes' ground-truth `Layout` (on `device`). With `layout`, those
    boxes, shapes and colours are drawn instead of a layout sampled for `specs` (the per-object
    brightness and colour jitter still come from `generator`)."""
    n = len(specs)
    device = torch.device(device)
    if n == 0:
        z = torch.zeros(0, 4, device=device)
        empty = Layout(torch.zeros(0, 4, 4, device=device), z.long(), z.long(), z.bool())
        return torch.zeros(0, 3, size, size, device=device), empty
    g = generator
    if layout is None:
        boxes, shape_ids, colour_ids, used = _layout(specs, g)
    else:
        boxes, shape_ids, colour_ids, used = layout.boxes, layout.shape_ids, layout.colour_ids, layout.used
    bright = _uniform(g, (n, 4), 0.9, 1.05)
    jitter = _uniform(g, (n, 4, 3), -0.03, 0.03)
    boxes, shape_ids, colour_ids, used, bright, jitter = (
        t.to(device) for t in (boxes, shape_ids, colour_ids, used, bright, jitter)
    )
    palette = torch.tensor([PALETTE[c] for c in COLOURS], device=device)  # (C, 3)
    hs = size * _SUPERSAMPLE  # supersampled side
    scale = hs / CANVAS  # supersampled pixels per canvas unit
    # Each object is drawn inside a small window around its box rather than over the whole image:
    # objects span <= 24 of 64 canvas px, so this does ~6x less work per slot.
    win = min(hs, int(math.ceil(float(boxes[..., 2:].max()) * scale)) + 2)
    ar = torch.arange(win, device=device)
    img = torch.tensor(BACKGROUND, device=device)[None, :, None].expand(n, 3, hs * hs).clone()  # (N, 3, H*W)
    for k in range(4):
        if not bool(used[:, k].any()):
            continue
        for shape_i, shape in enumerate(SHAPES):
            sel = (used[:, k] & (shape_ids[:, k] == shape_i)).nonzero().squeeze(1)  # scenes drawing this shape
            m = len(sel)
            if m == 0:
                continue
            box = boxes[sel, k]  # (M, 4)
            ox = (box[:, 0] * scale).floor().long().clamp(0, hs - win)  # (M,) window origin, pixels
            oy = (box[:, 1] * scale).floor().long().clamp(0, hs - win)
            px = (ox[:, None, None] + ar[None, None, :] + 0.5) / scale  # (M, 1, win) canvas units
            py = (oy[:, None, None] + ar[None, :, None] + 0.5) / scale  # (M, win, 1)
            x0, y0, w, h = (box[:, i, None, None] for i in range(4))
            mask, shade = _DRAW[shape](px - x0, py - y0, w, h)  # (M, win, win)
            base = (palette[colour_ids[sel, k]] + jitter[sel, k]) * bright[sel, k, None]  # (M, 3)
            col = (base[:, :, None, None] * shade[:, None]).clamp(0, 1)  # (M, 3, win, win)
            flat = (oy[:, None, None] + ar[None, :, None]) * hs + ox[:, None, None] + ar[None, None, :]
            flat = flat.reshape(m, 1, win * win).expand(m, 3, win * win)
            sub = img[sel]  # (M, 3, H*W)
            cur = sub.gather(2, flat)
            new = torch.where(mask.reshape(m, 1, win * win), col.reshape(m, 3, win * win), cur)
            img[sel] = sub.scatter_(2, flat, new)
    img = img.view(n, 3, hs, hs)
    img = torch.nn.functional.avg_pool2d(img, _SUPERSAMPLE)
    return img.clamp(0, 1).float(), Layout(boxes, shape_ids, colour_ids, used)
