# old conditional_fold.py Invert.prepare and context_free (commit de6efb6) vs the library, on 3 prompts
import torch
from diffusers import DDIMInverseScheduler
from findcli.pipeline import load_runtime, SamplerSettings
from findcli.shapes.world import render, parse_prompt
from findcli.shapes.layouts import layout_targets
from findcli.conditional import word_features
torch.set_num_threads(1)
_,_,pipe,_=load_runtime(None,"cpu")
ps=["a red cube on a blue sphere","three green pyramids","a white cube next to a purple sphere"]
for g in (1.0, 7.5):
    inv = DDIMInverseScheduler.from_config(pipe.scheduler.config); inv.set_timesteps(20)
    with torch.no_grad():
        img = torch.cat([render([parse_prompt(p)], torch.Generator().manual_seed(0)) for p in ps])
        z = pipe.vae.encode(img * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
        embs = [pipe.encode_prompt(p, "cpu", 1, g > 1) for p in ps]
        pe = torch.cat([e[0] for e in embs]); ne = torch.cat([e[1] for e in embs]) if g > 1 else None
        for t in inv.timesteps:
            if g > 1:
                eu, ec = pipe.unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([ne, pe])).sample.chunk(2); e = eu + g * (ec - eu)
            else:
                e = pipe.unet(z, t, encoder_hidden_states=pe).sample
            z = inv.step(e, t, z).prev_sample
    new, _ = layout_targets(pipe, ps, 1.0, 1, 0, 20, g)
    print("guidance", g, "max |old-new|", (z.flatten(1) - new).abs().max().item(), "scale", z.abs().mean().item())
emb, POS = pipe.text_encoder.get_input_embeddings(), 16
for p in ps:
    ids = pipe.tokenizer(p, truncation=True, max_length=pipe.tokenizer.model_max_length, return_tensors="pt").input_ids[0]
    n, j = ids.numel(), torch.arange(ids.numel()); e = emb(ids).float(); oh = torch.nn.functional.one_hot
    tok = torch.cat([e, oh(j.clamp(max=POS - 1), POS).float(), oh((n - 1 - j).clamp(max=POS - 1), POS).float()], -1)
    old = (e.mean(0), torch.nn.functional.pad(tok, (0, 0, 0, max(0, 2 * POS - n)))[:2 * POS])
    new = word_features(pipe, p)
    print(p, torch.equal(old[0], new[0]), torch.equal(old[1], new[1]))
