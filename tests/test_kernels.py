"""The Triton kernels against the reference ops of ``lit_gpt.ops``, in fp32 at small odd shapes.

Without a GPU the kernels run in Triton's interpreter on CPU tensors. Triton (3.6 and 3.8) picks
interpreter or compiler when a function is decorated with ``@triton.jit``, reading TRITON_INTERPRET
then; that includes triton's own ``tl.sum``/``tl.max``..., decorated when ``triton.language`` is first
imported. So the variable must be set before anything imports triton.language (tests/conftest.py
does it first thing; this module repeats it for runs that bypass that conftest) and a process that
imported triton without it cannot switch to the interpreter: that is reported as an error here
instead of as confusing kernel failures. With a GPU the same checks run on it, compiled.
"""

import importlib
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

if not torch.cuda.is_available():
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if os.environ.get("TRITON_INTERPRET") != "1" or not isinstance(tl.standard.sum, InterpretedFunction):
        raise RuntimeError(
            "no CUDA device, and triton.language was imported before TRITON_INTERPRET=1 was set: the "
            "Triton kernels can run neither compiled nor interpreted in this process. Set "
            "TRITON_INTERPRET=1 before importing triton (tests/conftest.py does this)."
        )

import lit_gpt.kernels as kernels  # noqa: E402
import lit_gpt.kernels.cross_entropy as ce_module  # noqa: E402
import lit_gpt.kernels.rms_norm as rms_norm_module  # noqa: E402
from lit_gpt import ops as ref_ops  # noqa: E402

OPS = kernels.OPS
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-5


