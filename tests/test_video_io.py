"""Videos through the reward and the writers. Oracles: the per-frame mean computed by hand, the frames
read back from the GIF, and the frame layout of frame_strips."""

import pytest
import torch

from findcli.errors import FindError
from findcli.pipeline import can_write_mp4, frame_strips, write_video
from findcli.rewards import CombinedReward, over_frames


def _videos(n=2, f=3, h=8, w=8):
    return torch.rand(n, f, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_an_image_reward_scores_a_video_as_the_mean_over_its_frames():
    videos = _videos()

    def redness(images, prompts):  # an image reward: (M, 3, H, W) -> (M,)
        assert images.ndim == 4 and len(prompts) == images.shape[0]
        return images[:, 0].mean((1, 2)) * (1 + torch.tensor([len(p) for p in prompts]))

    prompts = ["a", "bb"]
    by_hand = torch.stack([torch.stack([redness(v[f:f + 1], [p])[0] for f in range(v.shape[0])]).mean()
                           for v, p in zip(videos, prompts)])
    torch.testing.assert_close(over_frames(redness, videos, prompts), by_hand)
    combined = CombinedReward([("redness", 2.0, redness)])  # a built-in-style component: lifted
    torch.testing.assert_close(combined(videos, prompts), 2.0 * by_hand)


def test_a_video_aware_reward_gets_the_videos_themselves():
    seen = []

    def motion(videos, prompts):
        seen.append(videos.shape)
        return (videos[:, 1:] - videos[:, :-1]).abs().mean((1, 2, 3, 4))

    motion.accepts_video = True
    videos = _videos()
    CombinedReward([("motion", 1.0, motion)])(videos, ["x", "y"])
    assert seen == [videos.shape]


def test_frame_strips_lay_frames_side_by_side():
    videos = _videos(n=2, f=3)
    strips = frame_strips(videos)
    assert strips.shape == (2, 3, 8, 24)
    assert torch.equal(strips[1, :, :, 8:16], videos[1, 1])
    images = torch.rand(2, 3, 8, 8)
    assert frame_strips(images) is images


def test_gif_holds_every_frame(tmp_path):
    import numpy as np
    from PIL import Image, ImageSequence

    video = (torch.arange(4).float() / 3).view(4, 1, 1, 1).expand(4, 3, 8, 8)  # 4 flat grey levels
    write_video(video, tmp_path / "v.gif")
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(tmp_path / "v.gif"))]
    assert [int(f[0, 0, 0]) for f in frames] == [0, 85, 170, 255]
    assert [p.name for p in tmp_path.iterdir()] == ["v.gif"]


def test_mp4_needs_the_video_extra_or_writes_a_file(tmp_path):
    video = torch.rand(4, 3, 16, 16)
    if can_write_mp4():
        write_video(video, tmp_path / "v.mp4")
        assert (tmp_path / "v.mp4").stat().st_size > 0
    else:
        with pytest.raises(FindError, match=r"findcli\[video\]"):
            write_video(video, tmp_path / "v.mp4")
        assert list(tmp_path.iterdir()) == []
