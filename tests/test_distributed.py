"""Several processes on the CPU (gloo): ranks from the environment, the sharding arithmetic, the
all-reduced policy update, and `find train` under torchrun and accelerate launch.

Oracles: one process. Prompt sharding must give the policies one process gives, bit for bit (also
after a rank dies and torchrun restarts the job); sample sharding the same policy within fp
tolerance (each rank's images go through the UNet in a smaller batch, and the gradient is summed in
another order); the update of a spawned 2-rank group the single-process update of the same samples.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from typer.testing import CliRunner

import _dist_worker
from findcli.distributed import World, rank_device, round_robin, rows, world_from_env
from findcli.errors import FindError
from findcli.main import app
from findcli.policy import load_checkpoint, load_policy

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--iterations", "2", "--batch", "4", "--steps", "4", "--device", "cpu", "--kernels", "torch"]


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def launcher_env(tmp_path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"))  # no user accelerate config
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def launcher(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run"]
    pytest.skip(f"{name} is not installed next to {sys.executable}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- the world


def test_the_world_comes_from_what_torchrun_and_accelerate_set():
    assert world_from_env({}) == World(0, 1, 0)
    assert world_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == World(0, 1, 0)
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h"}
    assert world_from_env(torchrun) == World(3, 4, 1)
    accelerate = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "ACCELERATE_MIXED_PRECISION": "no"}
    assert world_from_env(accelerate) == World(1, 2, 1)
    assert world_from_env({"RANK": "2", "WORLD_SIZE": "3"}) == World(2, 3, 2)  # LOCAL_RANK defaults to RANK
    for env, needle in (({"WORLD_SIZE": "2"}, "RANK is not"), ({"WORLD_SIZE": "x", "RANK": "0"}, "not an integer"),
                        ({"WORLD_SIZE": "2", "RANK": "2"}, "outside 0..1"), ({"RANK": "1"}, "WORLD_SIZE is unset"),
                        ({"WORLD_SIZE": "0", "RANK": "0"}, "at least 1")):
        with pytest.raises(FindError, match=needle):
            world_from_env(env)
    assert rank_device("cpu", World(1, 2, 1)) == "cpu" and rank_device("auto", World(0, 1, 0)) == "auto"


def test_rows_split_every_draw_and_prompts_are_dealt_round_robin():
    for n in range(1, 12):
        for size in range(1, 5):
            parts = [rows(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, disjoint, covering
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert rows(5, 0, 2) == (0, 3) and rows(5, 1, 2) == (3, 5)
    assert round_robin(list("abcde"), 0, 2) == ["a", "c", "e"] and round_robin(list("abcde"), 1, 2) == ["b", "d"]
    assert round_robin(["a"], 1, 2) == []


def test_sample_sharded_update_equals_one_process(tmp_path):
    """Two spawned gloo ranks, each with its rows of the same 10 samples: the all-reduced update is the
    one-process update within fp tolerance, the same bit for bit on both ranks; gather, agree, all_true."""
    mp.spawn(_dist_worker.worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    mu, log_sigma, agg = _dist_worker.update()
    mu0, log_sigma0 = _dist_worker.inputs()[:2]
    assert (mu - mu0).abs().max() > 1e-2  # the update moved the policy
    for r in (r0, r1):
        torch.testing.assert_close(r["mu"], mu, rtol=0, atol=1e-6)
        torch.testing.assert_close(r["log_sigma"], log_sigma, rtol=0, atol=1e-6)
        assert r["agg"].keys() == agg.keys()
        for k in agg:
            assert abs(r["agg"][k] - agg[k]) <= 1e-6 * max(1.0, abs(agg[k])), k
        torch.testing.assert_close(r["gathered"], torch.arange(15, dtype=torch.float32).reshape(5, 3) / 7, rtol=0,
                                   atol=0)
        assert r["half"].dtype == torch.float16 and torch.equal(r["half"], torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5],
                                                                                      dtype=torch.float16))
        assert r["agreed"] == 15 and r["none"] is None and r["all_true"] == (False, True)
    assert torch.equal(r0["mu"], r1["mu"]) and torch.equal(r0["log_sigma"], r1["log_sigma"])
    assert r0["rows"] == (0, 3) and r1["rows"] == (3, 5)


def test_sample_sharding_refuses_what_it_cannot_split(tmp_path):
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    res = invoke("train", "a red sphere", "--out", tmp_path / "o.pt", "--batch", 1, "--device", "cpu", env=env)
    assert res.exit_code == 2 and "--batch 1 cannot be split across 2 ranks" in res.stderr.strip().splitlines()[-1]
    res = invoke("train", "a red sphere", "--out", tmp_path / "o.pt", "--batch", 2, "--device", "cpu",
                 env=dict(env, MASTER_ADDR="", MASTER_PORT=""))
    assert res.exit_code == 2 and "MASTER_ADDR and MASTER_PORT are not set" in res.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- launchers

DIES = """
import os, torch
CALLS = [0]
def reward(images, prompts):
    if prompts[0] == "two red spheres" and os.environ.get("DIE_ONCE") and not os.path.exists(os.environ["DIE_ONCE"]):
        CALLS[0] += 1
        if CALLS[0] == 2:  # this rank's process ends in the middle of the prompt, after a checkpoint
            open(os.environ["DIE_ONCE"], "w").close()
            os._exit(1)
    return -100.0 * ((images - 0.5) ** 2).flatten(1).mean(1)
