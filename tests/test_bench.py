"""`find bench`: the CLI contract (sections, JSON keys, errors), the pieces the numbers rest on (FLOP
counting on a meta-device copy, the peak table, the cheap reward, the timing helper's call counts),
and the layering (the benchmark code is a package: nothing loads benchmarks/ by path, no library
module imports a command module). No timings are asserted."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from findcli import bench
from findcli.bench import kernels as bench_kernels
from findcli.bench import plans
from findcli.bench.timing import time_call
from findcli.errors import FindError
from findcli.main import app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_quick(monkeypatch):
    """The quick plan cut to seconds: the tiny pipeline only, 2 steps, one timed iteration."""
    plan = dataclasses.replace(
        plans.QUICK, models=("tiny",), steps=2, batches={"tiny": (2,)}, variant_batch={"tiny": 2}, row_budget_s=0.0,
        e2e_models=("tiny",), e2e_overrides={"default": {"steps": 2, "batch": 3}, "paper": {"steps": 2}},
        e2e_warmup=1, e2e_iterations=1, sweep_models=("tiny",), sweep_steps=(1, 2), sweep_batch=2,
    )
    monkeypatch.setattr(plans, "QUICK", plan)  # run_bench reads plans.QUICK at call time
    return plan


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bench_quick_writes_json_with_the_four_sections(tiny_quick, tmp_path):
    out = tmp_path / "out.json"
    res = _invoke("bench", "--quick", "--only", "kernels,end_to_end", "--json", out)
    assert res.exit_code == 0, res.output + res.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "kernels", "denoiser", "end_to_end", "steps_sweep"}
    assert data["denoiser"] is None and data["steps_sweep"] is None  # not run -> null
    assert data["meta"]["sections"] == ["kernels", "end_to_end"] and data["meta"]["quick"] is True
    assert data["kernels"]["rows"] and all(r["status"] == "ok" or r["status"].startswith("skipped")
                                           for r in data["kernels"]["rows"])
    rows = {r["preset"]: r for r in data["end_to_end"]["rows"]}
    assert set(rows) == {"default", "paper"}
    for preset, k in (("default", 3), ("paper", 1)):  # paper keeps its one image per iteration
        r = rows[preset]
        assert r["status"] == "ok" and r["batch"] == k, r
        parts = r["denoise_s"] + r["decode_s"] + r["reward_s"] + r["update_s"] + r["other_s"]
        assert parts == pytest.approx(r["iter_s"], abs=5e-5)  # the split covers the iteration (5 roundings)
        assert r["images_per_s"] == pytest.approx(k / r["iter_s"], rel=1e-3)
    assert "end to end" in res.output and "kernels" in res.output  # tables printed


def test_bench_denoiser_and_sweep_rows(tiny_quick):
    result = bench.run_bench(["denoiser", "steps_sweep"], quick=True, device=torch.device("cpu"),
                             dtype=torch.float32, log=lambda m: None)
    d = result["denoiser"]
    assert d["models"]["tiny"]["status"] == "ok"
    ok = [r for r in d["rows"] if r["status"] == "ok"]
    assert [(r["batch"], r["attention"], r["compile"]) for r in ok] == [(2, "sdpa", False)]
    skipped = {(r["attention"], r["compile"]): r["status"] for r in d["rows"] if r["status"] != "ok"}
    assert skipped[("xformers", False)].startswith("skipped: ")  # no GPU here: a reason, not a crash
    assert skipped[("sdpa", True)].startswith("skipped: quick mode")
    r = ok[0]
    assert r["images_per_s"] == pytest.approx(2 / r["rollout_s"], rel=1e-3)
    assert r["tflops"] == pytest.approx(d["models"]["tiny"]["gflop_per_image"] * r["images_per_s"] / 1e3, rel=1e-2, abs=1e-4)
    assert r["frac_of_peak"] is None  # a CPU has no entry in the peak table
    assert [(r["steps"], r["status"]) for r in result["steps_sweep"]["rows"]] == [(1, "ok"), (2, "ok")]


def test_bad_only_value_is_one_line_error(tmp_path):
    res = _invoke("bench", "--quick", "--only", "kernels,bogus", "--json", tmp_path / "out.json")
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown benchmark section 'bogus'"), res.stderr
    assert not (tmp_path / "out.json").exists()


def test_parse_sections_accepts_repeats_and_comma_lists():
    assert bench.parse_sections(None) == list(bench.SECTIONS)
    assert bench.parse_sections(["steps_sweep,kernels", "denoiser"]) == ["kernels", "denoiser", "steps_sweep"]
    assert bench.parse_sections(["end-to-end", "end_to_end"]) == ["end_to_end"]
    with pytest.raises(FindError, match="named no section"):
        bench.parse_sections([" , "])


def test_kernels_section_runs_from_the_package(monkeypatch):
    """The kernels benchmark is findcli.bench.kernels (it installs with the wheel), not a script loaded
    from a source checkout; quick on a CPU: eager rows timed, compile and Triton skipped with reasons."""
    monkeypatch.setattr(bench_kernels, "QUICK_SCALES", [("tiny", 2, 64)])
    assert Path(bench_kernels.__file__).resolve().parent == REPO / "findcli" / "bench"
    result = bench_kernels.run(quick=True, device="cpu")
    assert set(result) == {"benchmark", "device", "date", "torch", "triton", "quick", "copy_gbps", "rows"}
    rows = {(r["op"], r["pass"], r["impl"]): r for r in result["rows"]}
    assert len(rows) == 12 == len(result["rows"])  # 4 (op, pass) x 3 impls at the one scale
    for (op, pass_, impl), r in rows.items():
        assert set(r) == {"scale", "K", "D", "op", "pass", "impl", "ms", "floor_bytes", "gbps", "frac_of_copy",
                          "compile_s", "status"}
        if impl == "eager":
            assert r["status"] == "ok" and r["ms"] > 0 and r["compile_s"] is None, r
            assert r["floor_bytes"] == 4 * 2 * 64 * {"sample": 1, "policy_loss": 1 if pass_ == "fwd" else 2, "step": 3}[op]
        else:
            assert r["status"].startswith("skipped: ") and r["ms"] is None, r
    assert "tiny" in bench_kernels.format_table(result)


def test_benchmark_scripts_are_thin_entry_points(monkeypatch, capsys):
    """benchmarks/bench_*.py hold no measurement code: they import it from findcli.bench and time nothing."""
    scripts = ("bench_kernels", "bench_denoiser", "bench_end_to_end", "bench_steps")
    for name in scripts:
        tree = ast.parse((REPO / "benchmarks" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert any(m and m.startswith("findcli.bench") for m in imported), name
        names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree)
                 if isinstance(n, (ast.Attribute, ast.Name))}
        assert not names & {"perf_counter", "do_bench", "synchronize"}, name
    # The kernels script keeps its flags (--quick, --device, --json) and its plain table.
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_kernels_script", REPO / "benchmarks" / "bench_kernels.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.run is bench_kernels.run
    monkeypatch.setattr(bench_kernels, "QUICK_SCALES", [("tiny", 2, 64)])
    assert script.main(["--quick", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("device: cpu   copy bandwidth: ")


def test_time_call_warms_up_then_takes_the_median_of_the_timed_calls():
    calls = []
    t = time_call(lambda: calls.append(1), torch.device("cpu"), budget_s=0.0, warmup=3, min_reps=5)
    assert len(calls) == 3 + 5 and t.reps == 5 and t.first_s >= 0 and t.median_s >= 0  # warm-ups stay out
    calls.clear()
    t = time_call(lambda: calls.append(1), torch.device("cpu"), budget_s=60.0, min_reps=2, max_reps=4)
    assert len(calls) == 1 + 4 and t.reps == 4  # the cap ends a long budget
    first, median, reps = t  # unpacks like the (first, median, reps) tuple it replaced
    assert (first, median, reps) == (t.first_s, t.median_s, t.reps)


def _modules():
    """(path, dotted name, is package) of every module the wheel installs: findcli/ and kernels/ (findcli.kernels)."""
    for base, pkg in ((REPO / "findcli", "findcli"), (REPO / "kernels", "findcli.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            is_pkg = parts[-1] == "__init__"
            yield path, ".".join((pkg, *(parts[:-1] if is_pkg else parts))), is_pkg


def _imports(tree: ast.AST, name: str, is_pkg: bool) -> set[str]:
    """Absolute names a module imports (relative imports resolved; `from a import b` gives a and a.b)."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in n.names)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("findcli."):
            out.add(n.value)  # importlib.import_module("findcli....")
    return out


