"""Tests for the video judge (findcli/shapes/video/judge.py).

Oracle: the video renderer. A clip rendered from a spec is a ground-truth positive for it and a
negative for each of its hard negatives; its ground-truth boxes say where each object is in every
frame. The judge must accept >= 99% of 200 clean clips per kind and reject >= 99% of all their hard
negatives, and stay >= 99% / >= 99% after a mild blur plus noise on every frame (sigma 0.8 px, std
0.04). Clips edited against the oracle (frames reversed in time, an object erased from some frames,
frozen motion, explicit diagonal or back-and-forth paths drawn with the renderer's compositor) must be
rejected for the stated reason.
"""

import pytest
import torch

from findcli.errors import FindError
from findcli.shapes.video import world as vw
from findcli.shapes.video.judge import (
    KEYS,
    judge_clips,
    judge_video,
    judge_video_each,
    judge_video_reward,
    track_videos,
)
from findcli.shapes.video.measure import degrade, specs_per_kind
from findcli.shapes.video.world import KINDS, hard_negatives, parse_video_prompt, render_video_with_layout
from findcli.shapes.world import BACKGROUND, COLOURS, SHAPES

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def clean():
    specs = specs_per_kind(200, seed=0)
    videos, lay = render_video_with_layout(specs, gen(1))
    negatives = [hard_negatives(s, gen(2), 1000) for s in specs]
    return specs, videos, lay, track_videos(videos), negatives


@pytest.fixture(scope="module")
def blurred():
    specs = specs_per_kind(100, seed=10)
    videos, _ = render_video_with_layout(specs, gen(11))
    videos = degrade(videos, sigma=0.8, noise=0.04, generator=gen(12))
    negatives = [hard_negatives(s, gen(13), 1000) for s in specs]
    return specs, track_videos(videos), negatives


def _rates(specs, clips, negatives, kind):
    idx = [i for i, s in enumerate(specs) if s.kind == kind]
    pos, _ = judge_clips([clips[i] for i in idx], [specs[i] for i in idx])
    neg_clips = [clips[i] for i in idx for _ in negatives[i]]
    neg, _ = judge_clips(neg_clips, [n for i in idx for n in negatives[i]])
    return pos.float().mean().item(), (~neg).float().mean().item()


@pytest.mark.parametrize("kind", KINDS)
def test_judge_accepts_rendered_clips_and_rejects_their_hard_negatives(clean, kind):
    specs, _, _, clips, negatives = clean
    accept, reject = _rates(specs, clips, negatives, kind)
    assert accept >= 0.99
    assert reject >= 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_judge_is_robust_to_blur_and_noise(blurred, kind):
    specs, clips, negatives = blurred
    accept, reject = _rates(specs, clips, negatives, kind)
    assert accept >= 0.99
    assert reject >= 0.99


def test_tracks_follow_the_ground_truth(clean):
    specs, _, lay, clips, _ = clean
    for i, (spec, clip) in enumerate(zip(specs, clips)):
        assert len(clip.tracks) == len(spec.objects)
        for j, o in enumerate(spec.objects):
            # the track of object j: the one whose first centre lies in its first-frame box
            x0, y0, w, h = lay.boxes[i, 0, j].tolist()
            (tr,) = [t for t in clip.tracks if x0 <= t.centres[0][0] <= x0 + w and y0 <= t.centres[0][1] <= y0 + h]
            assert tr.colour == o.colour and tr.frames == list(range(8))
            for f, (cx, cy) in zip(tr.frames, tr.centres):
                x0, y0, w, h = lay.boxes[i, f, j].tolist()
                assert x0 <= cx <= x0 + w and y0 <= cy <= y0 + h
            dx, dy = tr.displacement(8)
            ux, uy = vw.DIRECTION_VECTORS[o.direction]
            assert dx * ux + dy * uy == pytest.approx(float(lay.travel[i, j]), abs=1.0)


def test_time_reversed_clips_are_rejected(clean):
    specs, videos, _, _, _ = clean
    idx = list(range(0, 400, 4))  # 50 per kind, through the whole pipeline
    success, per = judge_video_each(videos[idx].flip(1), [specs[i] for i in idx])
    assert not bool(success.any())
    assert all(r["present_every_frame"] for r in per)  # the objects are all there, moving backwards


