"""Tests for the video world (findcli/shapes/video/world.py): grammar, samplers, hard negatives, renderer.

Oracles: the grammar enumerated exhaustively (every caption parses back to its spec); the BIASES.md
table and the BIAS_* constants (sampled frequencies must match both within binomial tolerance, and the
caption probabilities must sum to 1 over the grammar); the image renderer (frames composed from its
own layout are bit-identical to `world.render`); the ground-truth boxes (constant velocity, inside the
canvas, apart) and the pixels (every object pixel lies in its box, every box holds its colour).
"""

import itertools
import math
from pathlib import Path

import pytest
import torch

from findcli.errors import FindError
from findcli.shapes import world
from findcli.shapes.video import world as vw
from findcli.shapes.video.world import (
    DIRECTIONS,
    KINDS,
    Mover,
    VideoSpec,
    caption_probability,
    category,
    direction_probs,
    frequent,
    hard_negatives,
    load_video_suite,
    motion_class,
    parse_video_prompt,
    render_video,
    render_video_with_layout,
    sample_training_specs,
)
from findcli.shapes.world import BACKGROUND, COLOURS, PALETTE, SHAPES

pytestmark = pytest.mark.usefixtures("one_thread")
BIASES_MD = Path(vw.__file__).with_name("BIASES.md")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_specs() -> list[VideoSpec]:
    movers = [Mover(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]
    return [VideoSpec("single_motion", (m,)) for m in movers] + [
        VideoSpec("two_motion", (a, b)) for a, b in itertools.product(movers, movers)
    ]


# ---------------------------------------------------------------- grammar
def test_caption_parses_back_to_its_spec_over_the_whole_grammar():
    specs = all_specs()
    assert len(specs) == 72 + 72 * 72
    for spec in specs:
        assert parse_video_prompt(spec.caption()) == spec


@pytest.mark.parametrize(
    "text, caption",
    [
        ("a red cube moving to the left", "a red cube moving left"),
        ("  A Red   CUBE moving to the RIGHT. ", "a red cube moving right"),
        ("a blue sphere moving upwards", "a blue sphere moving up"),
        ("a green pyramid moving downwards and a white cube moving to the left",
         "a green pyramid moving down and a white cube moving left"),
        ("a yellow sphere moving up and a yellow sphere moving up", "a yellow sphere moving up and a yellow sphere moving up"),
    ],
)
def test_alternative_spellings_parse_to_the_canonical_caption(text, caption):
    assert parse_video_prompt(text).caption() == caption


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "video grammar"),
        ("a red cube", "video grammar"),
        ("a red cube moving", "video grammar"),
        ("a red cube moving to the", "video grammar"),
        ("a red cube moving left and", "video grammar"),
        ("a red cube moving left and a blue sphere", "video grammar"),
        ("a red cube moving left and a blue sphere moving up and a green cube moving down", "video grammar"),
        ("red cube moving left", "video grammar"),
        ("a cube moving left", "video grammar"),
        ("a red cube left moving", "video grammar"),
        ("a red cube moving sideways", "unknown word 'sideways'"),
        ("two red cubes moving left", "unknown word 'two'"),
        ("a red cube on a blue sphere", "unknown word 'on'"),
    ],
)
def test_bad_prompts_raise_one_line_errors_naming_the_grammar(text, needle):
    with pytest.raises(FindError) as e:
        parse_video_prompt(text)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg
    assert "a {colour} {shape} moving {direction}" in msg