CLI_LAYER = ("findcli.commands", "findcli.main", "findcli.entry")  # may import the library, not the reverse


def test_no_library_module_imports_a_command_module_or_loads_benchmarks():
    assert any(name == "findcli.bench.kernels" for _, name, _ in _modules())  # the scan sees the bench package
    # Loading by file path is fine for user files (--reward path.py:function) but not for code that
    # ships beside the package: a module that locates files from its own __file__ must not exec them.
    loaders = {"spec_from_file_location", "SourceFileLoader", "run_path"}
    bad = []
    for path, name, is_pkg in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO)
        if not any(name == c or name.startswith(c + ".") for c in CLI_LAYER):
            for imp in _imports(tree, name, is_pkg):
                if imp == "findcli.commands" or imp.startswith("findcli.commands."):
                    bad.append(f"{where} imports {imp}")
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        names = {n.attr if isinstance(n, ast.Attribute) else n.id: n.lineno for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute | ast.Name)}
        if "__file__" in names and loaders & set(names):
            bad.append(f"{where}:{names[min(loaders & set(names))]} loads a module by a path next to its own file")
        for n in ast.walk(tree):
            if (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
                    and re.search(r"^benchmarks$|(^|[/\\])benchmarks[/\\][\w/.-]*\.py\b", n.value)):
                bad.append(f"{where}:{n.lineno} names a path in benchmarks/: {n.value[:80]!r}")
    assert not bad, "\n".join(bad)


