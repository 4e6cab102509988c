"""Tests of the kernels backend choice (findcli.kernels.dispatch).

Oracle: the documented rule. auto = Triton iff importable and the tensors are on CUDA, else the
PyTorch reference; one override (set_backend, else env FIND_KERNELS); forcing Triton where it cannot
run raises FindError and never falls back; TRITON_INTERPRET=1 makes forced Triton run on CPU tensors.
Unavailability is simulated with monkeypatch, so these tests need neither a GPU nor a missing Triton.
"""

import pytest
import torch

from findcli.errors import FindError
from findcli.kernels import backend_info, dispatch, get_backend, policy_loss, sample_policy, set_backend

pytestmark = pytest.mark.usefixtures("fresh_backend")  # conftest.py: no set_backend, no FIND_KERNELS

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only resolved, never allocated on


@pytest.fixture
def no_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "HAS_TRITON", False)
    monkeypatch.setattr(dispatch, "_IMPORT_ERROR", "ModuleNotFoundError: No module named 'triton'")


@pytest.fixture
def compiled_for_gpu(monkeypatch):
    """As on a machine without TRITON_INTERPRET: the kernels were built for a GPU."""
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    monkeypatch.setattr(dispatch, "_kernels_interpreted", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_auto_picks_torch_on_cpu_even_under_the_interpreter():
    assert get_backend(CPU) == "torch"
    assert get_backend("cpu") == "torch"
    assert backend_info(CPU)["resolved"] == "torch"


@pytest.mark.skipif(not dispatch.HAS_TRITON, reason="triton is not importable here")
def test_auto_picks_triton_for_cuda_tensors():
    assert get_backend(CUDA) == "triton"


def test_auto_picks_torch_for_cuda_tensors_without_triton(no_triton):
    assert get_backend(CUDA) == "torch"
    info = backend_info(CUDA)
    assert info["resolved"] == "torch" and "not importable" in info["reason"]


def test_forced_torch_is_torch_everywhere():
    set_backend("torch")
    assert get_backend(CPU) == "torch" and get_backend(CUDA) == "torch"


@pytest.mark.skipif(not dispatch.HAS_TRITON or not dispatch._kernels_interpreted(),
                    reason="needs TRITON_INTERPRET=1 set before findcli.kernels was imported (conftest does it without CUDA)")
def test_forced_triton_runs_on_cpu_under_the_interpreter():
    set_backend("triton")
    assert get_backend(CPU) == "triton"
    info = backend_info(CPU)
    assert info == {"requested": "triton", "resolved": "triton", "reason": info["reason"]}
    assert "interpreter" in info["reason"]
    z, logp = sample_policy(torch.zeros(10), torch.zeros(10), 0, 2)  # and it actually launches
    assert z.shape == (2, 10) and torch.isfinite(logp).all()


def test_forced_triton_without_triton_is_an_error_not_a_fallback(no_triton):
    set_backend("triton")
    with pytest.raises(FindError, match="not importable"):
        get_backend(CUDA)
    info = backend_info(CUDA)
    assert info["requested"] == "triton" and info["resolved"] is None and "cannot run" in info["reason"]
    with pytest.raises(FindError):
        sample_policy(torch.zeros(4), torch.zeros(4), 0, 1)


def test_forced_triton_on_cpu_without_the_interpreter_is_an_error(compiled_for_gpu):
    set_backend("triton")
    with pytest.raises(FindError, match="TRITON_INTERPRET=1"):
        get_backend(CPU)
    z = torch.zeros(2, 4)
    mu = torch.zeros(4, requires_grad=True)
    with pytest.raises(FindError):
        policy_loss(z, mu, torch.zeros(4, requires_grad=True), torch.zeros(2), torch.ones(2), 0.2, 0.0)


def test_interpreter_set_too_late_is_named_in_the_error(compiled_for_gpu, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    set_backend("triton")
    with pytest.raises(FindError, match="after findcli.kernels was imported"):
        get_backend(CPU)


def test_env_var_is_read_when_set_backend_was_never_called(monkeypatch, compiled_for_gpu):
    monkeypatch.setenv("FIND_KERNELS", "triton")
    assert backend_info(CPU)["requested"] == "triton"
    with pytest.raises(FindError):
        get_backend(CPU)
    monkeypatch.setenv("FIND_KERNELS", "TORCH")  # case-insensitive
    assert get_backend(CPU) == "torch"


def test_set_backend_overrides_the_env_var(monkeypatch):
    monkeypatch.setenv("FIND_KERNELS", "triton")
    set_backend("torch")
    assert get_backend(CPU) == "torch" and backend_info(CPU)["requested"] == "torch"


def test_unknown_names_are_errors(monkeypatch):
    with pytest.raises(FindError, match="auto, triton, torch"):
        set_backend("cuda")
    monkeypatch.setenv("FIND_KERNELS", "fast")
    with pytest.raises(FindError, match="FIND_KERNELS"):
        get_backend(CPU)
    info = backend_info(CPU)  # `find info` reports rather than crashes
    assert info["resolved"] is None and "FIND_KERNELS" in info["reason"]
