"""Disjoint noise by construction: training, eval, sample, validation and picture draws never share ε,
and with eta > 0 an image does not depend on how the batch is chunked (--max-batch).

Oracles: exhaustive comparison of the seeds (and of the ε tensors themselves) over ranges of user
seeds and iterations; the same images computed one per pipeline call.
"""

import itertools

import torch

from findcli.engine import iteration_seed
from findcli.pipeline import Rollout, SamplerSettings, load_pipeline
from findcli.policy import prior_noise
from findcli.seeds import PURPOSES, noise_seed

PROMPT = "a red cube on a blue sphere"


def test_no_eval_seed_equals_a_training_seed_for_any_pair_of_small_seeds():
    train = {iteration_seed(s, i) for s in range(50) for i in range(400)}
    assert len(train) == 50 * 400  # distinct within training too
    for purpose in ("eval", "sample", "validation", "before_after", "bench"):
        others = {noise_seed(purpose, s) for s in range(-100, 5000)}
        assert not (train & others), purpose
    # the namespaces are pairwise disjoint
    for p, q in itertools.combinations([p for p in PURPOSES if p != "train"], 2):
        assert not ({noise_seed(p, s) for s in range(2000)} & {noise_seed(q, s) for s in range(2000)}), (p, q)


def test_the_old_overlap_is_gone_eval_eps_differs_from_every_training_eps():
    """The bug: training seed 0, iteration i drew ε from seed i, and `find eval --seed e` from seed e."""
    shape = (4, 4, 4)
    train = torch.cat([prior_noise(shape, iteration_seed(0, i), 4) for i in range(40)]).flatten(1)  # (160, D)
    for e in range(8):
        ev = prior_noise(shape, noise_seed("eval", e), 16).flatten(1)
        assert not any(torch.equal(a, b) for a in ev for b in train), e


def test_seeds_accept_any_python_int_and_stay_63_bit():
    for s in (0, -1, 2**70, 99999999999999999999999):
        v = noise_seed("eval", s)
        assert 0 <= v < 2**63
    assert noise_seed("eval", 1) != noise_seed("eval", 2)
    assert noise_seed("train", 3, 5) == iteration_seed(3, 5)


def test_with_eta_the_images_do_not_depend_on_max_batch(tiny_pipeline_dir):
    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    settings = SamplerSettings(steps=3, guidance=3.0, eta=1.0)
    z = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    one = torch.cat([Rollout(pipe, PROMPT, settings, max_batch=1)(z, seed=11)])
    # each image on its own call, with the seed its index gets: the oracle for any chunking
    for mb in (2, 16):
        torch.testing.assert_close(Rollout(pipe, PROMPT, settings, max_batch=mb)(z, seed=11), one, rtol=0, atol=1e-5)
    # and the step noise matters (so the comparison above is not between noiseless runs)
    other = Rollout(pipe, PROMPT, settings, max_batch=16)(z, seed=12)
    assert (other - one).abs().max() > 1e-2