def test_meta_device_flop_count_matches_counting_the_real_forward():
    """Oracle: FlopCounterMode around the real CPU forward of the same tiny pipeline (plain attention)."""
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    from findcli.testing import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    got = bench.flops_per_image(pipe, steps=3, guidance=7.5, latent=(4, 8, 8))
    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        pipe.unet(torch.randn(2, 4, 8, 8), torch.tensor(500),
                  encoder_hidden_states=torch.randn(2, pipe.tokenizer.model_max_length, 16))
    unet = fc.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        pipe.vae.decode(torch.randn(1, 4, 8, 8))
    decode = fc.get_total_flops()
    assert got["gflop_per_image"] == pytest.approx((3 * unet + decode) / 1e9, abs=1e-3)  # 3 decimals kept
    assert got["unet_gflop_per_row"] == pytest.approx(unet / 2 / 1e9, abs=1e-3)


def test_sd15_architecture_flops_match_the_reference_measurement():
    """Oracle: DEVICE.md's reference, 803 GFLOP per UNet row for the SD1.5 UNet at 512 px (H100 run,
    FlopCounterMode). Counted here on meta tensors: no weights are materialised."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    c = bench.sd15_configs()
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**c["unet"]), AutoencoderKL(**c["vae"])
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(859.52e6, rel=1e-4)  # SD1.5's 860 M

    class Tok:
        model_max_length = c["tokenizer_max_length"]

    class Pipe:
        pass

    p = Pipe()
    p.unet, p.vae, p.tokenizer = unet, vae, Tok()
    got = bench.flops_per_image(p, steps=50, guidance=7.5, latent=(4, 64, 64))
    assert got["unet_gflop_per_row"] == pytest.approx(803.0, rel=2e-3)


def test_peak_table():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989.0
    assert bench.peak_tflops("NVIDIA H200", torch.float16) == 989.0
    assert bench.peak_tflops("NVIDIA H100 PCIe", torch.float16) == 756.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", torch.float32) is None  # no fp32 entry
    assert bench.peak_tflops("NVIDIA GeForce RTX 3090", torch.float16) is None  # unknown card


def test_colourfulness_reward_closed_form():
    grey = torch.full((1, 3, 4, 4), 0.5)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    bad = torch.full((1, 3, 4, 4), float("nan"))
    r = bench.colourfulness_reward(torch.cat([grey, red, bad]), ["x"] * 3)
    assert r.tolist() == [0.0, 1.0, 0.0]  # max − min over RGB; non-finite pixels count as 0


def test_steps_sweep_alignment_row_with_a_stand_in_builtin_model(tiny_quick, monkeypatch):
    """The built-in model's path (short FIND run, then paired success rates from the judge) on the tiny
    pipeline standing in for it: the row carries the judge's rates and gain = FIND − baseline."""
    from findcli.testing import build_tiny_pipeline

    plan = dataclasses.replace(tiny_quick, sweep_models=("builtin",), sweep_steps=(2,), find_iterations=2,
                               find_batch=3, eval_n=4)
    monkeypatch.setattr(plans, "QUICK", plan)
    stand_in = build_tiny_pipeline()
    monkeypatch.setattr(bench.Models, "pipe", lambda self, name: stand_in)
    monkeypatch.setattr(bench.Models, "reward", lambda self, name: (bench.colourfulness_reward, "colourfulness"))
    result = bench.run_bench(["steps_sweep"], quick=True, device=torch.device("cpu"), dtype=torch.float32,
                             log=lambda m: None)
    (row,) = result["steps_sweep"]["rows"]
    assert row["status"] == "ok", row
    for key in ("baseline_success", "find_success", "win_rate"):
        assert 0.0 <= row[key] <= 1.0 and (row[key] * plan.eval_n) % 0.5 == 0  # rates over n=4 images (ties: ½)
    assert row["gain"] == pytest.approx(row["find_success"] - row["baseline_success"])


