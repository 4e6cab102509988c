"""Rich tables of a benchmark result, one per section that ran (what `find bench` prints)."""

from __future__ import annotations

import math


def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


class _Notes:
    """Long statuses (skip reasons, errors) become a short cell plus a numbered line in the caption."""

    def __init__(self):
        self.reasons: list[str] = []

    def cell(self, status: str | None) -> str:
        if not status or status == "ok":
            return "ok"
        kind, _, reason = status.partition(": ")
        if not reason:
            return status
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"{kind} [{self.reasons.index(reason) + 1}]"

    def caption(self) -> str | None:
        return "\n".join(f"[{i}] {r}" for i, r in enumerate(self.reasons, 1)) or None


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]):
    from rich.table import Table

    t = Table(title=title, caption_justify="left")
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


def _families_table(d: dict, m: dict):
    """The --model-family rows: one line per (family, batch); a family that did not run, its reason."""
    notes = _Notes()
    t = _table(f"denoiser families — rollouts through each family's pipeline (random weights); "
               f"{m.get('card', '')}, {m.get('dtype', '')}, peak {_fmt(d['peak_tflops'], '.0f')} TFLOP/s",
               ("family", "size", "resolution", "B", "T", "CFG rows", "images/s", "denoise s", "decode s", "ms/step",
                "GFLOP/step", "GFLOP/image", "TFLOP/s", "% peak", "status"), ("family", "size", "resolution", "status"))
    for r in d["family_rows"]:
        info = d["families"].get(r["family"], {})
        ok = r["status"] == "ok"
        res = "x".join(str(v) for v in info.get("resolution", [])) or "-"
        if info.get("media") == "video":
            res = f"{res} frames"
        t.add_row(r["family"], r.get("size", ""), res, _fmt(r.get("batch"), "d"), _fmt(r.get("steps"), "d"),
                  _fmt(info.get("cfg_rows") if ok else None, "d"), _fmt(r.get("images_per_s"), ".4g"),
                  _fmt(r.get("denoise_s"), ".4f"), _fmt(r.get("decode_s"), ".4f"), _fmt(r.get("step_ms"), ".2f"),
                  _fmt(info.get("step_gflop") if ok else None, ".4g"),
                  _fmt(info.get("gflop_per_image") if ok else None, ".4g"), _fmt(r.get("tflops"), ".3g"),
                  _fmt(None if r.get("frac_of_peak") is None else 100 * r["frac_of_peak"], ".1f"),
                  notes.cell(r["status"]))
    t.caption = "\n".join(x for x in (
        "images/s: samples per second (videos for video families); GFLOP/step: one denoising step of one sample, "
        "every row the pipeline runs (CFG included); GFLOP/image = T x step + decode, counted around two real "
        "rollouts (FlopCounterMode); text encoders run once per prompt and are not counted", notes.caption()) if x)
    return t


