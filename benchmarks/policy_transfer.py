"""Do per-prompt FIND policies share structure a prompt-conditioned network could learn? (issue 15)

For per-prompt policies grouped by template (same relation, or counts), each policy is evaluated on
every prompt of its group (a transfer matrix: row = the prompt judged, column = the policy drawn
from), and on its own prompt in three reduced forms:
  sigma1   N(μ, I): the learned mean without the learned σ
  lp2      N(lowpass2(μ), I): μ averaged over 2×2 latent cells (the coarse layout only), σ = 1
  lp4      the same over 4×4 cells
Paired against N(0, I) on the same eval-namespace ε (seed --eval-seed), judged by the programmatic
judge (analysis only: nothing here trains).

    OMP_NUM_THREADS=1 python benchmarks/policy_transfer.py --policies 'runs/pp/out/*.pt' \
        --train benchmarks/prompts/conditional_train.txt --per-group 4 --n 32 --json transfer.json
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import torch


from findcli.shapes.layouts import lowpass  # noqa: E402,F401 - μ averaged over k×k latent cells (the scripts here import it from this module)


def group_of(prompt: str) -> str:
    from findcli.shapes.world import parse_prompt

    spec = parse_prompt(prompt)
    return spec.relation if spec.kind == "relation" else spec.kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", required=True, help="glob of per-prompt policy files")
    ap.add_argument("--train", required=True, help="prompt file: only its prompts' policies are used")
    ap.add_argument("--per-group", type=int, default=4)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--eval-seed", type=int, default=1)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    from findcli import atomic
    from findcli.evaluation import read_suite, success_rate
    from findcli.pipeline import SamplerSettings, load_runtime
    from findcli.policy import GaussianPolicy, load_policy

    wanted = {p for p, _ in read_suite(a.train)}
    pols = {}
    for f in sorted(glob.glob(a.policies)):
        if not f.endswith(".ckpt.pt"):
            pf = load_policy(f)
            if pf.meta["prompt"] in wanted:
                pols[pf.meta["prompt"]] = pf
    groups: dict[str, list[str]] = {}
    for p in pols:
        groups.setdefault(group_of(p), []).append(p)
    _, _, pipe, _ = load_runtime(None, "auto")
    settings = SamplerSettings()

    def success(prompt: str, policy: GaussianPolicy | None) -> float:  # policy None: N(0, I), the same ε
        return success_rate(pipe, prompt, settings, a.eval_seed, a.n, policy)

    out: dict = {"n": a.n, "eval_seed": a.eval_seed, "groups": {}}
    for g, prompts in sorted(groups.items()):
        prompts = prompts[:a.per_group]
        rows, own = [], {}
        for pi in prompts:
            base = success(pi, None)
            row = [success(pi, pols[pj].policy) for pj in prompts]
            pol = pols[pi].policy
            shape, mu = tuple(pol.latent_shape), pol.mu.detach()
            zero = torch.zeros_like(mu)
            own[pi] = {"base": base, "own": row[prompts.index(pi)],
                       **{name: success(pi, GaussianPolicy(shape, m.clone(), zero.clone()))
                          for name, m in (("sigma1", mu), ("lp2", lowpass(mu, shape, 2)), ("lp4", lowpass(mu, shape, 4)))}}
            rows.append(row)
            print(g, pi, own[pi], row, flush=True)
        k = len(prompts)
        off = [rows[i][j] for i in range(k) for j in range(k) if i != j]
        out["groups"][g] = {"prompts": prompts, "matrix": rows, "own": own,
                            "mean_own": sum(rows[i][i] for i in range(k)) / k,
                            "mean_other": sum(off) / max(len(off), 1),
                            "mean_base": sum(own[p]["base"] for p in prompts) / k}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(a.json, json.dumps(out, indent=1))
    allp = [v for g in out["groups"].values() for v in g["own"].values()]
    out["summary"] = {k: sum(v[k] for v in allp) / len(allp) for k in ("base", "own", "sigma1", "lp2", "lp4")}
    out["summary"]["other"] = (sum(g["mean_other"] * len(g["prompts"]) for g in out["groups"].values())
                               / sum(len(g["prompts"]) for g in out["groups"].values()))
    atomic.write_text(a.json, json.dumps(out, indent=1))
    print(json.dumps(out["summary"]))


if __name__ == "__main__":
    main()