# ---------------------------------------------------------------------------------------------- --model-family


@pytest.fixture
def family_quick(monkeypatch):
    """The quick plan's family rows cut to seconds: 2 steps, batch 1 only, the fewest timed calls."""
    plan = dataclasses.replace(plans.QUICK, family_steps=2, family_batches={"default": (1,)}, row_budget_s=0.0,
                               family_min_reps=1)
    monkeypatch.setattr(plans, "QUICK", plan)
    return plan


def test_model_family_quick_rows_for_sdxl_flux_wan(family_quick, tmp_path):
    out = tmp_path / "out.json"
    res = _invoke("bench", "--quick", "--only", "denoiser", "--model-family", "sdxl,flux", "--model-family", "wan",
                  "--json", out)
    assert res.exit_code == 0, res.output + res.stderr
    data = json.loads(out.read_text())
    d = data["denoiser"]
    assert {"steps", "guidance", "peak_tflops", "models", "rows"} <= set(d)  # the sd section's keys stay
    assert d["models"] == {} and d["rows"] == []  # --model-family runs the families instead of the sd rows
    assert data["meta"]["model_families"] == ["sdxl", "flux", "wan"]
    assert list(d["families"]) == ["sdxl", "flux", "wan"]
    media = {"sdxl": "image", "flux": "image", "wan": "video"}
    cfg_rows = {"sdxl": 2, "flux": 1, "wan": 2}  # FLUX.1-dev: guidance embedded, no CFG rows
    for fam, info in d["families"].items():
        assert info["status"] == "ok" and info["size"] == "tiny", info
        assert info["gflop_per_image"] > 0 and info["step_gflop"] > 0 and info["decode_gflop"] > 0, info
        assert info["gflop_per_image"] == pytest.approx(2 * info["step_gflop"] + info["decode_gflop"], rel=1e-4)
        assert info["media"] == media[fam] and info["cfg_rows"] == cfg_rows[fam] and info["steps"] == 2
        assert info["attention_flops"].startswith("counted")
    assert info["resolution"] == [16, 16, 5] and info["latent"] == [4, 2, 2, 2]  # wan: the tiny size
    rows = {r["family"]: r for r in d["family_rows"]}
    assert len(d["family_rows"]) == 3 and set(rows) == set(media)
    for fam, r in rows.items():
        assert r["status"] == "ok" and r["batch"] == 1 and r["steps"] == 2, r
        assert r["images_per_s"] == pytest.approx(1 / r["rollout_s"], rel=1e-3)
        assert r["denoise_s"] > 0 and r["decode_s"] > 0 and r["frac_of_peak"] is None  # CPU: no peak
        assert r["tflops"] == pytest.approx(d["families"][fam]["gflop_per_image"] * r["images_per_s"] / 1e3,
                                            rel=1e-2, abs=1e-6)
    assert "frames_per_s" in rows["wan"] and "frames_per_s" not in rows["sdxl"]
    assert "denoiser families" in res.output  # the table


def test_rollout_flops_matches_the_meta_device_unet_count_on_the_tiny_sd_pipeline():
    """Oracle: for the tiny SD pipeline the step FLOPs solved from two counted rollouts equal the
    existing meta-device count of one UNet forward on the 2 CFG rows, and the decode FLOPs equal its
    VAE decode count. It holds on the CPU because both count attention as the same matmuls: the
    meta count through diffusers' plain AttnProcessor, the rollouts under the math SDPA backend."""
    from findcli.bench.families import build_quick_pipeline
    from findcli.bench.flops import unet_flop_counts
    from findcli.generators import SamplerSettings
    from findcli.pipeline import configure_pipeline

    pipe = build_quick_pipeline("sd", torch.device("cpu"), torch.float32)
    configure_pipeline(pipe)  # SDPA processors, as the benchmark runs it
    got = bench.rollout_flops(pipe, "a red cube", SamplerSettings(steps=5, guidance=7.5))
    unet, decode = unet_flop_counts(pipe, 7.5, (4, 8, 8))
    assert got["step_flops"] == pytest.approx(unet, rel=0.01)
    assert got["decode_flops"] == pytest.approx(decode, rel=0.01)
    assert got["per_image_flops"] == 5 * got["step_flops"] + got["decode_flops"]
    # The sd rows keep their meta-device numbers (flops_per_image is that count, rounded).
    assert bench.flops_per_image(pipe, 5, 7.5, (4, 8, 8))["gflop_per_image"] == round((5 * unet + decode) / 1e9, 3)


