"""Conditional policy by distillation, with its settings chosen on a validation fold of the TRAINING
split only (issue 15, item 3; RESULTS.md §10.2).

Fold: the training prompts that name one of --fold's objects; the network is distilled from the other
training prompts' per-prompt policies (lowpass₂ μ × gain, and log σ) and each arm is judged on the fold
(n images per arm, eval-namespace ε of --eval-seed, paired with N(0, I), the programmatic judge). With
--test FILE it is distilled from every training prompt instead and judged on FILE: run that once, with
the arms the fold chose.

An arm is KIND:GAIN:SIGMA: KIND `slots` (findcli.conditional.SlotConditionalPolicy, the prompt's
token features) or `factor`, a diagnostic that is NOT a text-feature network: it reads the built-in
grammar's parse (relation, each object's colour and shape) and fits
    μ[c, h, w] = Σ_slot M[relation, slot, h, w] · (A[colour] + B[shape])[c] + bias[relation, c, h, w]
to lowpass₂ μ, with σ the template's mean σ (an upper reference for what placing colour codes can do).
GAIN multiplies the fitted μ targets; SIGMA `1` draws with σ = 1, `sig` with the fitted σ. KIND `own`
is no fit: the judged prompt's own per-prompt policy from --policies (the ceiling, judged in the same run).
KIND `t<arch>` (tslots, tmlp, ttokens) is a text-feature network of findcli.conditional distilled not
from the policies but from the `factor` fit's predictions (μ and the template's log σ) on EVERY prompt of
the grammar's position and counting templates that names only objects of the fit prompts, pairs no two
objects that a judged prompt pairs, and is not judged: the parse is needed to make its targets, never to
draw; the network then reads the prompt's text alone (RESULTS.md §10.3).

--write-inits DIR writes the teacher's prediction for each training prompt as a policy file, the start of
`find train PROMPT --init DIR/<slug>.pt` (consistent per-prompt optima, RESULTS.md §10.4); --pupil-gap
replaces the judging by the cosine between each network's coarse μ and the parse-based fit's (for a taught
network, its teacher). --word-features gives the networks context-free token features (RESULTS.md §10.5).

Teacher forms (RESULTS.md §10.6): KIND `factor<form>`, form `sum` (the default, as above), `conv` (a converse
relation is its base with the objects swapped, "A under B" = "B on A": shared masks and bias), `slot` (the
second object's colour and shape codes from tables of their own), `lin` (the code mapped by I + W[relation,
slot]) or `mean` (no object codes: the template's mean coarse μ). Controls without a fit: `ownlp` (the judged
prompt's own policy, coarse μ only), `nn` (the policy of the fitted prompt of the same template that shares most
colours and shapes slot by slot) and `nnres` (that policy plus the teacher's difference between the two
prompts). Each judged arm's per-constraint rates go to the JSON ("constraints"); --save-images DIR keeps a grid of
its first 16 images.

KIND `invert` needs no policy at all: μ = lowpass of the DDIM inversion of a scene the world's renderer draws
for the prompt (guidance 1, the sampler's 20 steps, render seed --render-seed for every prompt), σ =
--invert-sigma; `--teacher invert` teaches the t<arch> arms from it instead of the parse-based fit (§10.6).

--train and --policies take several files / globs: §10.3 fits on the split's 36 training prompts plus
those of conditional_train_extra.txt that have a policy (a training prompt without one is left out
and listed).

    OMP_NUM_THREADS=1 python benchmarks/conditional_fold.py --json fold.json \
        --arms slots:1:1 slots:1:sig slots:1.5:sig slots:1.5:1
    OMP_NUM_THREADS=1 python benchmarks/conditional_fold.py --json test.json \
        --test benchmarks/prompts/conditional_test.txt --arms slots:1:sig factor:1:sig
"""
import argparse
import glob
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from findcli.conditional import WORD_POSITIONS, ConditionalConfig, build_policy, distill, word_features  # noqa: E402
from findcli.shapes import layout_targets  # noqa: E402
from findcli.evaluation import read_suite, slug  # noqa: E402
from findcli.pipeline import Rollout, SamplerSettings, grid, load_runtime  # noqa: E402
from findcli.policy import GaussianPolicy, load_policy, save_policy  # noqa: E402
from findcli.sampling import draw  # noqa: E402
from findcli.shapes import IMAGE_WORLD  # noqa: E402
from findcli.shapes.world import CONVERSE, COUNTS, RELATIONS, parse_prompt  # noqa: E402
from policy_transfer import lowpass  # noqa: E402
from reward_auc import template_specs  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--policies", nargs="+", default=["benchmarks/results/conditional_issue15/session4/per_prompt_policies/*.pt"])
ap.add_argument("--train", nargs="+", default=["benchmarks/prompts/conditional_train.txt"])
ap.add_argument("--fold", default="purple sphere,yellow cube", help="comma list of 'colour shape'")
ap.add_argument("--test", default=None, help="distil from every training prompt and judge this prompt file")
ap.add_argument("--arms", nargs="+", default=["slots:1:1", "slots:1:sig", "slots:1.5:sig", "slots:1.5:1"])
ap.add_argument("--role-rank", type=int, default=8)
ap.add_argument("--bias-rank", type=int, default=4)
ap.add_argument("--steps", type=int, default=2000)
ap.add_argument("--weight-decay", type=float, default=1e-4)
ap.add_argument("--with-words", action="store_true", help="token features: the prompt_embeds each followed by its "
                "token's input (word) embedding, which no context changes (a code can then be the word's alone)")
ap.add_argument("--word-features", action="store_true", help="context-free features instead of the text encoder's: "
                "per token its input (word) embedding and its position from the start and from the end (one-hot, "
                f"{WORD_POSITIONS} each), per prompt the mean word embedding; no encoder layer runs, so a word's code cannot "
                "depend on the words around it (RESULTS.md §10.5)")
ap.add_argument("--teacher", choices=["factor", "invert"], default="factor", help="what the t<arch> arms are taught by")
ap.add_argument("--invert-sigma", type=float, default=0.5, help="`invert` teacher: σ of its policies")
ap.add_argument("--invert-pool", type=int, default=2, help="`invert` teacher: lowpass of the inverted latent (1 = none)")
ap.add_argument("--invert-guidance", type=float, default=1.0, help="`invert` teacher: CFG scale of the inversion")
ap.add_argument("--render-seed", type=int, default=0, help="`invert` teacher: the renderer's seed for every prompt")
ap.add_argument("--n", type=int, default=32)
ap.add_argument("--eval-seed", type=int, default=1)
ap.add_argument("--seed", type=int, default=0, help="initialisation seed of the fit and the networks (0 in §10.2-10.3)")
ap.add_argument("--json", required=False)
ap.add_argument("--save-images", default=None, metavar="DIR", help="also write each judged arm's first 16 images (a grid per prompt and arm)")
ap.add_argument("--write-inits", default=None, metavar="DIR", help="fit the `factor` teacher (gain 1) on the training "
                "prompts, write DIR/<slug>.pt per training prompt (its prediction: μ and the template's σ, or --init-sigma) for "
                "`find train PROMPT --init`, and stop (RESULTS.md §10.4)")
ap.add_argument("--pupil-gap", action="store_true", help="instead of judging, write the cosine between each network's "
                "coarse μ and the parse-based fit's (a taught network's teacher), on the prompts it was fitted or taught "
                "on and on the judged prompts")
ap.add_argument("--init-sigma", type=float, default=None, help="--write-inits: σ of the written policies (default: "
                "the teacher's, the template's mean σ)")
ap.add_argument("--write-teacher-prompts", default=None, metavar="FILE", help="write the prompts the t<arch> arms are "
                "taught on (one per line; with --test, those of the test) to FILE for `find train --prompts FILE "
                "--conditional --teacher layouts`, and stop")
a = ap.parse_args()
bad = [arm for arm in a.arms if arm.startswith("factor") and arm.split(":")[0][len("factor"):] not in ("", "sum", "slot", "lin", "conv", "mean")]
if bad:
    ap.error(f"unknown teacher form in {bad}: factor, factorsum, factorslot, factorlin, factorconv or factormean")
if a.word_features and a.with_words:
    ap.error("--word-features replaces the encoder's token features; --with-words adds to them: give one")
torch.set_num_threads(1)
FOLD_OBJ = {tuple(o.split()) for o in a.fold.split(",") if o.strip()}
ARMS = a.arms
pols = {}
for f in sorted(f for g in a.policies for f in glob.glob(g)):
    if not f.endswith(".ckpt.pt"):
        pf = load_policy(f)
        pols[pf.meta["prompt"]] = pf
train = [p for t in a.train for p, _ in read_suite(t)]
missing = [p for p in train if p not in pols]
if missing:
    print(f"{len(missing)} training prompts have no policy, left out: {missing}", flush=True)
train = [p for p in train if p in pols]
if a.test:
    fit_p, fold_p = train, [p for p, _ in read_suite(a.test)]
else:
    fold_p = [p for p in train if any((o.colour, o.shape) in FOLD_OBJ for o in parse_prompt(p).objects)]
    fit_p = [p for p in train if p not in fold_p]


class Factor:
    """The parse-based diagnostic (see the module docstring): fitted by Adam (3000 steps, lr 0.03, an
    L2 penalty `wd` on every parameter) to gain × lowpass₂ μ of `fit_p`'s policies; σ per prompt = exp
    of the mean log σ of the fitted policies of its template."""

    def __init__(self, fit_p: list[str], gain: float, wd: float = 0.01, steps: int = 3000, form: str = "sum"):
        c, h, w = shape
        self.h, self.w, self.form = h // 2, w // 2, form
        allp = list(pols)
        self.rels = sorted({self.feats(p)[0] for p in allp})
        self.cols = sorted({o[0] for p in allp for o in self.feats(p)[1]})
        self.shps = sorted({o[1] for p in allp for o in self.feats(p)[1]})
        g = torch.Generator().manual_seed(a.seed)
        self.M = (0.1 * torch.randn(len(self.rels), 2, self.h, self.w, generator=g)).requires_grad_()
        self.A = (0.1 * torch.randn(len(self.cols), c, generator=g)).requires_grad_()
        self.B = (0.1 * torch.randn(len(self.shps), c, generator=g)).requires_grad_()
        self.bias = torch.zeros(len(self.rels), c, self.h, self.w, requires_grad=True)
        ps = [self.M, self.A, self.B, self.bias]
        # form "conv": a converse relation is its base with the objects swapped ("A under B" is "B on A"), so
        # the two share masks and bias (twice the prompts each); "slot": the second object's code has its own
        # colour and shape tables (A2, B2), so a code can say which object a place is for; "lin": one code,
        # mapped by (I + W[relation, slot]); "mean": no codes (below)
        self.A2 = (0.1 * torch.randn(len(self.cols), c, generator=g)).requires_grad_()
        self.B2 = (0.1 * torch.randn(len(self.shps), c, generator=g)).requires_grad_()
        self.W = torch.zeros(len(self.rels), 2, c, c, requires_grad=True)
        ps += {"sum": [], "conv": [], "mean": [], "slot": [self.A2, self.B2], "lin": [self.W]}[form]
        if form == "mean":  # no object codes: the template's mean coarse μ (bias) alone
            ps = [self.bias]
        y = torch.stack([gain * torch.nn.functional.avg_pool2d(pols[p].policy.mu.detach().reshape(1, *shape), 2)[0]
                         for p in fit_p])
        opt = torch.optim.Adam(ps, lr=0.03)
        for _ in range(steps):
            pred = torch.stack([self.pred(p) for p in fit_p])
            loss = ((pred - y) ** 2).mean() + wd * sum((q ** 2).mean() for q in ps)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # in sample: the share of the targets' second moment (about 0) the fit explains
            pred = torch.stack([self.pred(p) for p in fit_p])
            self.r2 = 1 - ((pred - y) ** 2).sum().item() / (y ** 2).sum().item()
        per: dict[str, list[float]] = {}
        for p in fit_p:
            per.setdefault(self.feats(p)[0], []).append(pols[p].policy.log_sigma.detach().mean().item())
        self.ls = {k: sum(v) / len(v) for k, v in per.items()}

    @staticmethod
    def feats(p: str):
        s = parse_prompt(p)
        return (s.relation if s.kind == "relation" else f"count{s.count}"), [(o.colour, o.shape) for o in s.objects]

    def pred(self, p: str) -> torch.Tensor:
        rel, objs = self.feats(p)
        if self.form == "conv" and rel in CONVERSE:
            rel, objs = CONVERSE[rel], objs[::-1]
        r = self.rels.index(rel)
        out = self.bias[r]
        if self.form == "mean":
            return out
        for k, (c, s) in enumerate(objs):
            A, B = (self.A2, self.B2) if self.form == "slot" and k == 1 else (self.A, self.B)
            code = A[self.cols.index(c)] + B[self.shps.index(s)]
            if self.form == "lin":
                code = code + self.W[r, k] @ code
            out = out + self.M[r, k][None] * code[:, None, None]
        return out

    def policy(self, prompt: str) -> GaussianPolicy:
        with torch.no_grad():
            mu = torch.nn.functional.interpolate(self.pred(prompt)[None], scale_factor=2, mode="nearest").flatten()
        return GaussianPolicy(shape, mu, torch.full_like(mu, self.ls.get(self.feats(prompt)[0], 0.0)))


class Invert:
    """A teacher that needs no per-prompt policy (RESULTS.md §10.6): μ = gain × lowpass_k of the DDIM
    inversion (the sampler's steps, guidance --invert-guidance) of a scene the world's renderer draws for the
    prompt (render seed --render-seed, the same for every prompt, so a template's layouts line up), σ =
    --invert-sigma everywhere. It reads the parse and the renderer, as `factor` reads the parse; nothing judged."""

    def __init__(self, gain: float):
        self.gain, self.cache, self.pool = gain, {}, a.invert_pool

    def prepare(self, prompts: list[str]) -> None:
        """The inverted z_T of each prompt not yet cached: findcli.shapes.layouts.layout_targets at pool 1
        (no lowpass), the library's teacher (`find train --conditional --teacher layouts`)."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if todo:
            z, _ = layout_targets(pipe, todo, sigma=1.0, pool=1, render_seed=a.render_seed, steps=SamplerSettings().steps,
                                  guidance=a.invert_guidance)
            self.cache.update(zip(todo, z))

    def policy(self, prompt: str) -> GaussianPolicy:
        self.prepare([prompt])
        mu = self.gain * lowpass(self.cache[prompt], shape, self.pool)
        return GaussianPolicy(shape, mu, torch.full_like(mu, math.log(a.invert_sigma)))


def teacher_prompts(fit_p: list[str], judged: list[str]) -> list[str]:
    """Every position/counting prompt of the grammar (reward_auc.template_specs) on the fit prompts'
    objects, leaving out the judged prompts and any pair of objects a judged prompt puts together (see the
    docstring); relations first, then counts object by object."""
    seen = {o for p in fit_p for o in parse_prompt(p).objects}
    pairs = {frozenset(parse_prompt(p).objects) for p in judged if parse_prompt(p).kind == "relation"}
    t = template_specs()
    objs = {o: i for i, o in enumerate(s.objects[0] for s in t["count 2"])}  # the grammar's object order
    counts = sorted((s for k in sorted(COUNTS.values()) for s in t[f"count {k}"]),
                    key=lambda s: (objs[s.objects[0]], s.count))
    specs = [s for r in RELATIONS for s in t[r]] + counts
    skip = set(judged)
    return [s.caption() for s in specs if set(s.objects) <= seen and s.caption() not in skip
            and not (s.kind == "relation" and frozenset(s.objects) in pairs)]


shape = tuple(pols[train[0]].policy.latent_shape)
if a.write_teacher_prompts:
    synth = teacher_prompts(fit_p, fold_p)
    Path(a.write_teacher_prompts).write_text("".join(f"{q}\n" for q in synth))
    print(f"wrote {len(synth)} teacher prompts to {a.write_teacher_prompts}")
    sys.exit(0)
if a.write_inits:  # the teacher's prediction for each training prompt, as a policy file `find train --init` reads
    teacher, out = Factor(train, 1.0), Path(a.write_inits)
    out.mkdir(parents=True, exist_ok=True)
    for p in train:
        pol = teacher.policy(p)
        ls = pol.log_sigma if a.init_sigma is None else torch.full_like(pol.mu, math.log(a.init_sigma))
        save_policy(out / f"{slug(p)}.pt", GaussianPolicy(shape, pol.mu, ls),
                    dict(pols[p].meta, init_of="conditional_fold.py --write-inits", fit_on=len(train), seed=a.seed))
    print(f"wrote {len(train)} initial policies to {out}; the fit explains {teacher.r2:.3f} of the coarse μ's "
          "second moment")
    sys.exit(0)
if not a.json:
    ap.error("--json is required (unless --write-inits)")
print(f"fit on {len(fit_p)}, judge {len(fold_p)}", flush=True)
_, _, pipe, _ = load_runtime(None, "auto")
synth = teacher_prompts(fit_p, fold_p) if any(arm.startswith("t") for arm in ARMS) else []
if synth:
    print(f"teacher prompts: {len(synth)}", flush=True)
ro = {p: Rollout(pipe, p, SamplerSettings()) for p in dict.fromkeys(fit_p + fold_p + synth)}
with torch.no_grad():
    text = {p: ro[p].text_features().float() for p in ro}
    toks = {p: ro[p].token_text().float() for p in ro}
    if a.word_features:  # context-free: the tokenizer's ids, the input embedding table, and positions
        cf = {p: word_features(pipe, p) for p in ro}
        text, toks = {p: cf[p][0] for p in ro}, {p: cf[p][1] for p in ro}
    if a.with_words:
        def words(p: str) -> torch.Tensor:
            ids = pipe.tokenizer(p, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                                 return_tensors="pt").input_ids
            return pipe.text_encoder.get_input_embeddings()(ids)[0].float()
        toks = {p: torch.cat([toks[p], words(p)], dim=-1) for p in ro}
res = {"seed": a.seed, "teacher_prompts": len(synth), "policies": a.policies, "train": a.train, "missing": missing,
       "n": a.n, "eval_seed": a.eval_seed, "fold": sorted(" ".join(o) for o in FOLD_OBJ), "test": a.test,
       "role_rank": a.role_rank, "bias_rank": a.bias_rank, "with_words": a.with_words,
       "word_features": a.word_features, "teacher": a.teacher, "invert_sigma": a.invert_sigma,
       "invert_pool": a.invert_pool, "invert_guidance": a.invert_guidance, "render_seed": a.render_seed, "fit": fit_p, "judged": fold_p, "arms": ARMS,
       "per_prompt": {}}
nets = {}
for arm in ARMS:
    kind, gain, _ = arm.split(":")
    if (kind, gain) in nets or kind in ("own", "ownlp", "nn", "nnres"):
        continue
    if kind.startswith("factor"):
        nets[(kind, gain)] = Factor(fit_p, float(gain), form=kind[len("factor"):] or "sum")
        res.setdefault("factor_r2", {})[gain] = nets[(kind, gain)].r2
        print(arm, f"fitted, explains {nets[(kind, gain)].r2:.3f}", flush=True)
        continue
    if kind == "invert":
        nets[(kind, gain)] = Invert(float(gain))
        continue
    pool = 2
    if kind.startswith("t"):  # distilled from the teacher (--teacher) on every allowed prompt of the grammar
        tk = "factor" if a.teacher == "factor" else "invert"
        teacher = nets.get((tk, gain)) or (Factor(fit_p, float(gain)) if tk == "factor" else Invert(float(gain)))
        nets[(tk, gain)] = teacher
        arch, src = kind[1:], synth
        if tk == "invert":
            pool = a.invert_pool
            t0 = time.perf_counter()
            teacher.prepare(src)
            print(f"inverted {len(src)} rendered scenes in {time.perf_counter() - t0:.0f} s", flush=True)
        with torch.no_grad():
            tp = {q: teacher.policy(q) for q in src}
        mu = torch.stack([lowpass(tp[q].mu.detach().flatten(), shape, pool) for q in src])
        ls = torch.stack([tp[q].log_sigma.detach().flatten() for q in src])
    else:
        arch, src = kind, fit_p
        mu = torch.stack([float(gain) * lowpass(pols[q].policy.mu.detach().flatten(), shape, 2) for q in src])
        ls = torch.stack([pols[q].policy.log_sigma.detach().flatten() for q in src])
    cfg = ConditionalConfig(arch=arch, pool=pool, role_rank=a.role_rank, bias_rank=a.bias_rank)
    T = torch.stack([text[q] for q in src])
    K = torch.stack([toks[q] for q in src])
    torch.manual_seed(a.seed)
    net = build_policy(cfg, shape, "CHW", T, K)
    t0 = time.perf_counter()
    curve = distill(net, T, mu, ls, steps=a.steps, weight_decay=a.weight_decay, seed=a.seed, tokens=K)
    print(arm, f"fit {curve[0]:.4f} -> {curve[-1]:.4f} in {time.perf_counter() - t0:.0f} s", flush=True)
    nets[(kind, gain)] = net.eval()
if a.pupil_gap:  # how closely each taught network reproduces its teacher's coarse μ, on its own and on judged prompts
    with torch.no_grad():
        for arm in ARMS:
            kind, gain, _ = arm.split(":")
            if kind.startswith("factor") or kind in ("own", "ownlp", "nn", "nnres", "invert"):
                continue
            # a network fitted to the policies directly is compared with the parse-based fit all the same
            tk = "invert" if kind.startswith("t") and a.teacher == "invert" else "factor"
            if (tk, gain) not in nets:
                nets[(tk, gain)] = Factor(fit_p, float(gain)) if tk == "factor" else Invert(float(gain))
            teacher, pool = nets[(tk, gain)], (a.invert_pool if tk == "invert" else 2)
            net = nets[(kind, gain)]
            gap = {}
            own = ("teacher_prompts", synth) if kind.startswith("t") else ("fit", fit_p)
            for name, ps in (own, ("judged", fold_p)):
                cos = [torch.nn.functional.cosine_similarity(
                    lowpass(net.policy_for(text[q], toks[q]).mu.detach().flatten(), shape, pool),
                    lowpass(teacher.policy(q).mu.detach().flatten(), shape, pool), dim=0).item() for q in ps]
                gap[name] = {"mean_cos": sum(cos) / len(cos), "min_cos": min(cos)}
                if name == "judged":
                    gap[name]["per_prompt"] = dict(zip(ps, cos))
            res.setdefault("pupil_gap", {})[arm] = gap
            print(arm, {k: {m: round(x, 3) for m, x in v.items() if m != "per_prompt"} for k, v in gap.items()}, flush=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    sys.exit(0)
st = SamplerSettings()
nn_of: dict[str, str] = {}


def nearest(p: str) -> str:
    """The fitted prompt of p's template whose objects agree most with p's, slot by slot (colour and shape one
    point each; ties: the first in fit order)."""
    rel, objs = Factor.feats(p)
    cands = [q for q in fit_p if Factor.feats(q)[0] == rel]
    return max(cands, key=lambda q: sum((x[0] == y[0]) + (x[1] == y[1]) for x, y in zip(objs, Factor.feats(q)[1])))


def judged(p: str, pol: GaussianPolicy | None, arm_name: str = "base") -> tuple[float, dict[str, float]]:
    """success_rate's number; also keeps each constraint's rate (res["constraints"][p][arm])."""
    d = draw(pipe, p, st, a.eval_seed, a.n, pol, baseline=pol is None)
    ims = d.baseline_images if pol is None else d.policy_images
    ok, per = IMAGE_WORLD.judge_images(ims, p)
    if a.save_images:  # the first 16 images, a grid per prompt and arm
        Path(a.save_images).mkdir(parents=True, exist_ok=True)
        grid(ims[:16].float().cpu(), 8).save(Path(a.save_images) / f"{slug(p)}__{arm_name}.png")
    return float(ok.float().mean()), {k: float(v.float().mean()) for k, v in per.items()}


for p in fold_p:
    r, cons = {}, {}
    r["base"], cons["base"] = judged(p, None)
    for arm in ARMS:
        kind, gain, sig = arm.split(":")
        if kind == "own":
            pol = pols[p].policy
        elif kind in ("nn", "nnres"):  # the nearest fitted prompt of the same template, its policy as is, or
            # corrected by the teacher's difference between the two prompts (the parse picks the neighbour)
            q = nearest(p)
            nn_of[p] = q
            pol = pols[q].policy
            if kind == "nnres":
                t = nets.get(("factor", gain)) or Factor(fit_p, float(gain))
                nets[("factor", gain)] = t
                with torch.no_grad():
                    pol = GaussianPolicy(shape, pol.mu.detach() + t.policy(p).mu - t.policy(q).mu, pol.log_sigma.detach())
        elif kind == "ownlp":  # its coarse μ alone (the teacher's target), its own σ
            pol = GaussianPolicy(shape, lowpass(pols[p].policy.mu.detach().flatten(), shape, 2), pols[p].policy.log_sigma)
        else:
            net = nets[(kind, gain)]
            pol = net.policy(p) if kind.startswith("factor") or kind == "invert" else net.policy_for(text[p], toks[p])
        if sig == "1":
            pol = GaussianPolicy(shape, pol.mu.detach().clone(), torch.zeros_like(pol.mu))
        r[arm], cons[arm] = judged(p, pol, arm.replace(":", "_"))
    res["per_prompt"][p] = r
    res.setdefault("constraints", {})[p] = cons
    if p in nn_of:
        res.setdefault("nearest", {})[p] = nn_of[p]
    print(p, r, flush=True)
    res["summary"] = {k: sum(v[k] for v in res["per_prompt"].values()) / len(res["per_prompt"]) for k in r}
    Path(a.json).write_text(json.dumps(res, indent=1))
print("SUMMARY", res["summary"])
