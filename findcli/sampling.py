"""Drawing images from a learned policy, paired with N(0, I) on the same ε, and comparing the two."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from findcli.pipeline import Rollout, SamplerSettings
from findcli.policy import GaussianPolicy


@dataclass
class Draw:
    policy_images: torch.Tensor | None  # (N, 3, H, W) in [0, 1] from z = μ + σ ⊙ ε
    baseline_images: torch.Tensor | None  # (N, 3, H, W) in [0, 1] from z = ε (same ε)


def settings_from_meta(meta: dict, steps: int | None = None, guidance: float | None = None,
                       height: int | None = None, width: int | None = None, frames: int | None = None,
                       scheduler: str | None = None, source: str = "the policy") -> SamplerSettings:
    """The sampler a policy was trained with (its metadata; defaults 20 steps, CFG 7.5, eta 0, the
    model's size when there is no policy), with --steps/--guidance overriding; every number checked
    (findcli.limits). A policy's size is its own: another --height/--width/--frames is an error."""
    from findcli import limits
    from findcli.errors import FindError

    limits.check_all({"steps": steps, "guidance": guidance, "height": height, "width": width, "frames": frames})
    for name, given in (("height", height), ("width", width), ("frames", frames)):
        if given is not None and meta.get(name) is not None and given != meta[name]:
            raise FindError(f"{source} was trained at --{name} {meta[name]}; it cannot sample at --{name} {given} "
                            "(its latent has that size): drop the option or train a policy at that size")
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return SamplerSettings(steps if steps is not None else meta.get("steps", 20),
                           guidance if guidance is not None else meta.get("guidance", 7.5),
                           meta.get("eta", 0.0), height or meta.get("height"), width or meta.get("width"),
                           frames or meta.get("frames"), scheduler or config.get("scheduler", "auto"))


def draw(pipe, prompt: str, settings: SamplerSettings, seed: int, n: int, policy: GaussianPolicy | None,
         baseline: bool, max_batch: int = 16, purpose: str = "eval") -> Draw:
    """One rollout per requested arm. ε is the noise `policy.sample(s, n)` uses with s the seed of
    `purpose`'s namespace (findcli.seeds: eval, sample, ...; never the training noise), so arms are paired."""
    from findcli.pipeline import latent_shape
    from findcli.policy import prior_noise
    from findcli.seeds import noise_seed

    s = noise_seed(purpose, seed)
    rollout = Rollout(pipe, prompt, settings, max_batch)
    device = rollout.device
    pi = bi = None
    if policy is not None:
        pz, _ = policy.to(device).sample(s, n)
        pi = rollout(pz, s)
    if baseline or policy is None:
        bz = prior_noise(latent_shape(pipe, settings.height, settings.width, settings.frames), s, n, device)
        bi = rollout(bz, s)
    return Draw(pi, bi)


def paired_win_rate(policy_rewards: torch.Tensor, baseline_rewards: torch.Tensor) -> float:
    """Fraction of pairs (same ε) where the policy's image scores higher; ties count one half."""
    p, b = policy_rewards.float(), baseline_rewards.float()
    return float(((p > b).float() + 0.5 * (p == b).float()).mean())


# ---------------------------------------------------------------------------------------------- `find sample`


@dataclass
class SampleRequest:
    policy: Path  # the policy file
    prompt: str | None = None  # a conditional policy's prompt (any); a per-prompt policy's own when None
    n: int = 8  # images to draw
    seed: int = 0  # the sample namespace's seed
    out_dir: Path | None = None  # PNGs, grid(s), rewards.json; None: ./samples
    baseline: bool = False  # also N(0, I) on the same ε
    model: str | None = None  # None: the policy's model
    steps: int | None = None  # None: the policy's
    guidance: float | None = None  # None: the policy's
    height: int | None = None  # None: the policy's (another size is an error)
    width: int | None = None
    frames: int | None = None
    reward: list[str] | None = None  # None: the policy's reward
    reward_model: str | None = None
    score: bool = True  # False: --no-reward
    max_batch: int = 16
    device: str = "auto"
    dtype: str = "auto"
    kernels: str | None = None
    attention: str = "sdpa"
    compile: bool = False


def run_sample(request: SampleRequest) -> dict:
    """`find sample`: draw from the policy (and N(0, I) on the same ε), score, write the images, the
    grid(s) and rewards.json (each atomically). Returns the rewards.json record."""
    import json

    from findcli import atomic, limits
    from findcli.pipeline import can_write_mp4, frame_strips, grid, latent_shape, load_runtime, to_pil, write_video
    from findcli.policy import check_latent_shape, load_policy
    from findcli.training import build_reward

    r = request
    limits.check_all({"n": r.n, "seed": r.seed, "max_batch": r.max_batch})
    from findcli import conditional
    from findcli.errors import FindError

    cond = conditional.load_if_conditional(r.policy)
    if cond is not None:
        if r.prompt is None or not r.prompt.strip():
            raise FindError(f"{r.policy} is a conditional policy: give the prompt to draw, --prompt \"...\"")
        pf, meta = None, {**cond[1], "prompt": " ".join(r.prompt.split())}
    else:
        pf = load_policy(r.policy)
        meta = pf.meta
        if r.prompt is not None and " ".join(r.prompt.split()) != meta["prompt"]:
            raise FindError(f"{r.policy} was trained for {meta['prompt']!r} and draws only that prompt; drop --prompt, "
                            "or train a conditional policy (find train --prompts FILE --conditional)")
    if cond is not None:
        from findcli import shapes

        world = shapes.world_of(meta.get("model"))
        if world is not None:
            world.check_prompt(meta["prompt"])
    settings = settings_from_meta(meta, r.steps, r.guidance, r.height, r.width, r.frames, source=str(r.policy))
    out_dir = Path(r.out_dir or "samples")
    atomic.check_writable(out_dir / "rewards.json")
    model = r.model or meta.get("model")
    dev, _, pipe, _ = load_runtime(model, r.device, r.dtype, r.kernels, r.attention, r.compile, settings.scheduler)
    check_family(meta, pipe, str(r.policy))
    if cond is not None:
        pf = conditional.policy_file_for(cond[0], cond[1], pipe, meta["prompt"])
    check_latent_shape(pf.policy, latent_shape(pipe, settings.height, settings.width, settings.frames),
                       meta.get("model"))
    _warn_if_builtin_changed(meta)
    prompt = meta["prompt"]
    d = draw(pipe, prompt, settings, r.seed, r.n, pf.policy, r.baseline, r.max_batch, purpose="sample")
    record: dict = {"prompt": prompt, "policy": str(r.policy), "model": pipe.find_source, "seed": r.seed, "n": r.n,
                    "steps": settings.steps, "guidance": settings.guidance, "eta": settings.eta,
                    "video": d.policy_images.ndim == 5}
    if r.score:
        reward_fn, _ = build_reward(r.reward or meta.get("reward") or "clip", r.reward_model or meta.get("reward_model"),
                                    model, dev)
        record["reward"] = reward_fn.spec
        pr = reward_fn(d.policy_images, [prompt] * r.n).float().cpu()
        record["policy_rewards"] = pr.tolist()
        record["mean_policy_reward"] = float(pr.mean())
        if r.baseline:
            br = reward_fn(d.baseline_images, [prompt] * r.n).float().cpu()
            record["baseline_rewards"] = br.tolist()
            record["mean_baseline_reward"] = float(br.mean())
            record["win_rate"] = paired_win_rate(pr, br)
    arms = [("policy", d.policy_images, "grid.png")]
    if r.baseline:
        arms.append(("baseline", d.baseline_images, "grid_baseline.png"))
    mp4 = can_write_mp4()
    for arm, media, grid_name in arms:
        if media.ndim == 5:  # video: a GIF per sample (and an MP4 with the [video] extra), the grid as strips
            for i, video in enumerate(media):
                write_video(video, out_dir / f"{arm}_{i:04d}.gif")
                if mp4:
                    write_video(video, out_dir / f"{arm}_{i:04d}.mp4")
        else:
            for i, img in enumerate(to_pil(media)):
                atomic.write_with(out_dir / f"{arm}_{i:04d}.png", img.save)
        atomic.write_with(out_dir / grid_name, grid(frame_strips(media)).save)
    atomic.write_text(out_dir / "rewards.json", json.dumps(record, indent=2))
    return record


def _warn_if_builtin_changed(meta: dict) -> None:
    """One line when a policy of the built-in model was trained on other shipped weights."""
    from findcli import shapes
    from findcli.pipeline import warn

    recorded, world = meta.get("model_version"), shapes.world_of(meta.get("model"))
    if recorded and world is not None and recorded != world.model_version():
        warn(f"this policy was trained on the built-in model {recorded}, this findcli ships "
             f"{world.model_version()}: its images may differ from the ones it was trained for")


def check_family(meta: dict, pipe, source: str) -> None:
    """One line when a policy of one family (sd, sdxl, flux, ...) meets a pipeline of another."""
    from findcli.errors import FindError
    from findcli.generators import family_class

    recorded, here = meta.get("family"), family_class(pipe).family
    if recorded is not None and recorded != here:
        raise FindError(f"{source} is a policy for a {recorded} model; this --model is a {here} pipeline "
                        f"({type(pipe).__name__}); use the model it was trained with")
