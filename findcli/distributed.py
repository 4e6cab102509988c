"""Several processes for one `find train`: the ranks that torchrun and `accelerate launch` describe in
the environment, the process group, and the two ways the work is split.

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT for the rendezvous);
without them a run is one process (World(0, 1, 0)) and nothing here is used.

  prompt sharding  `find train --prompts FILE`: prompt i of the prompts still to train goes to rank
                   i mod N (`round_robin`); each prompt's run is the 1-process run, bit for bit, so
                   no gradient is synchronised; the process group (gloo) only carries the plan from
                   rank 0 and the final barrier before rank 0 merges the index.
  sample sharding  `find train PROMPT`: every rank draws the same K latents from the iteration's seed
                   and rolls out its own contiguous rows [lo, hi) (`rows`; their per-step noise is
                   seeded by the global image index); the rewards are all-gathered, so the value
                   net, the advantages, the running reward std and the replay buffer are the full
                   batch's on every rank; each rank's policy loss over its rows of the replayed
                   samples is weighted by rows/N and the gradient all-reduced (summed): the
                   1-process gradient up to summation order (`SampleShard`). NCCL on CUDA, gloo on CPU.

One GPU per rank: `--device auto` (or `cuda`) becomes cuda:LOCAL_RANK (`rank_device`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence, TypeVar

import torch

from findcli.errors import FindError

T = TypeVar("T")

# A prompt set's ranks may wait hours for each other at the final barrier (one rank's prompts can take
# longer than another's): the process group's timeout must not end the run before they finish.
PROMPT_SET_TIMEOUT = datetime.timedelta(days=7)
# Sample sharding meets every iteration; a rank that is gone is seen at once (gloo: connection
# closed), so this only bounds a rank that hangs.
SAMPLE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    rank: int  # this process, 0 .. size - 1 (RANK)
    size: int  # processes in the job (WORLD_SIZE); 1: a plain single-process run
    local_rank: int  # this process's index on its machine (LOCAL_RANK): the GPU it uses

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World(0, 1, 0)


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise FindError(f"{name}={raw!r} in the environment is not an integer; torchrun and accelerate launch set "
                        f"it for each process (unset it to run one process)") from None


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The World that RANK / WORLD_SIZE / LOCAL_RANK describe (what torchrun and accelerate launch set);
    World(0, 1, 0) when WORLD_SIZE is unset or 1. One-line errors for values that cannot be right."""
    env = os.environ if env is None else env
    size = _int_env(env, "WORLD_SIZE")
    rank = _int_env(env, "RANK")
    if size is None or size == 1:
        if rank not in (None, 0):
            raise FindError(f"RANK={rank} is set but WORLD_SIZE is {size if size is not None else 'unset'}; start "
                            "the processes with torchrun or accelerate launch, or unset RANK")
        return SINGLE
    if size < 1:
        raise FindError(f"WORLD_SIZE={size} must be at least 1")
    if rank is None:
        raise FindError(f"WORLD_SIZE={size} is set but RANK is not; start the processes with torchrun or "
                        "accelerate launch (they set RANK, WORLD_SIZE and LOCAL_RANK for each)")
    if not 0 <= rank < size:
        raise FindError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size})")
    local = _int_env(env, "LOCAL_RANK")
    if local is None:
        local = rank
    if local < 0:
        raise FindError(f"LOCAL_RANK={local} must be at least 0")
    return World(rank, size, local)