"""


def test_torchrun_prompt_sharding_gives_one_process_policies_even_when_a_rank_dies(tmp_path):
    """Four prompts dealt to two ranks (0: the 1st and 3rd, 1: the 2nd and 4th); rank 1's process ends in
    the middle of its second prompt. Every policy must be the one-process one, bit for bit: those the
    ranks finished, and the one a rerun resumes from its checkpoint."""
    reward = tmp_path / "dies.py"
    reward.write_text(DIES)
    prompts = tmp_path / "set.txt"
    prompts.write_text("single\ta red sphere\nsingle\ta blue cube\ncolour\ta green cube\ncounting\ttwo red spheres\n")
    args = ["--prompts", prompts, "--reward", f"{reward}:reward", "--checkpoint-every", 1, *FAST]
    res = invoke("train", *args, "--out-dir", tmp_path / "one")
    assert res.exit_code == 0, res.output

    env = dict(launcher_env(tmp_path), DIE_ONCE=str(tmp_path / "died"))
    cmd = [*launcher("torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "findcli", "train",
           *map(str, args), "--out-dir", str(tmp_path / "two")]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "died").exists() and run.returncode != 0, run.stdout[-3000:] + run.stderr[-3000:]
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["world_size"] == 2 and index["complete"] is False
    entries = index["prompts"]
    assert [e["rank"] for e in entries.values()] == [0, 1, 0, 1]  # dealt round-robin
    assert entries["a red sphere"]["status"] == entries["a blue cube"]["status"] == "done"
    assert entries["a green cube"]["status"] in ("done", "interrupted")  # rank 0 finished it, or torchrun stopped it
    died = entries["two red spheres"]
    assert died["status"] == "failed" and "rank 1" in died["error"] and "stopped while training it" in died["error"]
    finished = {p: (tmp_path / "two" / e["file"]).stat().st_mtime_ns for p, e in entries.items() if e["status"] == "done"}

    res = invoke("train", *args, "--out-dir", tmp_path / "two")  # the same command (here on one process) resumes
    assert res.exit_code == 0, res.output
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    assert index["complete"] is True and index["counts"]["done"] == 4
    died = index["prompts"]["two red spheres"]
    assert died["attempts"] == 2 and died["resumed_from"] == 1 and "stopped while training it" in died["errors"][0]
    for p, mtime in finished.items():  # what the ranks finished is kept as they wrote it
        assert (tmp_path / "two" / index["prompts"][p]["file"]).stat().st_mtime_ns == mtime
    for p, e in index["prompts"].items():
        a, b = load_policy(tmp_path / "one" / e["file"]).policy, load_policy(tmp_path / "two" / e["file"]).policy
        assert torch.equal(a.mu, b.mu) and torch.equal(a.log_sigma, b.log_sigma), p


def test_accelerate_launch_splits_the_samples_of_one_prompt_within_fp_tolerance(tmp_path):
    args = ["a red sphere", "--iterations", 2, "--batch", 5, "--steps", 4, "--eta", 0.5, "--device", "cpu",
            "--kernels", "torch"]
    accelerate = launcher("accelerate")  # a dependency of findcli; skipped where its script is missing
    res = invoke("train", *args, "--out", tmp_path / "one" / "p.pt")
    assert res.exit_code == 0, res.output
    cmd = [*accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "findcli", "train", *map(str, args), "--out", str(tmp_path / "two" / "p.pt")]
    run = subprocess.run(cmd, cwd=tmp_path, env=launcher_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ranks=2: each iteration's 5 images split" in run.stdout
    assert run.stdout.count("find train 'a red sphere'") == 1  # rank 1 prints nothing

    one, two = load_policy(tmp_path / "one" / "p.pt"), load_policy(tmp_path / "two" / "p.pt")
    assert two.meta["iteration"] == 2
    torch.testing.assert_close(two.policy.mu, one.policy.mu, rtol=0, atol=2e-4)
    torch.testing.assert_close(two.policy.log_sigma, one.policy.log_sigma, rtol=0, atol=2e-4)
    assert (one.policy.mu.abs().max()) > 0.1  # it moved: the tolerance is small against the update
    (_, s1), (_, s2) = load_checkpoint(tmp_path / "one" / "p.pt"), load_checkpoint(tmp_path / "two" / "p.pt")
    for m1, m2 in zip(s1["metrics"], s2["metrics"]):  # every image of every batch, gathered from both ranks
        for k in ("reward_mean", "reward_min", "reward_max", "value", "clipfrac"):
            assert abs(m1[k] - m2[k]) <= 1e-4 * max(1.0, abs(m1[k])), (k, m1[k], m2[k])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