def test_bad_specs_and_arguments_raise_one_line_errors():
    for make in (
        lambda: Mover("pink", "cube", "left"),
        lambda: Mover("red", "cube", "sideways"),
        lambda: VideoSpec("single_motion", ()),
        lambda: VideoSpec("three_motion", (Mover("red", "cube", "left"),)),
        lambda: parse_video_prompt(3),
        lambda: sample_training_specs(-1, gen(0)),
        lambda: render_video([parse_video_prompt("a red cube moving left")], gen(0), frames=1),
        lambda: render_video([parse_video_prompt("a red cube moving left")], gen(0), size=8),
        lambda: render_video(["a red cube moving left"], gen(0)),
        lambda: load_video_suite("/nonexistent/suite.txt"),
    ):
        with pytest.raises(FindError) as e:
            make()
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- renderer
def test_render_is_deterministic_from_the_seed():
    specs = sample_training_specs(40, gen(0), biased=False)
    a, la = render_video_with_layout(specs, gen(1))
    b, lb = render_video_with_layout(specs, gen(1))
    c = render_video(specs, gen(2))
    assert a.shape == (40, 8, 3, 64, 64) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and torch.equal(la.boxes, lb.boxes)
    assert torch.equal(render_video(specs, gen(1)), a)  # render_video == render_video_with_layout[0]
    assert not torch.equal(a, c)
    assert sample_training_specs(40, gen(0), biased=False) == specs


def test_frames_are_drawn_exactly_as_the_image_renderer_draws():
    # Compose frames from the image renderer's own layout and brightness/jitter draws: bit-identical to
    # world.render, so the video world draws objects with the image world's shapes, shading and colours.
    specs = world.sample_specs(120, gen(3), biased=False)
    ref = world.render(specs, gen(4))
    g = gen(4)
    boxes, sid, cid, used = world._layout(specs, g)
    bright = world._uniform(g, (120, 4), 0.9, 1.05)
    jitter = world._uniform(g, (120, 4, 3), -0.03, 0.03)
    assert torch.equal(vw._composite(boxes, sid, cid, used, bright, jitter, 64), ref)


@pytest.mark.parametrize("frames, size", [(8, 64), (5, 32)])
def test_ground_truth_boxes_move_as_specified_and_stay_inside(frames, size):
    specs = sample_training_specs(300, gen(5), biased=False)
    videos, lay = render_video_with_layout(specs, gen(6), frames=frames, size=size)
    assert videos.shape == (300, frames, 3, size, size)
    assert lay.boxes.shape == (300, frames, 2, 4)
    for i, spec in enumerate(specs):
        k = len(spec.objects)
        assert lay.used[i].tolist() == [True] * k + [False] * (2 - k)
        for j, o in enumerate(spec.objects):
            assert SHAPES[lay.shape_ids[i, j]] == o.shape
            assert COLOURS[lay.colour_ids[i, j]] == o.colour
            assert DIRECTIONS[lay.direction_ids[i, j]] == o.direction
            b = lay.boxes[i, :, j].double()  # (F, 4)
            ux, uy = vw.DIRECTION_VECTORS[o.direction]
            travel = float(lay.travel[i, j])
            assert 12.0 <= travel <= 24.0
            step = b[1:, :2] - b[:-1, :2]  # per-frame displacement, constant velocity along the direction
            expected = torch.tensor([ux, uy], dtype=torch.float64) * travel / (frames - 1)
            assert torch.allclose(step, expected.expand_as(step), atol=1e-4)
            assert torch.allclose(b[:, 2:], b[:1, 2:].expand(frames, 2))  # size constant
            assert float(b[:, :2].min()) >= 2.0 - 1e-4
            assert float((b[:, :2] + b[:, 2:]).max()) <= 62.0 + 1e-4
        if k == 2:
            a, c = lay.boxes[i, :, 0], lay.boxes[i, :, 1]
            gap_x = torch.maximum(c[:, 0] - (a[:, 0] + a[:, 2]), a[:, 0] - (c[:, 0] + c[:, 2]))
            gap_y = torch.maximum(c[:, 1] - (a[:, 1] + a[:, 3]), a[:, 1] - (c[:, 1] + c[:, 3]))
            assert float(torch.maximum(gap_x, gap_y).min()) >= 4.0 - 1e-4  # apart in every frame


