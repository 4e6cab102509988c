import json
import sys

import torch
from findcli import shapes
from findcli.conditional import ConditionalConfig, train_conditional
from findcli.pipeline import load_runtime
from findcli.training import build_reward
torch.set_num_threads(1)
dev, _, pipe, _ = load_runtime(None, "cpu")
reward, _ = build_reward("find-shapes-detector", None, None, dev)
train = [p for c, p in shapes.load_suite("benchmarks/prompts/conditional_train.txt") if c == "position"][::4][:6]
print(train, flush=True)
for spec in sys.argv[1:]:
    kw = dict(kv.split("=") for kv in spec.split(","))
    cfg = ConditionalConfig(iterations=20, prompts_per_iteration=6, batch=8, **{k: float(v) for k, v in kw.items()})
    res = train_conditional(pipe, train, reward, cfg)
    per = {}
    for m in res.metrics:
        per.setdefault("all", []).append(m["reward_mean"])
    r = per["all"]
    print(json.dumps({"cfg": kw, "first5": round(sum(r[:5])/5, 4), "last5": round(sum(r[-5:])/5, 4), "curve": [round(x, 3) for x in r],
                      "mu": round(res.metrics[-1]["mu_norm_mean"], 3), "sigma": round(res.metrics[-1]["sigma_mean"], 3), "s": round(res.wall_s)}), flush=True)
