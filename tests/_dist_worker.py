"""What each process of test_distributed's in-process gloo group runs (a module of its own, so the
spawned children import only this). Inputs are rebuilt from fixed seeds in every process."""

import torch


def inputs():
    """A policy's parameters, N = 10 replayed samples, their behaviour log-probs and advantages."""
    from findcli.config import default

    g = torch.Generator().manual_seed(7)
    d = 64
    mu, log_sigma = 0.3 * torch.randn(d, generator=g), 0.1 * torch.randn(d, generator=g)
    zs = mu + log_sigma.exp() * torch.randn(10, d, generator=g)
    from findcli.kernels.gaussian import mean_log_density

    lps = mean_log_density(zs, mu, log_sigma) + 0.01 * torch.randn(10, generator=g)
    advs = torch.randn(10, generator=g)
    cfg = default(inner_epochs=3, clip=0.2, kl_weight=0.01, lr=0.05)
    return mu, log_sigma, zs, lps, advs, cfg


def update(shard=None):
    """findcli.engine.policy_update from inputs(), with or without sample sharding."""
    from findcli.engine import policy_update
    from findcli.policy import GaussianPolicy

    mu, log_sigma, zs, lps, advs, cfg = inputs()
    policy = GaussianPolicy((4, 4, 4), mu, log_sigma)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    agg = policy_update(policy, opt, zs, lps, advs, cfg, shard)
    return policy.mu.detach().clone(), policy.log_sigma.detach().clone(), agg


def worker(rank: int, size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from findcli.distributed import SampleShard, World

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        shard = SampleShard(World(rank, size, rank), torch.device("cpu"))
        mu, log_sigma, agg = update(shard)
        full = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3) / 7  # gathered from uneven shares (3 + 2 rows)
        lo, hi = shard.rows(5)
        gathered = shard.gather(full[lo:hi], 5)
        half = shard.gather(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float16)[lo:hi], 5)
        agreed = shard.agree(15 if rank == 1 else None)
        none = shard.agree(None)
        all_true = shard.all_true(rank == 0), shard.all_true(True)
        torch.save({"mu": mu, "log_sigma": log_sigma, "agg": agg, "gathered": gathered, "half": half,
                    "agreed": agreed, "none": none, "all_true": all_true, "rows": (lo, hi)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
