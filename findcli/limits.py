"""Every number a command accepts, checked in one place: finite, of the right kind, in range.

Typer parses `--guidance inf` and `--reward-weight nan` as floats and Python ints have no bound, so a
range check written as `x >= 0` lets `inf` through and `nan` compares false both ways. Each command
(and TrainConfig.validate, and the sampler settings read from a policy file) passes its numbers to
`check`, which raises one FindError naming the flag, the range and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from findcli.errors import FindError


@dataclass(frozen=True)
class Limit:
    lo: float  # smallest allowed value
    hi: float  # largest allowed value
    integer: bool = False  # must be an int (bools are refused too)
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False  # hi itself is not allowed
    hint: str = ""  # appended to the error, e.g. the usual value

    def describe(self) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        kind = "an integer" if self.integer else "a finite number"
        return f"{kind} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


SEED_MAX = 2**63 - 1  # torch.manual_seed and our BLAKE2b namespaces take any int64 >= 0

# name (the TrainConfig field / option, dashes as underscores) -> its limit
LIMITS: dict[str, Limit] = {
    # sampler
    "steps": Limit(1, 1000, True, hint="DDIM schedules have at most 1000 training timesteps"),
    "guidance": Limit(0, 100, hint="7.5 is usual; 1 turns classifier-free guidance off"),
    "eta": Limit(0, 1),
    "height": Limit(8, 16384, True),
    "width": Limit(8, 16384, True),
    "frames": Limit(1, 1024, True),
    "seed": Limit(0, SEED_MAX, True),
    # FIND update
    "iterations": Limit(1, 10_000_000, True),
    "batch": Limit(1, 4096, True),
    "lr": Limit(0, 10, lo_open=True),
    "value_lr": Limit(0, 10, lo_open=True),
    "value_hidden": Limit(1, 65536, True),
    "value_steps": Limit(1, 1000, True),
    "replay": Limit(1, 100_000, True),
    "inner_epochs": Limit(1, 1000, True),
    "clip": Limit(0, 1, lo_open=True, hi_open=True, hint="0.2 is the usual value"),
    "kl_weight": Limit(0, 1e6),
    "reward_weight": Limit(0, 1e6, lo_open=True, hint="to minimise a reward, negate it in its function"),
    "max_grad_norm": Limit(0, 1e6, hint="0 disables the clip"),
    "norm_window": Limit(2, 10_000_000, True),
    "adv_std_floor": Limit(0, 1e6, hint="a fraction of the reward's range; 0 disables the floor"),
    "adv_std_floor_above": Limit(0, 1, hint="a fraction of the reward's range; 0 floors at every reward level"),
    "validate_every": Limit(1, 10_000_000, True),
    "validate_n": Limit(1, 4096, True),
    "max_batch": Limit(1, 4096, True),
    "checkpoint_every": Limit(1, 10_000_000, True),
    "max_bad_batches": Limit(1, 1000, True),
    # sample / eval
    "n": Limit(1, 100_000, True),
}


def check(name: str, value: Any, flag: str | None = None) -> Any:
    """Return `value` if it satisfies LIMITS[name] (None passes: "not given"); else FindError."""
    if value is None:
        return value
    lim = LIMITS[name]
    flag = flag or "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and lim.integer:
        ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if ok:
        v = float(value) if not isinstance(value, int) else value
        ok = math.isfinite(v) and (v > lim.lo if lim.lo_open else v >= lim.lo) and \
            (v < lim.hi if lim.hi_open else v <= lim.hi)
    if not ok:
        shown = value if not isinstance(value, str) else repr(value)
        raise FindError(f"{flag} must be {lim.describe()} (got {shown})" + (f"; {lim.hint}" if lim.hint else ""))
    return value


def check_all(values: dict[str, Any], flags: dict[str, str] | None = None) -> None:
    """`check` every entry of `values` whose name has a limit (others are ignored)."""
    for name, value in values.items():
        if name in LIMITS:
            check(name, value, (flags or {}).get(name))