def rank_device(device: str, world: World) -> str:
    """--device for this rank: one GPU per rank (auto or cuda -> cuda:LOCAL_RANK when CUDA is there);
    cpu and an explicit cuda:N stay as given."""
    if not world.distributed or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise FindError(f"LOCAL_RANK={world.local_rank} but this machine shows {count} GPU(s); start at most "
                        f"{count} processes per machine (torchrun --nproc-per-node {count}), one GPU each")
    return f"cuda:{world.local_rank}"


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_group(world: World, backend: str, timeout: datetime.timedelta, device: torch.device | None = None) -> bool:
    """Join the default process group (env:// rendezvous: MASTER_ADDR, MASTER_PORT); `device`: this
    rank's GPU for NCCL. Returns True when this call created the group (the caller destroys it with
    `leave_group`), False when it already existed."""
    import torch.distributed as dist

    if not dist.is_available():
        raise FindError("this torch build has no torch.distributed; install a standard torch wheel to run "
                        "across several processes")
    if dist.is_initialized():
        if dist.get_world_size() != world.size or dist.get_rank() != world.rank:
            raise FindError(f"a process group of {dist.get_world_size()} ranks already exists in this process, but "
                            f"RANK/WORLD_SIZE say rank {world.rank} of {world.size}")
        return False
    missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
    if missing:
        raise FindError(f"WORLD_SIZE={world.size} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                        "not set; start the processes with torchrun or accelerate launch, which set them")
    if backend == "nccl" and not dist.is_nccl_available():
        raise FindError("CUDA ranks need NCCL, which this torch build lacks; run on the CPU (--device cpu, gloo) "
                        "or install a CUDA torch wheel")
    kwargs = {}
    if backend == "nccl":
        device = torch.device(device if device is not None else f"cuda:{world.local_rank}")
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    try:
        store, _, _ = next(dist.rendezvous("env://", rank=world.rank, world_size=world.size, timeout=timeout))
        # torchrun --max-restarts: the agent's store outlives a restart, and the restarted ranks would read
        # the dead ones' addresses under the same keys (pytorch/pytorch#135712); keep each attempt apart.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt:
            store = dist.PrefixStore(f"findcli/attempt_{attempt}", store)
        dist.init_process_group(backend, store=store, rank=world.rank, world_size=world.size, timeout=timeout,
                                **kwargs)
    except (RuntimeError, ValueError, TimeoutError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise FindError(f"rank {world.rank} of {world.size} could not join the process group ({backend}: {first}); "
                        "check MASTER_ADDR/MASTER_PORT and that every rank was started") from None
    return True


def leave_group(created: bool) -> None:
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def sample_group(world: World, device: str) -> Iterator["SampleShard | None"]:
    """Sample sharding for one run: None for a single process; else the process group (NCCL for a
    CUDA --device, gloo for the CPU), joined here and left at the end, and its SampleShard."""
    if not world.distributed:
        yield None
        return
    from findcli.pipeline import resolve_device

    dev = resolve_device(device)
    created = init_group(world, backend_for(dev), SAMPLE_TIMEOUT, dev)
    try:
        yield SampleShard(world, dev)
    finally:
        leave_group(created)


def rows(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous rows [lo, hi) of n that `rank` of `size` takes: sizes differ by at most one, the
    first n mod size ranks taking the larger share (n = 5, size = 2: [0, 3) and [3, 5))."""
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def round_robin(items: Sequence[T], rank: int, size: int) -> list[T]:
    """Items rank, rank + size, rank + 2·size, ...: the prompts this rank trains."""
    return list(items[rank::size])


def broadcast(obj, src: int = 0):
    """`obj` of rank `src` on every rank (a picklable Python object)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _collective(fn):
    """A collective whose peers are gone (a rank's process ended: gloo and NCCL raise RuntimeError) ends
    this rank with one line instead of a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except RuntimeError as e:
            first = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise FindError(f"rank {self.rank} of {self.size}: another rank of this run is gone ({first}); the last "
                            "checkpoint rank 0 wrote is kept: start the same run again with --resume OUT.pt") from None
    return wrapper


class SampleShard:
    """The collectives of sample sharding, over the default process group, for the trainer
    (findcli.engine.FindTrainer): which rows this rank rolls out, the gather of per-image values, the
    gradient all-reduce, and agreeing to stop."""

    def __init__(self, world: World, device: torch.device):
        self.rank = world.rank  # this process's rank
        self.size = world.size  # number of ranks
        self.device = torch.device(device)  # where collectives run: the rank's GPU (NCCL) or the CPU (gloo)

    def rows(self, n: int) -> tuple[int, int]:
        return rows(n, self.rank, self.size)

    @_collective
    def gather(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """The (n, ...) tensor whose rows [lo, hi) each rank holds as `local`, on every rank, in row order.
        Carried as float64 (exact for fp16/bf16/fp32 values) and returned in local's dtype and device."""
        import torch.distributed as dist

        width = -(-int(n) // self.size)  # ceil: shares are padded to the largest
        pad = torch.zeros((width, *local.shape[1:]), dtype=torch.float64, device=self.device)
        pad[: local.shape[0]] = local.detach().to(self.device, torch.float64)
        parts = [torch.empty_like(pad) for _ in range(self.size)]
        dist.all_gather(parts, pad)
        pieces = []
        for r, part in enumerate(parts):
            lo, hi = rows(n, r, self.size)
            pieces.append(part[: hi - lo])
        return torch.cat(pieces).to(local.device, local.dtype)

    @_collective
    def all_reduce_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the parameters' gradients over the ranks, in place (one collective)."""
        import torch.distributed as dist

        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params]).to(self.device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        start = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[start:start + n].view_as(p.grad))
            start += n

    @_collective
    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks (float64)."""
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(x) for x in t.cpu()]

    @_collective
    def agree(self, signum: int | None) -> int | None:
        """A stop signal that any rank received, on every rank (None when none did), so that all ranks
        run the same number of iterations."""
        import torch.distributed as dist

        t = torch.tensor([int(signum or 0)], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) or None

    @_collective
    def all_true(self, flag: bool) -> bool:
        """True when `flag` is True on every rank."""
        import torch.distributed as dist

        t = torch.tensor([0 if flag else 1], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item()) == 0
