"""Tests for the shapes judge (findcli/shapes/judge.py).

Oracle: the renderer. A scene rendered from a spec is a ground-truth positive for that spec, and a
negative for each of its hard negatives (same template, different meaning). The judge must accept
>= 99% of 500 positives per kind and reject >= 99% of the negatives, and stay >= 95% on both after a
mild Gaussian blur plus pixel noise (roughly what a small 64x64 diffusion model produces).
"""

import pytest
import torch
import torchvision.transforms.functional as TF

from findcli.errors import FindError
from findcli.shapes.judge import constraint_keys, judge, judge_each, judge_segments, load_suite, segment
from findcli.shapes.world import KINDS, parse_prompt, render, sample_specs, hard_negatives

N_PER_KIND = 500
SUITE = "benchmarks/prompts/shapes_suite.txt"


def _specs_per_kind(n: int, seed: int) -> list:
    pool = sample_specs(8 * n, torch.Generator().manual_seed(seed), biased=False)
    out = []
    for kind in KINDS:
        of_kind = [s for s in pool if s.kind == kind][:n]
        assert len(of_kind) == n
        out += of_kind
    return out


def _degrade(images: torch.Tensor, sigma: float, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    blurred = TF.gaussian_blur(images, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    return (blurred + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def clean():
    specs = _specs_per_kind(N_PER_KIND, seed=0)
    images = render(specs, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    negatives = [hard_negatives(s, g, 2) for s in specs]
    return specs, segment(images), negatives


@pytest.fixture(scope="module")
def blurred():
    # blur sigma 0.8 px and noise std 0.04: edges spread over ~2 px and colours jitter, as in samples
    # of a small diffusion model; measured accuracy here is 97-100% per kind (1.0 px: 97-100% too)
    specs = _specs_per_kind(150, seed=10)
    images = _degrade(render(specs, torch.Generator().manual_seed(11)), sigma=0.8, noise=0.04, seed=12)
    g = torch.Generator().manual_seed(13)
    negatives = [hard_negatives(s, g, 1)[0] for s in specs]
    return specs, segment(images), negatives


def _rates(data, kind):
    specs, found, negatives = data
    idx = [i for i, s in enumerate(specs) if s.kind == kind]
    pos, _ = judge_segments([found[i] for i in idx], [specs[i] for i in idx])
    neg_found, neg_specs = [], []
    for i in idx:
        negs = negatives[i] if isinstance(negatives[i], list) else [negatives[i]]
        neg_found += [found[i]] * len(negs)
        neg_specs += negs
    neg, _ = judge_segments(neg_found, neg_specs)
    return pos.float().mean().item(), (~neg).float().mean().item()


@pytest.mark.parametrize("kind", KINDS)
def test_judge_accepts_rendered_scenes_and_rejects_hard_negatives(clean, kind):
    accept, reject = _rates(clean, kind)
    assert accept >= 0.99
    assert reject >= 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_judge_is_robust_to_blur_and_noise(blurred, kind):
    accept, reject = _rates(blurred, kind)
    assert accept >= 0.95
    assert reject >= 0.95


def test_judge_works_at_other_image_sizes():
    # geometry is in 64x64 canvas units, so thresholds rescale with the image
    specs = _specs_per_kind(25, seed=20)
    for size in (48, 96):
        images = render(specs, torch.Generator().manual_seed(21), size=size)
        success, _ = judge_each(images, specs)
        assert success.float().mean().item() >= 0.95, size


def test_judge_returns_per_constraint_tensors_for_each_kind():
    g = torch.Generator().manual_seed(0)
    for prompt, keys in [
        ("a red cube", {"colour", "shape", "objects_present", "no_extra_objects"}),
        ("a red cube and a blue sphere", {"colour", "shape", "objects_present", "no_extra_objects"}),
        ("a red cube on a blue sphere", {"colour", "shape", "objects_present", "relation", "no_extra_objects"}),
        ("three red cubes", {"colour", "shape", "objects_present", "count", "no_extra_objects"}),
    ]:
        spec = parse_prompt(prompt)
        images = render([spec] * 3, g)
        success, checks = judge(images, spec)
        assert set(checks) == keys == set(constraint_keys(spec))
        assert success.shape == (3,) and success.dtype == torch.bool and bool(success.all())
        for v in checks.values():
            assert v.shape == (3,) and v.dtype == torch.bool and bool(v.all())


def test_judge_constraints_explain_a_failure():
    g = torch.Generator().manual_seed(0)
    images = render([parse_prompt("a red sphere on a blue cube")] * 2, g)
    success, checks = judge(images, parse_prompt("a blue cube on a red sphere"))
    assert not success.any()
    assert checks["colour"].all() and checks["shape"].all() and checks["objects_present"].all()
    assert not checks["relation"].any()
    success, checks = judge(images, parse_prompt("a red cube"))
    assert not success.any() and checks["colour"].all() and checks["shape"].all()
    assert not checks["objects_present"].any() and not checks["no_extra_objects"].any()
    success, checks = judge(render([parse_prompt("four red cubes")], g), parse_prompt("three red cubes"))
    assert not success.any() and checks["objects_present"].all() and not checks["count"].any()


def test_judge_finds_nothing_in_a_blank_image():
    from findcli.shapes.world import BACKGROUND

    blank = torch.tensor(BACKGROUND)[None, :, None, None].expand(2, 3, 64, 64).clone()
    success, checks = judge(blank, parse_prompt("a red sphere"))
    assert not success.any() and not checks["colour"].any()
    assert segment(blank) == [[], []]


def test_judge_rejects_badly_shaped_input():
    with pytest.raises(FindError, match="N, 3, H, W"):
        judge(torch.zeros(3, 64, 64), parse_prompt("a red sphere"))


# ---------------------------------------------------------------- suite
def test_shipped_suite_parses_and_covers_every_category():
    suite = load_suite(SUITE)
    assert 25 <= len(suite) <= 40
    assert ("position", "a red cube on a blue sphere") in suite
    assert {c for c, _ in suite} == {"single", "colour", "two_objects", "attribute_binding", "counting", "position"}
    assert len({p for _, p in suite}) == len(suite)


def test_load_suite_formats_and_errors(tmp_path):
    path = tmp_path / "suite.txt"
    path.write_text("# comment\n\nmine\ta red cube\nthree blue spheres\n")
    assert load_suite(path) == [("mine", "a red cube"), ("counting", "three blue spheres")]
    path.write_text("a red cube\na red dog\n")
    with pytest.raises(FindError, match=r"suite.txt:2: unknown word 'dog'"):
        load_suite(path)
    with pytest.raises(FindError, match="cannot read prompt suite"):
        load_suite(tmp_path / "missing.txt")


@pytest.mark.parametrize("tint", [(0.38, 0.28, 0.30), (0.30, 0.30, 0.34), (0.26, 0.22, 0.20)])
def test_judge_sees_white_objects_on_a_tinted_background(tint):
    # The built-in generator tints and brightens the background (e.g. (0.38, 0.28, 0.30) measured on
    # its "three white cubes" images); such a grey lies near the white ray's dark end and once made
    # the whole image one white object. Oracle: the renderer's scenes with their background pixels
    # (exactly BACKGROUND in a clean render) repainted with the tint, plus a gentle gradient.
    from findcli.shapes.world import BACKGROUND

    g = torch.Generator().manual_seed(5)
    specs = [parse_prompt(p) for p in ("three white cubes", "four white spheres", "a white pyramid", "two red cubes")] * 16
    images = render(specs, g)
    bg = (images - torch.tensor(BACKGROUND)[None, :, None, None]).abs().amax(1, keepdim=True) < 1e-6
    ramp = torch.linspace(-0.04, 0.04, 64)[None, None, None, :]
    tinted = torch.where(bg, torch.tensor(tint)[None, :, None, None] + ramp, images).clamp(0, 1)
    ok = torch.cat([judge(tinted[i::4], specs[i])[0] for i in range(4)])
    assert ok.float().mean() >= 0.95, f"accepted {ok.float().mean():.1%}"


def _one_class(boxes: torch.Tensor, k: int, shape: str, colour: str):
    """A world.Layout of scenes whose first k slots hold `boxes` (N, 4, 4), all of one class."""
    from findcli.shapes import world as W

    n = boxes.shape[0]
    used = torch.zeros(n, 4, dtype=torch.bool)
    used[:, :k] = True
    return W.Layout(boxes, torch.full((n, 4), W.SHAPES.index(shape)), torch.full((n, 4), W.COLOURS.index(colour)), used)


def _side_by_side(k: int, shape: str, colour: str, n: int, gap: float, seed: int):
    """n scenes of k same-coloured objects in a row, each `gap` canvas px from the next (0: touching),
    bottoms level, sizes 13-18 px (cubes: one size per scene +-0.5 px, see below), as the renderer's
    own rasterisers draw them, the layout given explicitly (world.py never places same-coloured
    objects this close; the built-in generator does)."""
    from findcli.shapes import world as W

    g = torch.Generator().manual_seed(seed)
    sid = W.SHAPES.index(shape)
    boxes = torch.zeros(n, 4, 4)
    for i in range(n):
        u = 13 + 5 * torch.rand(k, generator=g)
        if shape == "cube":  # a cube's top face dips only 0.31 w at its front corner: a cube beside a
            u = u[:1] + torch.rand(k, generator=g) - 0.5  # much smaller one makes no valley (not split)
        w, h = W._box_hw(torch.full((k,), sid), u)
        x = 4 + float(torch.rand((), generator=g)) * (60 - float(w.sum()) - gap * (k - 1) - 4)
        bottom = 30 + float(torch.rand((), generator=g)) * 28
        for j in range(k):
            boxes[i, j] = torch.tensor([x, bottom - float(h[j]), float(w[j]), float(h[j])])
            x += float(w[j]) + gap
    return _one_class(boxes, k, shape, colour)


@pytest.mark.parametrize("shape", ["pyramid", "sphere", "cube"])
def test_judge_counts_touching_same_coloured_objects_as_the_renderer_placed_them(shape):
    # Oracle: the renderer, drawing k objects of one class side by side and touching (gap 0) or 1 px
    # apart, which blurs into one blob. Before `_split_touching` the judge mostly saw one component
    # (and misread its shape); a person counts k. Clean and blurred as the generator blurs (sigma 0.8).
    from findcli.shapes import world as W

    for k, gap in ((2, 0.0), (3, 0.0), (2, 1.0)):
        layout = _side_by_side(k, shape, "blue", 24, gap, seed=k)
        spec = parse_prompt(f"{['', '', 'two', 'three'][k]} blue {shape}s")
        images, _ = W.render_with_layout([spec] * 24, torch.Generator().manual_seed(0), layout=layout)
        blurred = _degrade(images, sigma=0.8, noise=0.02, seed=1)
        for name, x in (("clean", images), ("blurred", blurred)):
            ok, _ = judge(x, spec)
            # Measured (24 scenes each, clean / blurred), before the split: pyramids 100% / 58-100%,
            # spheres 0-75% / 0%, cubes 0-38% / 0%; now: pyramids 100% / 100%, spheres 88-100% /
            # 79-100%, cubes 58% / 46% (two touching), 21% / 4% (three), 100% / 92% (1 px apart).
            # A cube's valley is its top face's depth at one corner (~4 px here), which the profile's
            # 3-column median (against noise) mostly removes: touching cubes are the weak case.
            bar = 0.9
            if shape == "sphere":
                bar = 0.75 if name == "clean" else 0.65
            if shape == "cube" and gap == 0.0:  # three touching cubes blurred (4%): no bar, only the next check
                bar = {(2, "clean"): 0.4, (2, "blurred"): 0.3, (3, "clean"): 0.1, (3, "blurred"): None}[(k, name)]
            if shape == "cube" and gap == 1.0:
                bar = 0.85
            if bar is not None:
                assert ok.float().mean() >= bar, f"{k} touching {shape}s, gap {gap}, {name}: counted right in {ok.float().mean():.0%}"
            # and the split never cuts more pieces than there are objects (measured: never, every case)
            pieces = [sum(o["colour"] == "blue" for o in objs) for objs in segment(x)]
            assert max(pieces) <= k, f"{k} {shape}s, gap {gap}, {name}: split into {max(pieces)}"


def test_judge_does_not_split_an_object_under_another_colour():
    # A base object with another object resting on it (the renderer's "on"/"under" scenes) dips in
    # its own colour's top profile where the other object hides it; the profile is read through other
    # colours, so the base stays one object. Oracle: the renderer's relation scenes, clean and blurred.
    specs = [parse_prompt(p) for p in ("a red sphere on a blue cube", "a green cube under a yellow pyramid",
                                       "a white sphere on a purple sphere", "a blue pyramid on a red cube")] * 40
    images = render(specs, torch.Generator().manual_seed(7))
    for x in (images, _degrade(images, sigma=1.0, noise=0.03, seed=8)):
        found = segment(x)
        assert sum(len(objs) == 2 for objs in found) >= 0.97 * len(found)


def _stacked(k: int, shape: str, colour: str, n: int, shift: float, seed: int):
    """n scenes of k objects of one class one above the other, each resting on
    the one below (its box's bottom edge on the lower box's top edge), the next box's left edge shifted
    sideways by 0.5-1.0 x `shift` of the lower one's width (0: straight, 0.5: diagonal, on a corner). The renderer
    never stacks same-coloured objects; the built-in generator does."""
    from findcli.shapes import world as W

    g = torch.Generator().manual_seed(seed)
    sid = W.SHAPES.index(shape)
    boxes = torch.zeros(n, 4, 4)
    for i in range(n):
        u = 12 + 4 * torch.rand(k, generator=g)
        w, h = W._box_hw(torch.full((k,), sid), u)
        bottom = 60.0 - float(torch.rand((), generator=g)) * (60 - float(h.sum()) - 4)
        x = 16 + float(torch.rand((), generator=g)) * 16
        for j in range(k):
            boxes[i, j] = torch.tensor([x, bottom - float(h[j]), float(w[j]), float(h[j])])
            bottom -= float(h[j])
            side = 1.0 if torch.rand((), generator=g) < 0.5 else -1.0
            x += side * shift * float(w[j]) * float(torch.rand((), generator=g) * 0.5 + 0.5)
    return _one_class(boxes, k, shape, colour)


@pytest.mark.parametrize("shape", ["pyramid", "sphere", "cube"])
def test_judge_counts_stacked_same_coloured_objects_as_the_renderer_placed_them(shape):
    # Oracle: the renderer, drawing k objects of one class one above the other, touching, straight or
    # shifted sideways. Before `_split_stacked` the judge saw one component (the top profile has one
    # peak); a person counts k. Clean and blurred as the generator blurs (sigma 0.8).
    from findcli.shapes import world as W

    for k, shift in ((2, 0.0), (2, 0.5), (3, 0.2)):
        layout = _stacked(k, shape, "green", 24, shift, seed=10 * k + int(10 * shift))
        spec = parse_prompt(f"{['', '', 'two', 'three'][k]} green {shape}s")
        images, _ = W.render_with_layout([spec] * 24, torch.Generator().manual_seed(0), layout=layout)
        blurred = _degrade(images, sigma=0.8, noise=0.02, seed=1)
        for name, x in (("clean", images), ("blurred", blurred)):
            ok, _ = judge(x, spec)
            # Measured (24 scenes each, clean / blurred; k, shift = 2 straight, 2 diagonal, 3 at 0.2),
            # before the split: pyramids 100 / 8-33% (the clean apex is thin enough for the opening to
            # cut), spheres 0-54 / 0-12%, cubes 0-8 / 0-4%; now: pyramids 100 / 100%, spheres 96-100 /
            # 62-96%, cubes 38 / 4%, 58 / 29%, 12 / 0%. A cube on a cube narrows only by its side face
            # (~0.3 of its width, which the median and a blur flatten): stacked cubes are the weak case.
            bar = {"pyramid": 0.9, "sphere": 0.9 if name == "clean" else 0.5}.get(shape)
            if shape == "cube":
                bar = {(2, 0.0, "clean"): 0.3, (2, 0.5, "clean"): 0.4, (2, 0.5, "blurred"): 0.2}.get((k, shift, name))
            if bar is not None:
                assert ok.float().mean() >= bar, f"{k} stacked {shape}s, shift {shift}, {name}: counted right in {ok.float().mean():.0%}"
            # and the split never cuts more pieces than there are objects (measured: never, every case)
            pieces = [sum(o["colour"] == "green" for o in objs) for objs in segment(x)]
            assert max(pieces) <= k, f"{k} stacked {shape}s, shift {shift}, {name}: split into {max(pieces)}"


def test_a_highlight_of_another_colour_reaching_the_edge_does_not_cut_an_object():
    # The generator paints some red spheres with a yellow sheen that reaches their left edge; the red
    # pixels then narrow in those rows and widen below, a neck in the red component's own width.
    # `_split_stacked` reads the width through other colours, so the sphere stays one object. Oracle:
    # the renderer's spheres with a yellow band painted over their upper left: four red objects in every
    # scene (the judge's shape call on what is left of the red may change; the count of pieces may not).
    # Measured: the judge of commit e66575c, which read the red pixels' own width, cut 2 of these 16
    # scenes into 5 red pieces; the generator's "four red spheres" FIND policy images, 10 of 32.
    from findcli.shapes.world import PALETTE, render_with_layout

    spec = parse_prompt("four red spheres")
    x, lay = render_with_layout([spec] * 16, torch.Generator().manual_seed(4))
    yellow = torch.tensor(PALETTE["yellow"])[:, None]
    for i in range(16):
        for bx, by, bw, bh in lay.boxes[i, :4].tolist():
            y0, y1 = int(by + 0.2 * bh), int(by + 0.5 * bh)
            x0, x1 = int(bx), int(bx + 0.5 * bw)
            patch = x[i, :, y0:y1, x0:x1]
            red = (patch[0] > 0.5) & (patch[1] < 0.4)
            patch[:, red] = yellow.expand(3, int(red.sum()))
    assert [sum(o["colour"] == "red" for o in objs) for objs in segment(x)] == [4] * 16


def test_run_start_and_end_match_a_per_pixel_walk_on_awkward_masks():
    # Oracle: a plain walk from each pixel along the axis while the neighbour is True. The judge's splits
    # read the top of the vertical run (`_split_touching`) and both ends of the horizontal run
    # (`_split_stacked`) through these vectorised running maxima.
    from findcli.shapes.judge import _run_end, _run_start

    g = torch.Generator().manual_seed(0)
    for p, shape in ((0.1, (2, 7, 13)), (0.6, (3, 11, 5)), (0.95, (1, 9, 9)), (1.0, (1, 4, 6)), (0.0, (1, 3, 3))):
        m = torch.rand(*shape, generator=g) < p
        for dim in (1, 2):
            start, end = _run_start(m, dim), _run_end(m, dim)
            for i, y, x in ((i, y, x) for i in range(shape[0]) for y in range(shape[1]) for x in range(shape[2])):
                pos = [i, y, x]
                lo = hi = pos[dim]
                if m[i, y, x]:
                    while lo > 0 and m[tuple(pos[:dim] + [lo - 1] + pos[dim + 1:])]:
                        lo -= 1
                    while hi < shape[dim] - 1 and m[tuple(pos[:dim] + [hi + 1] + pos[dim + 1:])]:
                        hi += 1
                assert (start[i, y, x].item(), end[i, y, x].item()) == (lo, hi), (p, dim, i, y, x)