def tables(result: dict) -> list:
    """Rich tables, one per section that ran."""
    out = []
    m = result.get("meta") or {}
    k = result.get("kernels")
    if k:
        notes = _Notes()
        t = _table(f"kernels — {k.get('device')}, copy {k.get('copy_gbps')} GB/s (read + write)",
                   ("scale", "K", "D", "op", "pass", "impl", "ms", "GB/s", "% copy", "compile s", "status"),
                   ("scale", "op", "pass", "impl", "status"))
        for r in k["rows"]:
            t.add_row(r["scale"], str(r["K"]), str(r["D"]), r["op"], r["pass"], r["impl"], _fmt(r["ms"], ".4f"),
                      _fmt(r["gbps"], ".1f"), _fmt(None if r["frac_of_copy"] is None else 100 * r["frac_of_copy"], ".1f"),
                      _fmt(r.get("compile_s"), ".1f"), notes.cell(r["status"]))
        t.caption = notes.caption()
        out.append(t)
    d = result.get("denoiser")
    if d and (d["models"] or d["rows"]):
        notes = _Notes()
        t = _table(f"denoiser — full rollouts: T={d['steps']} DDIM steps, CFG {d['guidance']}, VAE decode; "
                   f"{m.get('card', '')}, {m.get('dtype', '')}, peak {_fmt(d['peak_tflops'], '.0f')} TFLOP/s",
                   ("model", "B", "attention", "compile", "images/s", "ms/step", "UNet ms", "decode s",
                    "GFLOP/image", "TFLOP/s", "% peak", "compile s", "status"),
                   ("model", "attention", "compile", "status"))
        for name, info in d["models"].items():
            if info.get("status") != "ok":
                t.add_row(name, *[""] * 11, notes.cell(info.get("status")))
        for r in d["rows"]:
            g = d["models"].get(r["model"], {}).get("gflop_per_image")
            ok = r["status"] == "ok"
            t.add_row(r["model"], str(r["batch"]), r["attention"], "yes" if r["compile"] else "no",
                      _fmt(r.get("images_per_s"), ".3f"), _fmt(r.get("step_ms"), ".2f"), _fmt(r.get("unet_ms"), ".2f"),
                      _fmt(r.get("decode_s"), ".4f"), _fmt(g if ok else None, ".4g"), _fmt(r.get("tflops"), ".3g"),
                      _fmt(None if r.get("frac_of_peak") is None else 100 * r["frac_of_peak"], ".1f"),
                      _fmt(r.get("compile_s"), ".1f"), notes.cell(r["status"]))
        t.caption = "\n".join(x for x in ("UNet ms: one forward on the 2·B rows of a CFG step; ms/step: the "
                                           "pipeline's denoising time per step (scheduler and CFG included)",
                                           notes.caption()) if x)
        out.append(t)
    if d and d.get("families"):
        out.append(_families_table(d, m))
    e = result.get("end_to_end")
    if e:
        notes = _Notes()
        t = _table(f"end to end — one find train iteration (median of {e['timed_iterations']} after "
                   f"{e['warmup_iterations']} warm-up)",
                   ("model", "preset", "K", "T", "denoise s", "decode s", "reward s", "update s", "other s",
                    "iteration s", "iterations/s", "images/s", "status"), ("model", "preset", "status"))
        rewards = []
        for r in e["rows"]:
            t.add_row(r["model"], r["preset"], _fmt(r.get("batch"), "d"), _fmt(r.get("steps"), "d"),
                      *(_fmt(r.get(c), ".4f") for c in ("denoise_s", "decode_s", "reward_s", "update_s", "other_s",
                                                        "iter_s")),
                      _fmt(r.get("iterations_per_s"), ".3f"), _fmt(r.get("images_per_s"), ".3f"),
                      notes.cell(r["status"]))
            if r.get("reward") and f"{r['model']}: {r['reward']}" not in rewards:
                rewards.append(f"{r['model']}: {r['reward']}")
        t.caption = "\n".join(x for x in (("reward — " + "; ".join(rewards)) if rewards else None, notes.caption()) if x)
        out.append(t)
    s = result.get("steps_sweep")
    if s:
        notes = _Notes()
        t = _table(f"steps sweep — rollouts of {s['batch']} images; alignment: FIND {s['find_iterations']} "
                   f"iterations × K={s['find_batch']}, then n={s['eval_n']} paired images per arm",
                   ("model", "T", "images/s", "ms/step", "baseline success", "FIND success", "gain", "win rate",
                    "status"), ("model", "status"))
        for r in s["rows"]:
            t.add_row(r["model"], str(r["steps"]), _fmt(r.get("images_per_s"), ".3f"), _fmt(r.get("step_ms"), ".2f"),
                      _fmt(r.get("baseline_success"), ".3f"), _fmt(r.get("find_success"), ".3f"),
                      _fmt(r.get("gain"), "+.3f"), _fmt(r.get("win_rate"), ".3f"),
                      notes.cell(r["status"] if r["status"] != "ok" else r.get("alignment", "ok")))
        t.caption = notes.caption()
        out.append(t)
    c = result.get("compare")
    if c and "prompts" in c:
        from findcli.bench.compare import summary_rows

        t = _table("method comparison — built-in model, detector reward, judge success on fresh noise",
                   ("prompt", "method", "success", "reward", "diversity", "train s", "train reward calls",
                    "s/image after", "reward calls/image"), ("prompt", "method"))
        for r in summary_rows(c):
            t.add_row(r["prompt"], r["method"], _fmt(r["success"], ".3f"), _fmt(r["reward"], ".4f"),
                      _fmt(r["diversity"], ".3f"), _fmt(r["train_s"], ".1f"), str(r["train_reward_calls"]),
                      _fmt(r["image_s"], ".3f"), _fmt(r["image_reward_calls"], ".0f"))
        out.append(t)
    return out