def _erase(video: torch.Tensor, box, frames: list[int]) -> torch.Tensor:
    """The clip with the background painted over the box (x0, y0, w, h) + 1 px in the given frames."""
    out = video.clone()
    for f in frames:
        x0, y0, w, h = box[f].tolist()
        xa, ya = max(0, int(x0) - 1), max(0, int(y0) - 1)
        xb, yb = min(64, int(x0 + w) + 2), min(64, int(y0 + h) + 2)
        out[f, :, ya:yb, xa:xb] = torch.tensor(BACKGROUND)[:, None, None]
    return out


def test_an_object_missing_in_several_frames_is_rejected_and_in_one_frame_tolerated(clean):
    specs, videos, lay, _, _ = clean
    idx = list(range(0, 400, 8))  # 25 per kind
    two_gone = torch.stack([_erase(videos[i], lay.boxes[i, :, 0], [2, 5]) for i in idx])
    one_gone = torch.stack([_erase(videos[i], lay.boxes[i, :, 0], [3]) for i in idx])
    specs_i = [specs[i] for i in idx]
    success, per = judge_video_each(two_gone, specs_i)
    assert not bool(success.any())
    assert not any(r["present_every_frame"] for r in per)
    success, per = judge_video_each(one_gone, specs_i)
    assert bool(success.all())  # PRESENT_TOLERANCE = 1 frame


def test_frozen_motion_is_rejected(clean):
    specs, videos, _, _, _ = clean
    idx = list(range(0, 400, 8))
    frozen = videos[idx, :1].expand(-1, 8, -1, -1, -1)
    success, per = judge_video_each(frozen, [specs[i] for i in idx])
    assert not bool(success.any())
    assert all(r["present_every_frame"] and not r["direction"] for r in per)


def _clip(paths: list[tuple[str, str, list[tuple[float, float]]]], size: float = 18.0) -> torch.Tensor:
    """One clip drawn with the renderer's compositor from explicit per-frame top-left corners: paths of
    (colour, shape, [(x0, y0)] * F). Returns (1, F, 3, 64, 64)."""
    F, K = len(paths[0][2]), len(paths)
    boxes = torch.zeros(F, K, 4)
    for k, (_, shape, corners) in enumerate(paths):
        h = size * (0.92 if shape == "pyramid" else 1.0)
        boxes[:, k] = torch.tensor([[x, y, size, h] for x, y in corners])
    sid = torch.tensor([[SHAPES.index(s) for _, s, _ in paths]] * F)
    cid = torch.tensor([[COLOURS.index(c) for c, _, _ in paths]] * F)
    frames = vw._composite(boxes, sid, cid, torch.ones(F, K, dtype=torch.bool), torch.ones(F, K),
                           torch.zeros(F, K, 3), 64)
    return frames[None]


def _line(x0, y0, dx, dy, F=8):
    return [(x0 + dx * t / (F - 1), y0 + dy * t / (F - 1)) for t in range(F)]


def test_direction_rules_on_explicit_paths():
    right = _clip([("red", "cube", _line(10, 20, 20, 0))])
    ok, c = judge_video(right, "a red cube moving right")
    assert bool(ok[0]) and all(bool(c[k][0]) for k in KEYS)
    assert not bool(judge_video(right, "a red cube moving to the left")[0][0])
    assert not bool(judge_video(right, "a red cube moving up")[0][0])
    # diagonal: as much drift as travel, beyond MAX_DRIFT_FRAC
    diag = _clip([("red", "cube", _line(10, 10, 20, 20))])
    ok, c = judge_video(diag, "a red cube moving right")
    assert not bool(ok[0]) and bool(c["present_every_frame"][0]) and not bool(c["direction"][0])
    # mostly along the axis (drift 0.25 of travel): accepted
    assert bool(judge_video(_clip([("red", "cube", _line(10, 20, 20, 5))]), "a red cube moving right")[0][0])
    # too short a trip (4 px < MIN_TRAVEL)
    assert not bool(judge_video(_clip([("red", "cube", _line(20, 20, 4, 0))]), "a red cube moving right")[0][0])
    # net right but back and forth: two backward steps of 6 px
    xs = [10, 20, 14, 24, 18, 28, 30, 32]
    zigzag = _clip([("red", "cube", [(x, 20) for x in xs])])
    assert not bool(judge_video(zigzag, "a red cube moving right")[0][0])
    # one backward step of 2 px in a long trip: still "mostly monotone"
    xs = [10, 13, 16, 14, 20, 23, 26, 29]
    assert bool(judge_video(_clip([("red", "cube", [(x, 20) for x in xs])]), "a red cube moving right")[0][0])


