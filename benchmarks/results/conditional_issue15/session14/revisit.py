"""FIND with revisits from the distilled fold network: the 25 non-fold training prompts, all of them at every
iteration (K = 4), tune=layout, KL 1 to the start; judged on the 11 fold prompts with find eval."""
import json, sys, torch
from findcli.conditional import ConditionalConfig, load_conditional, save_conditional, train_conditional, conditional_meta
from findcli.evaluation import read_suite
from findcli.pipeline import load_runtime
from findcli.training import build_reward, default_reward
torch.set_num_threads(1)
tag, its = sys.argv[1], int(sys.argv[2])
extra = dict(a.split("=") for a in sys.argv[3:])
dev, _, pipe, _ = load_runtime(None, "cpu")
fold = {p for p, _ in read_suite("runs/r4/fold_judged.txt")}
train = [p for p, _ in read_suite("benchmarks/prompts/conditional_train.txt") if p not in fold]
print(len(train), "FIND prompts", flush=True)
net, meta = load_conditional("runs/r4/fd0.pt")
cfg = ConditionalConfig(**{**meta["config"], "iterations": its, "prompts_per_iteration": len(train), "batch": 4,
                           "tune": "layout", "kl_to": "start", "kl_weight": 1.0, "net_lr": 1e-3,
                           **{k: type(getattr(ConditionalConfig(), k))(v) for k, v in extra.items()}})
reward, _ = build_reward(default_reward(None), None, None, dev)
res = train_conditional(pipe, train, reward, cfg, lambda m: print(m["iteration"], round(m["reward_mean"], 3), round(m["sigma_mean"], 3), flush=True), init=net)
save_conditional(f"runs/r4/{tag}.pt", res.policy, {**meta, "config": cfg.__dict__, "revisit_prompts": train, "train_images": res.images})
print("done", res.images, round(res.wall_s))
