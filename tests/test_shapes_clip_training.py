"""The reward CLIP's training batches (findcli.shapes.training.clip): what each batch claims about its images
is checked by the programmatic judge, which shares no code with the batch builder."""

import torch

from findcli.shapes.training import clip as T
from findcli.shapes.judge import judge_each
from findcli.shapes.world import Spec, hard_negatives, parse_prompt, render


def test_mirrored_scene_with_left_and_right_swapped_is_judged_true():
    """Oracle: the judge. A rendered "A to the left of B" mirrored is an "A to the right of B".

    Spheres and pyramids only: a mirrored cube shows its depth face on the other side, which the
    renderer never draws and the judge (rightly) does not call a cube."""
    specs = [parse_prompt(p) for p in ["a red pyramid to the left of a blue sphere", "a green pyramid to the right of a white sphere"]] * 40
    g = torch.Generator().manual_seed(0)
    x = render(specs, g, size=64).flip(-1)
    swapped = [parse_prompt(T.swap_left_right(s.caption())) for s in specs]
    assert [s.relation for s in swapped[:2]] == ["to the right of", "to the left of"]
    ok, _ = judge_each(x, swapped)
    assert ok.float().mean().item() >= 0.98
    ok_orig, _ = judge_each(x, specs)
    assert ok_orig.float().mean().item() <= 0.02  # and the unswapped caption is now false


def test_swap_left_right_leaves_other_captions_alone():
    for c in ["a red cube on a blue sphere", "three purple spheres", "a red cube next to a blue sphere"]:
        assert T.swap_left_right(c) == c
    assert T.swap_left_right(T.swap_left_right("a red cube to the left of a blue sphere")) == "a red cube to the left of a blue sphere"


def test_flip_in_batch_swaps_every_caption_of_a_mirrored_scene_together():
    """Each scene's k+1 captions are either all swapped or none: the true caption stays true."""
    g = torch.Generator().manual_seed(1)
    k = 4
    imgs, texts = T.clip_batch(96, k, g, relation_share=1.0, structural=2, flip=0.5)
    specs = [parse_prompt(texts[i * (1 + k)]) for i in range(96)]
    no_cube = [i for i, s in enumerate(specs) if all(o.shape != "cube" for o in s.objects)]  # see above
    assert len(no_cube) >= 20
    ok, _ = judge_each(imgs[no_cube], [specs[i] for i in no_cube])
    assert ok.float().mean().item() >= 0.98


def test_structural_negatives_come_first_keep_the_objects_and_change_the_meaning():
    g = torch.Generator().manual_seed(2)
    k = 6
    _, texts = T.clip_batch(40, k, g, relation_share=0.5, structural=3)
    checked = 0
    for i in range(40):
        spec = parse_prompt(texts[i * (1 + k)])
        negs = [parse_prompt(t) for t in texts[i * (1 + k) + 1 : (i + 1) * (1 + k)]]
        available = [x for x in hard_negatives(spec, torch.Generator().manual_seed(0), 10_000) if T.is_structural(spec, x)]
        first = negs[: min(3, len(available))]
        for n in first:
            assert n.meaning() != spec.meaning()
            assert sorted(o.phrase() for o in n.objects) == sorted(o.phrase() for o in spec.objects)
            checked += 1
    assert checked >= 40  # relation and count scenes all have structural swaps


def test_relation_share_sets_the_fraction_of_relation_scenes():
    g = torch.Generator().manual_seed(3)
    specs = T.clip_specs(64, g, relation_share=0.75)
    assert sum(s.kind == "relation" for s in specs) == 48


def test_augmentation_without_vae_keeps_colours_and_relations_true_for_the_judge():
    """Oracle: the judge. The warp and blur must not move objects across each other or change a
    colour. The judge's shape classifier is tuned to clean renders and often does not recognise a
    sheared shape (that is the point of the augmentation: the generator's shapes are sheared too), so
    the relation is checked on the scenes where the judge finds both objects."""
    g = torch.Generator().manual_seed(4)
    specs = T.clip_specs(200, g, relation_share=0.5)
    x = render(specs, g, size=64)
    y = T.augment(x, g, 1.0, vae=None)
    assert not torch.equal(x, y)
    _, per = judge_each(y, specs)
    assert sum(p["colour"] for p in per) >= 0.99 * len(per)
    found = [p for s, p in zip(specs, per) if s.kind == "relation" and p["objects_present"]]
    assert len(found) >= 40
    assert sum(p["relation"] for p in found) >= 0.95 * len(found)


def test_pool_scenes_replace_the_first_share_of_the_batch():
    g = torch.Generator().manual_seed(5)
    pool_specs = [Spec("single", (parse_prompt("a white cube").objects[0],))] * 4
    pool_imgs = torch.full((4, 3, 64, 64), 7, dtype=torch.uint8)
    imgs, texts = T.clip_batch(8, 2, g, pool=(pool_specs, pool_imgs), pool_share=0.5)
    assert texts[0::3][:4] == ["a white cube"] * 4
    assert torch.allclose(imgs[:4], torch.full_like(imgs[:4], 7 / 255))
    assert not torch.allclose(imgs[4:], torch.full_like(imgs[4:], 7 / 255))
