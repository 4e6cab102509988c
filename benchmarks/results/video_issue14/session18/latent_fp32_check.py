"""Lead for the bf16 gain cost, checked: does keeping the latents (the DDIM updates) in fp32 around the bf16
UNet bring videos and rewards closer to fp32's on the same ε? (OMP_NUM_THREADS=2, 3 tuning prompts x 16 videos)"""
import json, torch
from findcli import shapes
from findcli.pipeline import SamplerSettings, configure_pipeline, load_pipeline
from findcli.generators import generator_for
from findcli.rewards import build_reward
from findcli.policy import prior_noise
from findcli.pipeline import latent_shape
from findcli.seeds import noise_seed
world = shapes.world_of("builtin-video")
p32 = load_pipeline("builtin-video", torch.device("cpu"), torch.float32); configure_pipeline(p32)
p16 = load_pipeline("builtin-video", torch.device("cpu"), torch.bfloat16); configure_pipeline(p16)
reward = build_reward(world.default_reward, torch.device("cpu"), reward_model=world.clip_model)
s = SamplerSettings(frames=8, steps=20, guidance=7.5)
unet = p16.unet; fwd = unet.forward
def fwd32(sample, timestep, encoder_hidden_states=None, *a, **k):
    out = fwd(sample.to(torch.bfloat16), timestep, encoder_hidden_states.to(torch.bfloat16), *a, **k)
    if isinstance(out, tuple):
        return tuple(o.float() for o in out)
    out.sample = out.sample.float(); return out
def run(pipe, prompt, z, fp32_latents=False):
    g = generator_for(pipe, prompt, s, 16)
    if fp32_latents:
        g.dtype = torch.float32; unet.forward = fwd32
        dec = g.decode; g.decode = lambda lat: dec(lat.to(torch.bfloat16))
    try:
        return g(z, 0).float()
    finally:
        unet.forward = fwd
for prompt in ["a red cube moving right", "a yellow pyramid moving down", "a blue pyramid moving right"]:
    z = prior_noise(latent_shape(p32, None, None, 8), noise_seed("eval", 100), 16, torch.device("cpu"))
    R = {}
    for name, pipe, f in (("fp32", p32, False), ("bf16", p16, False), ("bf16_lat32", p16, True)):
        x = torch.cat([run(pipe, prompt, c, f) for c in z.split(8)])
        ok, _ = world.judge_images(x, prompt)
        R[name] = (reward(x, [prompt] * len(x)).float(), ok, x)
    r32 = R["fp32"][0]; i, j = torch.triu_indices(16, 16, 1)
    for name in ("bf16", "bf16_lat32"):
        r = R[name][0]
        print(json.dumps(dict(prompt=prompt, arm=name, pair_order=float(((r32[i]-r32[j]).sign() == (r[i]-r[j]).sign()).float().mean()),
              reward_mae=float((r - r32).abs().mean()), reward_max=float((r - r32).abs().max()),
              pix_mae=float((R[name][2] - R["fp32"][2]).abs().mean()), verdicts=float((R[name][1] == R["fp32"][1]).float().mean()))), flush=True)