def test_rollout_flops_counts_transformer_attention_on_the_cpu():
    """Oracle: on the CPU the counter has no formula for PyTorch's CPU SDPA kernel; counted under the
    math backend, the tiny FLUX step gains exactly its joint attention, 4·H·L²·D per block, over
    the count with the default kernel: 2 blocks (1 double, 1 single), H=2, D=16, L = 512 T5 tokens
    + 16 packed image tokens."""
    from findcli.bench.families import build_quick_pipeline
    from findcli.generators import SamplerSettings

    pipe = build_quick_pipeline("flux", torch.device("cpu"), torch.float32)
    settings = SamplerSettings(steps=3, guidance=3.5, height=16, width=16)
    counted = bench.rollout_flops(pipe, "a red cube", settings)
    missing = bench.rollout_flops(pipe, "a red cube", settings, cpu_math_attention=False)
    assert counted["attention"].startswith("counted") and missing["attention"].startswith("NOT counted")
    assert counted["step_flops"] - missing["step_flops"] == 2 * 4 * 2 * 528 ** 2 * 16


def test_full_size_family_rows_need_a_gpu(tmp_path):
    """Without --quick and without CUDA each full-size family row is skipped with the reason (nothing is
    built); a family with no reference architecture here says so."""
    result = bench.run_bench(["denoiser"], quick=False, device=torch.device("cpu"), dtype=torch.float32,
                             families=["sdxl", "flux", "wan", "pixart"], log=lambda m: None)
    d = result["denoiser"]
    for fam in ("sdxl", "flux", "wan"):
        assert d["families"][fam]["status"] == "skipped: needs a GPU (CPU numbers only with --quick)"
        assert d["families"][fam]["config_source"] and d["families"][fam]["text_encoders"].startswith("1-layer")
    assert d["families"]["wan"]["resolution"] == [480, 832, 81] and d["families"]["flux"]["resolution"] == [1024, 1024]
    assert d["families"]["pixart"]["status"].startswith("skipped: no full-size reference architecture for pixart")
    assert d["family_rows"] and all(r["status"].startswith("skipped: ") for r in d["family_rows"])
    assert [r["batch"] for r in d["family_rows"] if r["family"] == "wan"] == [1]
    assert any("text encoders one layer deep" in n for n in result["meta"]["notes"])


def test_unknown_model_family_is_a_one_line_error(tmp_path):
    res = _invoke("bench", "--quick", "--only", "denoiser", "--model-family", "sdxl,bogus", "--json",
                  tmp_path / "out.json")
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model family 'bogus'"), res.stderr
    assert not (tmp_path / "out.json").exists()
    assert bench.script_main("denoiser", ["--quick", "--model-family", "bogus"]) == 2  # the script too
    assert bench.parse_families(["flux,sdxl", "flux", " wan "]) == ["flux", "sdxl", "wan"]
    assert bench.parse_families(None) == []


def test_full_size_configs_build_on_meta_with_the_published_parameter_counts():
    """The reference architectures construct on the meta device (no memory) with the released weights'
    parameter counts (findcli.bench.families.PUBLISHED_PARAMS, cited there: SDXL-base-1.0 UNet
    2,567,463,684 ≈ the paper's 2.6 B; FLUX.1-dev transformer 11,901,408,320 ≈ the card's 12 B; Wan2.1
    T2V-1.3B transformer 1,418,996,800), within 2%; the whole pipelines build on meta in the target
    dtype (nothing on the CPU, nothing fp32) and give the native latent shapes."""
    from findcli.bench import families as fam
    from findcli.pipeline import latent_shape

    published_vae = {"sdxl": 83_653_863, "wan": 126_892_531}  # the released vae/ weights
    for family, n in fam.PUBLISHED_PARAMS.items():
        with torch.device("meta"):
            net, vae = fam.build_denoiser(family), fam.build_vae(family)
        assert all(p.is_meta for p in net.parameters())
        assert sum(p.numel() for p in net.parameters()) == pytest.approx(n, rel=0.02), family
        if family in published_vae:
            assert sum(p.numel() for p in vae.parameters()) == pytest.approx(published_vae[family], rel=0.02)
    native = {"sdxl": (4, 128, 128), "flux": (16, 128, 128), "wan": (16, 21, 60, 104)}
    for family, shape in native.items():
        pipe = fam.build_full_pipeline(family, torch.device("meta"), torch.bfloat16)
        modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
        params = [p for m in modules for p in m.parameters()]
        assert params and all(p.is_meta and p.dtype == torch.bfloat16 for p in params), family
        assert latent_shape(pipe) == shape, family