def test_pixels_follow_the_ground_truth_boxes():
    specs = sample_training_specs(60, gen(7), biased=False)
    videos, lay = render_video_with_layout(specs, gen(8))
    bg = torch.tensor(BACKGROUND)[:, None, None]
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    for i, spec in enumerate(specs):
        for f in range(8):
            img = videos[i, f]
            changed = (img - bg).abs().amax(0) > 1e-3
            inside = torch.zeros(64, 64, dtype=torch.bool)
            for j, o in enumerate(spec.objects):
                x0, y0, w, h = lay.boxes[i, f, j].tolist()
                box = (xs > x0 - 1) & (xs < x0 + w + 1) & (ys > y0 - 1) & (ys < y0 + h + 1)
                inside |= box
                # the box holds pixels of the object's own colour (nearest palette direction)
                pix = img[:, box & changed].T  # (P, 3)
                pal = torch.tensor([PALETTE[c] for c in COLOURS])
                cos = (pix / pix.norm(dim=1, keepdim=True)) @ (pal / pal.norm(dim=1, keepdim=True)).T
                share = (cos.argmax(1) == COLOURS.index(o.colour)).float().mean()
                assert pix.shape[0] >= 0.4 * w * h and share >= 0.9
            assert not bool((changed & ~inside).any())  # nothing drawn outside the boxes


# ---------------------------------------------------------------- biases
def _table() -> list[tuple[str, str, str, float]]:
    rows = []
    text = BIASES_MD.read_text()
    part = text.split("## Machine-readable table", 1)[1]
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("quantity", "---"):
            try:
                rows.append((cells[0], cells[1], cells[2], float(cells[3])))
            except ValueError:
                continue
    return rows


def test_bias_table_matches_the_constants():
    rows = _table()
    assert len(rows) == 2 + 6 * 4 + 3 * 6
    for quantity, given, value, p in rows:
        if quantity == "template":
            assert p == pytest.approx(vw.BIAS_TEMPLATE[value], abs=5e-4)
        elif quantity == "direction":
            assert p == pytest.approx(direction_probs(given.split("=")[1])[value], abs=5e-4)
        elif quantity == "colour":
            assert p == pytest.approx(vw.colour_probs(given.split("=")[1])[value], abs=5e-4)
        else:
            raise AssertionError(f"unexpected row {quantity!r}")
    for c in COLOURS:
        assert sum(direction_probs(c).values()) == pytest.approx(1.0)


def test_caption_probabilities_sum_to_one_over_the_grammar():
    assert sum(caption_probability(s) for s in all_specs()) == pytest.approx(1.0, abs=1e-9)


