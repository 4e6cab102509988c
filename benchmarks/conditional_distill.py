"""Conditional policy by distillation (issue 15, item 3, a second route): fit the prompt-conditioned
network to per-prompt FIND policies already trained (regression of (μ, log σ) on the text feature,
`findcli.conditional.distill`) and write it as a conditional policy file; evaluate it on held-out
prompts with `benchmarks/conditional.py --policy`, exactly as the FIND-objective one.

    OMP_NUM_THREADS=1 python benchmarks/conditional_distill.py --policies "runs/pp/*.pt" --train TRAIN_FILE \
        --exclude-objects "blue pyramid,green sphere,blue sphere,green cube" --out runs/cond/distill.pt
    OMP_NUM_THREADS=1 python benchmarks/conditional.py --policy runs/cond/distill.pt \
        --test benchmarks/prompts/conditional_test.txt --n 32 --eval-seed 1 --json runs/cond/distill.json
"""
from __future__ import annotations

import argparse
import glob
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", required=True, help="glob of per-prompt policy files")
    ap.add_argument("--exclude-objects", default="", help="comma list of 'colour shape': skip policies naming one")
    ap.add_argument("--train", default=None, help="prompt file: use only the policies of its prompts (so that no "
                    "test prompt's policy is fitted, whatever objects it names)")
    ap.add_argument("--arch", default="mlp", choices=["mlp", "tokens", "slots"], help="the network (ConditionalConfig.arch)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--lowpass", type=int, default=1, help="fit μ averaged over K×K latent cells (the coarse layout "
                    "policy_transfer.py finds carries most of the gain); 1: μ as trained")
    ap.add_argument("--sigma-one", action="store_true", help="fit μ only, σ = 1 (learn_sigma false)")
    ap.add_argument("--mu-gain", type=float, default=1.0, help="fit gain × μ: a regression onto several prompts' "
                    "optima shrinks toward their mean, and the gain undoes it (choose it on a validation fold)")
    ap.add_argument("--set", nargs="*", default=[], help="ConditionalConfig overrides, e.g. role_rank=4")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="runs/cond/distill.pt")
    a = ap.parse_args()
    from findcli import shapes
    from findcli.evaluation import read_suite
    from findcli.conditional import TOKEN_ARCHS, ConditionalConfig, build_policy, distill, prompt_tokens, save_conditional
    from findcli.pipeline import Rollout, SamplerSettings, load_runtime
    from findcli.policy import load_policy
    from findcli.shapes.world import parse_prompt
    from policy_transfer import lowpass

    _, _, pipe, _ = load_runtime(None, "auto")
    allowed = {p for p, _ in read_suite(a.train)} if a.train else None
    excl = {tuple(o.split()) for o in a.exclude_objects.split(",") if o.strip()}
    files, prompts, mus, lss, shape = [], [], [], [], None
    for f in sorted(glob.glob(a.policies)):
        if f.endswith(".ckpt.pt"):
            continue
        pf = load_policy(f)
        if allowed is not None and pf.meta["prompt"] not in allowed:
            continue
        if any((o.colour, o.shape) in excl for o in parse_prompt(pf.meta["prompt"]).objects):
            continue
        files.append(f)
        prompts.append(pf.meta["prompt"])
        shape = tuple(pf.policy.latent_shape)
        mu = pf.policy.mu.detach().flatten()
        mus.append(a.mu_gain * (lowpass(mu, shape, a.lowpass) if a.lowpass > 1 else mu))
        lss.append(torch.zeros_like(mu) if a.sigma_one else pf.policy.log_sigma.detach().flatten())
    rollouts = [Rollout(pipe, p, SamplerSettings()) for p in prompts]
    with torch.no_grad():
        text = torch.stack([r.text_features().float() for r in rollouts])
        tokens = prompt_tokens(rollouts, "cpu") if a.arch in TOKEN_ARCHS else None
    cfg = ConditionalConfig(arch=a.arch, rank=a.rank, pool=a.pool, learn_sigma=not a.sigma_one)
    for kv in a.set:
        k, v = kv.split("=", 1)
        setattr(cfg, k, type(getattr(cfg, k))(v))
    torch.manual_seed(0)
    pol = build_policy(cfg, shape, rollouts[0].latent_layout, text, tokens)
    pol.set_learn_sigma(cfg.learn_sigma)
    t0 = time.perf_counter()
    curve = distill(pol, text, torch.stack(mus), torch.stack(lss), steps=a.steps, weight_decay=a.weight_decay,
                    tokens=tokens)
    meta = {"model": shapes.MODEL_ID, "steps": 20, "guidance": 7.5, "eta": 0.0, "prompts": prompts,
            "distilled_from": files, "config": cfg.__dict__, "mu_gain": a.mu_gain, "fit_s": round(time.perf_counter() - t0, 1), "fit_loss": [curve[0], curve[-1]]}
    save_conditional(a.out, pol.eval(), meta)
    print(f"distilled {len(files)} policies: MSE {curve[0]:.4f} -> {curve[-1]:.6f} in {meta['fit_s']} s; wrote {a.out}")


if __name__ == "__main__":
    main()