@pytest.fixture
def gen():
    """A fresh random generator per test; its seed is printed so a failure can be replayed."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def randn(gen, *shape, scale=1.0, requires_grad=False):
    t = (torch.randn(tuple(shape), generator=gen) * scale).to(DEVICE)
    return t.requires_grad_(requires_grad)


def assert_close(actual, expected, what=""):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = max(expected.abs().max().item(), 1e-3) if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= TOL * scale, f"{what}: max abs error {err:.3e} > {TOL:g} * {scale:.3e}"


def check_fn_and_grads(fn, ref_fn, inputs, gen, grad_map=None):
    """Forward outputs and gradients of all inputs that require grad, against the reference."""
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    out = fn(*inputs)
    ref = ref_fn(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for i, (o, r) in enumerate(zip(out, ref)):
        assert_close(o, r, f"output {i}")
    grads_out = [randn(gen, *o.shape) for o in ref]
    if grad_map is not None:
        grads_out = [grad_map(g) for g in grads_out]
    got = torch.autograd.grad(out, leaves, grads_out)
    want = torch.autograd.grad(ref, leaves, grads_out)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, f"grad of input {i}")


def test_get_ops_returns_this_package():
    assert ref_ops.get_ops("triton") is OPS
    assert OPS.name == "triton"
    assert "liger_kernel" not in sys.modules or "lit_gpt.kernels.liger" in sys.modules


# ---------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("shape", [(37, 45), (2, 3, 64), (5, 3)])
@pytest.mark.parametrize("bwd_programs", [512, 4])
def test_rms_norm(gen, monkeypatch, shape, bwd_programs):
    # 4 programs: each walks several rows (and the last fewer) of the weight-gradient partial sums
    monkeypatch.setattr(rms_norm_module, "BWD_PROGRAMS", bwd_programs)
    x = randn(gen, *shape, requires_grad=True)
    w = randn(gen, shape[-1], requires_grad=True)
    check_fn_and_grads(OPS.rms_norm, ref_ops.rms_norm, (x, w, 1e-5), gen)


def test_rms_norm_strided_input(gen):
    base = randn(gen, 3, 7, 2 * 37, requires_grad=True)
    x = base[..., ::2]  # last dim not unit-stride
    w = randn(gen, 37, requires_grad=True)
    check_fn_and_grads(OPS.rms_norm, ref_ops.rms_norm, (x, w, 1e-6), gen)
    assert base.grad is None


# ---------------------------------------------------------------- RoPE


def _rope_table(T, D, base=10000.0):
    inv = 1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = torch.outer(torch.arange(T, dtype=torch.float32), inv).repeat(1, 2)
    return angles.cos().to(DEVICE), angles.sin().to(DEVICE)


@pytest.mark.parametrize("B,T,n_q,n_kv,D", [(2, 5, 3, 1, 6), (1, 7, 4, 2, 10), (2, 3, 5, 5, 2)])
@pytest.mark.parametrize("table", ["rope", "random"])
def test_rope_on_fused_qkv_slices(gen, B, T, n_q, n_kv, D, table):
    qkv = randn(gen, B, T, n_q + 2 * n_kv, D, requires_grad=True)
    q = qkv[:, :, :n_q]
    k = qkv[:, :, n_q : n_q + n_kv]
    if table == "rope":
        cos, sin = _rope_table(T, D)
    else:  # halves that differ check the exact transposed rotation in the backward
        cos, sin = randn(gen, T, D), randn(gen, T, D)
    check_fn_and_grads(OPS.apply_rope, ref_ops.apply_rope, (q, k, cos, sin), gen)
    q_out, k_out = OPS.apply_rope(q, k, cos, sin)
    assert q_out.is_contiguous() and k_out.is_contiguous()


def test_rope_noncontiguous_grads_and_separate_inputs(gen):
    B, T, H, D = 2, 5, 3, 6
    q = randn(gen, B, H, T, D, requires_grad=True).transpose(1, 2)  # (B, T, H, D) view of a (B, H, T, D)
    k = randn(gen, B, T, 1, D, requires_grad=True)
    cos, sin = _rope_table(T, D)
    # gradients arrive transposed (as from attention in (B, H, T, D) layout)
    check_fn_and_grads(
        OPS.apply_rope,
        ref_ops.apply_rope,
        (q, k, cos, sin),
        gen,
        grad_map=lambda g: g.transpose(1, 2).contiguous().transpose(1, 2),
    )


# ---------------------------------------------------------------- SwiGLU


def test_swiglu_same_tensor_twice(gen):
    x = randn(gen, 4, 37, scale=3.0, requires_grad=True)
    check_fn_and_grads(lambda a: OPS.swiglu(a, a), lambda a: ref_ops.swiglu(a, a), (x,), gen)


@pytest.mark.parametrize("shape", [(3, 5, 37), (1, 1), (2, 1111)])
def test_swiglu_contiguous(gen, shape):
    gate = randn(gen, *shape, scale=3.0, requires_grad=True)
    up = randn(gen, *shape, requires_grad=True)
    check_fn_and_grads(OPS.swiglu, ref_ops.swiglu, (gate, up), gen)


@pytest.mark.parametrize("contiguous_gate", [False, True])
def test_swiglu_slices_of_fused_projection(gen, contiguous_gate):
    fused = randn(gen, 3, 5, 2 * 37, scale=3.0, requires_grad=True)
    gate, up = fused[..., :37], fused[..., 37:]
    if contiguous_gate:  # mixed layouts
        gate = gate.contiguous()
    check_fn_and_grads(OPS.swiglu, ref_ops.swiglu, (gate, up), gen)


# ---------------------------------------------------------------- fused linear cross-entropy


def _ce_inputs(gen, N=29, C=11, V=131, n_ignored=5, ignore_index=-100):
    hidden = randn(gen, N, C, requires_grad=True)
    weight = randn(gen, V, C, scale=0.5, requires_grad=True)
    targets = torch.randint(0, V, (N,), generator=gen)
    ignored = torch.randperm(N, generator=gen)[:n_ignored]
    targets[ignored] = ignore_index
    return hidden, weight, targets.to(DEVICE)


@pytest.mark.parametrize("chunk_size", [8, 29, None])
@pytest.mark.parametrize("max_block_v", [8192, 32])
def test_linear_cross_entropy(gen, monkeypatch, chunk_size, max_block_v):
    # 32-wide slices: each row of 131 logits = 4 full slices + a partial one; 8192: one slice
    monkeypatch.setattr(ce_module, "MAX_BLOCK_V", max_block_v)
    hidden, weight, targets = _ce_inputs(gen)

    def fused(h, w, t, ii):
        return OPS.linear_cross_entropy(h, w, t, ii, chunk_size=chunk_size)

    check_fn_and_grads(fused, ref_ops.linear_cross_entropy, (hidden, weight, targets, -100), gen)


def test_linear_cross_entropy_custom_ignore_index_3d_and_grad_scale(gen):
    hidden, weight, targets = _ce_inputs(gen, N=2 * 13, ignore_index=-1)
    h3 = hidden.detach().view(2, 13, -1).requires_grad_(True)
    t2 = targets.view(2, 13)
    loss = OPS.linear_cross_entropy(h3, weight, t2, ignore_index=-1, chunk_size=7)
    ref = ref_ops.linear_cross_entropy(h3.reshape(-1, h3.shape[-1]), weight, targets, ignore_index=-1)
    assert_close(loss, ref, "loss")
    got = torch.autograd.grad(loss * 3.5, (h3, weight))
    want = torch.autograd.grad(ref * 3.5, (h3, weight))
    for g, w, name in zip(got, want, ("hidden", "weight")):
        assert_close(g, w, f"grad {name}")


def test_linear_cross_entropy_partial_requires_grad_and_no_grad(gen):
    hidden, weight, targets = _ce_inputs(gen)
    h = hidden.detach()
    loss = OPS.linear_cross_entropy(h, weight, targets, chunk_size=10)
    ref = ref_ops.linear_cross_entropy(h, weight, targets)
    assert_close(loss, ref, "loss")
    (gw,) = torch.autograd.grad(loss, (weight,))
    (gw_ref,) = torch.autograd.grad(ref, (weight,))
    assert_close(gw, gw_ref, "grad weight")
    with torch.no_grad():
        loss = OPS.linear_cross_entropy(hidden, weight, targets, chunk_size=10)
        ref = ref_ops.linear_cross_entropy(hidden, weight, targets)
    assert loss.grad_fn is None
    assert_close(loss, ref, "no-grad loss")


def test_linear_cross_entropy_all_ignored_is_zero(gen):
    hidden, weight, targets = _ce_inputs(gen, N=6)
    targets = torch.full_like(targets, -100)
    loss = OPS.linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    assert loss.item() == 0.0
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    assert not gh.any() and not gw.any()


def test_chunk_policy():
    # tiny_LLaMA_1b: 16k tokens, V=32000, bf16 -> 4 chunks of 4096 rows (250 MiB of logits each)
    assert ce_module.default_chunk_rows(16384, 32000, 2) == 4096
    assert ce_module.default_chunk_rows(16384, 32000, 2, max_chunk_bytes=512 * 2**20) == 8192
    assert ce_module.default_chunk_rows(10, 32000, 2) == 10
    assert ce_module.default_chunk_rows(29, 131, 4, max_chunk_bytes=131 * 4 * 8) == 8  # 4 chunks: 8,8,8,5
    assert ce_module.default_chunk_rows(0, 131, 4) == 1


# ---------------------------------------------------------------- liger and quack backends


@pytest.mark.parametrize("backend, module", [("liger", "liger_kernel"), ("quack", "quack")])
def test_the_comparison_backends_are_optional(backend, module):
    try:
        importlib.import_module(module)
    except ImportError:
        with pytest.raises(ImportError, match=f"kernels backend '{backend}' is not available here"):
            ref_ops.get_ops(backend)
    else:
        pytest.skip(f"{module} is installed; tests/test_kernels_cuda.py checks it on a GPU")


def test_linear_cross_entropy_under_autocast_matches_the_reference():
    """Under autocast the fused op computes in the autocast dtype and returns fp32 gradients to fp32
    leaves, as the reference does (the pretraining loop's bf16-mixed path)."""
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    hidden = torch.randn(29, 16, requires_grad=True)
    weight = torch.randn(131, 16, requires_grad=True)
    targets = torch.randint(0, 131, (29,))
    targets[3] = -100
    grads = []
    for fn in (kernels.OPS.linear_cross_entropy, ref_ops.linear_cross_entropy):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(hidden, weight, targets)
        loss.backward()
        grads.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
        hidden.grad = weight.grad = None
    (l1, h1, w1), (l2, h2, w2) = grads
    assert h1.dtype == w1.dtype == torch.float32
    assert torch.allclose(l1, l2, rtol=2e-2)
    assert (h1 - h2).norm() / h2.norm() < 2e-2 and (w1 - w2).norm() / w2.norm() < 2e-2