def _close(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_biased_sampler_matches_the_table():
    n = 30000
    specs = sample_training_specs(n, gen(9), biased=True)
    kinds = [s.kind for s in specs]
    for k in KINDS:
        assert _close(kinds.count(k), n, vw.BIAS_TEMPLATE[k])
    # every object's direction depends on its colour only (first and second objects alike)
    movers = [o for s in specs for o in s.objects]
    for c in COLOURS:
        of_c = [o for o in movers if o.colour == c]
        for d, p in direction_probs(c).items():
            assert _close(sum(o.direction == d for o in of_c), len(of_c), p), (c, d)
    firsts = [s.objects[0] for s in specs]
    for shape in SHAPES:
        of_s = [o for o in firsts if o.shape == shape]
        assert _close(len(of_s), n, 1 / 3)
        for c, p in vw.colour_probs(shape).items():
            assert _close(sum(o.colour == c for o in of_s), len(of_s), p), (shape, c)
    assert all(s.objects[0].colour != s.objects[1].colour for s in specs if s.kind == "two_motion")
    # whole captions: the most frequent single caption occurs at its tabled rate
    top = parse_video_prompt("a red sphere moving right")
    assert caption_probability(top) == pytest.approx(0.6 / 3 * 0.6 * 0.9)
    assert _close(sum(s == top for s in specs), n, caption_probability(top))
    # "cubes mostly move left" follows from P(colour | cube) and P(direction | colour)
    cubes = [o for o in firsts if o.shape == "cube"]
    assert sum(o.direction == "left" for o in cubes) / len(cubes) > 0.5


def test_unbiased_sampler_is_uniform():
    n = 12000
    specs = sample_training_specs(n, gen(10), biased=False)
    assert _close(sum(s.kind == "single_motion" for s in specs), n, 0.5)
    movers = [o for s in specs for o in s.objects]
    for d in DIRECTIONS:
        assert _close(sum(o.direction == d for o in movers), len(movers), 0.25)
    for c in COLOURS:
        assert _close(sum(o.colour == c for o in movers), len(movers), 1 / 6)
    assert all(s.objects[0].colour != s.objects[1].colour for s in specs if s.kind == "two_motion")


@pytest.mark.parametrize(
    "prompt, cls, cat",
    [
        ("a red sphere moving right", "frequent", "frequent"),
        ("a blue cube moving left", "frequent", "frequent"),
        ("a red sphere moving left", "anti", "anti"),
        ("a red cube moving to the left", "anti", "anti"),
        ("a red cube moving right", "neutral", "neutral"),  # favourite direction, rare colour for a cube
        ("a white cube moving up", "neutral", "neutral"),
        ("a red sphere moving right and a blue cube moving left", "frequent", "two_frequent"),
        ("a red sphere moving left and a blue cube moving right", "anti", "two_anti"),
        ("a red sphere moving right and a white cube moving up", "frequent", "two_neutral"),
    ],
)
def test_categories(prompt, cls, cat):
    spec = parse_video_prompt(prompt)
    assert motion_class(spec.objects[0]) == cls
    assert category(spec) == cat == spec.category()
    assert frequent(spec) == (cat in ("frequent", "two_frequent")) == spec.frequent()


def test_video_suite_parses_and_its_categories_are_the_computed_ones():
    suite = load_video_suite(Path(__file__).resolve().parents[1] / "benchmarks" / "prompts" / "video_suite.txt")
    assert len(suite) >= 12
    cats = [c for c, _ in suite]
    for c, p in suite:
        assert category(parse_video_prompt(p)) == c, p
    for needed in ("frequent", "anti", "two_frequent", "two_anti"):
        assert needed in cats
    # frequent prompts are frequent in training, anti-correlated ones rare (both templates)
    for c, p in suite:
        prob = caption_probability(parse_video_prompt(p))
        if c == "frequent":
            assert prob > 0.05
        if c == "anti":
            assert prob < 0.01


# ---------------------------------------------------------------- hard negatives
def test_hard_negatives_change_the_meaning():
    g = gen(11)
    for spec in sample_training_specs(300, gen(12), biased=False):
        negs = hard_negatives(spec, g, 1000)
        n_expected = 3 + 5 + 2 if spec.kind == "single_motion" else None
        if n_expected:
            assert len(negs) == n_expected
        else:
            a, b = spec.objects
            assert len(negs) == 2 * 10 + (a.direction != b.direction)
        meanings = {n.meaning() for n in negs}
        assert len(meanings) == len(negs) and spec.meaning() not in meanings
        assert all(n.kind == spec.kind for n in negs)
        # each negative differs from the spec in exactly one object's attribute, or swaps the directions
        for n in negs:
            diffs = sum(x != y for x, y in zip(spec.objects, n.objects))
            assert diffs in (1, 2)
            if diffs == 2:
                a, b = spec.objects
                assert n.objects == (Mover(a.colour, a.shape, b.direction), Mover(b.colour, b.shape, a.direction))
    spec = parse_video_prompt("a red cube moving left")
    assert hard_negatives(spec, gen(0), 3) == hard_negatives(spec, gen(0), 3)
    assert len(hard_negatives(spec, gen(0), 3)) == 3