def test_an_object_changing_shape_half_way_is_rejected():
    path = _line(10, 20, 20, 0)
    morph = torch.cat([_clip([("red", "cube", path)])[:, :4], _clip([("red", "sphere", path)])[:, 4:]], dim=1)
    for prompt in ("a red cube moving right", "a red sphere moving right"):
        ok, c = judge_video(morph, prompt)
        assert not bool(ok[0]) and not bool(c["present_every_frame"][0]) and bool(c["direction"][0])
    # one frame in eight of another shape: the track's shape is still the majority one
    blip = torch.cat([_clip([("red", "cube", path)])[:, :7], _clip([("red", "sphere", path)])[:, 7:]], dim=1)
    assert bool(judge_video(blip, "a red cube moving right")[0][0])


def test_binding_and_extra_objects_on_explicit_paths():
    clip = _clip([("red", "sphere", _line(6, 6, 20, 0)), ("blue", "cube", _line(40, 40, -20, 0))])
    ok, c = judge_video(clip, "a red sphere moving right and a blue cube moving left")
    assert bool(ok[0]) and bool(c["no_extra_objects"][0])
    # order of the two objects in the prompt does not matter
    assert bool(judge_video(clip, "a blue cube moving left and a red sphere moving right")[0][0])
    # directions swapped: both directions happen, both objects are there, but not bound to them
    ok, c = judge_video(clip, "a red sphere moving left and a blue cube moving right")
    assert not bool(ok[0]) and bool(c["present_every_frame"][0]) and bool(c["direction"][0])
    assert not bool(c["binding"][0])
    # a one-object prompt on this clip: the named object moves as said, one object too many
    ok, c = judge_video(clip, "a red sphere moving right")
    assert bool(ok[0]) and not bool(c["no_extra_objects"][0])
    # two identical objects, each its own motion
    twins = _clip([("green", "pyramid", _line(6, 6, 0, 20)), ("green", "pyramid", _line(40, 40, 0, -20))])
    assert bool(judge_video(twins, "a green pyramid moving down and a green pyramid moving up")[0][0])
    assert not bool(judge_video(twins, "a green pyramid moving down and a green pyramid moving down")[0][0])


def test_judge_video_api_and_reward(clean):
    specs, videos, _, _, _ = clean
    v = videos[[0, 200]]  # one clip of each kind
    prompts = [specs[0].caption(), specs[200].caption()]
    ok, checks = judge_video(v[:1], prompts[0])
    assert ok.dtype == torch.bool and ok.shape == (1,) and set(checks) == set(KEYS)
    reward = judge_video_reward(v, prompts)
    assert reward.tolist() == [2.0, 2.0]  # success + all four constraints met
    wrong = [hard_negatives(specs[0], gen(0), 1)[0].caption(), prompts[1]]
    success, per = judge_video_each(v, wrong)
    expected = success.float() + torch.tensor([sum(r[k] for k in KEYS) / 4 for r in per])
    assert torch.equal(judge_video_reward(v, wrong), expected)
    assert judge_video_reward(v, wrong)[0] < 2.0


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda v: judge_video(v[0], "a red cube moving left"), "(N, F, 3, H, W)"),
        (lambda v: judge_video(v[:, :1], "a red cube moving left"), ">= 2 frames"),
        (lambda v: judge_video(v[..., :32], "a red cube moving left"), "square"),
        (lambda v: judge_video(v, "a red cube on a blue sphere"), "unknown word 'on'"),
        (lambda v: judge_video(v, 7), "VideoSpec or a prompt"),
        (lambda v: judge_video_reward(v, ["a red cube moving left"] * 3), "one prompt per video"),
    ],
)
def test_bad_inputs_raise_one_line_errors(call, needle):
    v = torch.zeros(2, 8, 3, 64, 64)
    with pytest.raises(FindError) as e:
        call(v)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_parse_errors_reach_the_judge_as_the_grammar_error():
    with pytest.raises(FindError) as e:
        judge_video(torch.zeros(1, 8, 3, 64, 64), "a red cube")
    assert "video grammar" in str(e.value)
    assert parse_video_prompt("a red cube moving left").kind == "single_motion"
