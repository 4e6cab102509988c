"""What a training run writes beside its policy, named after it (OUT.pt -> OUT.metrics.jsonl, ...):
the metrics log, the reward curve, and the before/after picture. Two runs with different --out in
one folder never overwrite each other's files. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from findcli import atomic

SIDE_FILES = ("metrics", "reward_curve", "before_after")
_SUFFIX = {"metrics": ".metrics.jsonl", "reward_curve": ".reward_curve.png", "before_after": ".before_after.png"}


def side_file(out: str | Path, name: str) -> Path:
    """The side file `name` (metrics, reward_curve, before_after) of the policy `out`."""
    out = Path(out)
    return out.with_name(out.stem + _SUFFIX[name])


def write_metrics(metrics: list[dict], path: Path) -> str:
    atomic.write_text(path, "".join(json.dumps(m) + "\n" for m in metrics))
    return str(path)


def write_reward_curve(metrics: list[dict], path: Path, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in metrics if not m.get("skipped")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        it = [m["iteration"] for m in rows]
        ax.fill_between(it, [m["reward_min"] for m in rows], [m["reward_max"] for m in rows], alpha=0.25,
                        label="batch min–max")
        ax.plot(it, [m["reward_mean"] for m in rows], label="batch mean")
        vrows = [m for m in rows if m.get("value_reward") is not None]
        if vrows:
            ax.plot([m["iteration"] for m in vrows], [m["value_reward"] for m in vrows], "--", label="value net V")
    handles, labels = ax.get_legend_handles_labels()
    crows = [m for m in rows if m.get("check_mean") is not None]
    vals = [m for m in metrics if m.get("validation_score") is not None]
    if crows or vals:  # the check reward (never in the gradient) and the --keep best validation scores
        ax2 = ax.twinx()
        if crows:
            ax2.plot([m["iteration"] for m in crows], [m["check_mean"] for m in crows], color="tab:red",
                     label="check reward (batch mean)")
        if vals:  # the start's score (before iteration 1) at x = 0, then one point per validation
            start = [(0, metrics[0]["start_validation_score"])] if "start_validation_score" in metrics[0] else []
            pts = start + [(m["iteration"] + 1, m["validation_score"]) for m in vals]
            ax2.plot([x for x, _ in pts], [y for _, y in pts], "o:", color="tab:green", label="validation draw score")
        ax2.set_ylabel("check / validation score")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    ax.set_title(title[:80], fontsize=9)
    ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    atomic.write_with(path, lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    return str(path)


def write_before_after(before, after, r_before, r_after, path: Path, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from findcli.pipeline import frame_strips

    before, after = frame_strips(before), frame_strips(after)  # videos: a strip of frames per sample
    n = before.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.4), squeeze=False)
    for row, (imgs, rs, name) in enumerate([(before, r_before, "N(0, I)"), (after, r_after, "FIND")]):
        for j in range(n):
            ax = axes[row][j]
            ax.imshow(imgs[j].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            ax.set_title(f"{name}  r={float(rs[j]):.3f}", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{title[:80]}\n(same ε per column)", fontsize=8)
    fig.tight_layout()
    atomic.write_with(path, lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    return str(path)


