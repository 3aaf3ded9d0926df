"""The Triton kernels on a GPU in bf16 at tiny_LLaMA_1b sizes, against fp32 references, and under
torch.compile. Run with ``pytest -m cuda tests/test_kernels_cuda.py`` on a CUDA machine."""

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# tiny_LLaMA_1b, micro batch of 8 sequences
B, T = 8, 2048
N_EMBD, N_HEAD, N_KV, HEAD_SIZE = 2048, 32, 4, 64
MLP_HIDDEN, VOCAB = 5632, 32000
BF16 = torch.bfloat16
MAX_REL_ERR = 1e-2


@pytest.fixture(scope="module")
def ops():
    from lit_gpt.kernels import OPS

    return OPS


@pytest.fixture
def gen():
    g = torch.Generator(device="cuda")
    g.manual_seed(torch.seed() % 2**31)
    return g


def randn(gen, *shape, scale=1.0, dtype=BF16):
    return (torch.randn(shape, generator=gen, device="cuda") * scale).to(dtype)


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    assert torch.isfinite(actual).all(), "non-finite values"
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


def run_and_grads(fn, inputs, grads_out=None):
    """Outputs of fn(*inputs) and the gradients of the inputs that require grad."""
    out = fn(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if grads_out is None:
        grads_out = [torch.ones_like(o) for o in out]
    grads = torch.autograd.grad(out, leaves, [g.to(o.dtype) for g, o in zip(grads_out, out)])
    return out, grads


def fp32_copy(t):
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        return t
    c = t.detach().float()
    return c.requires_grad_(t.requires_grad)


def check_against_fp32(fn, ref_fn, inputs, gen, fp32_inputs=None):
    """fn on bf16 inputs vs ref_fn on fp32 copies: outputs and all input gradients."""
    fp32_inputs = fp32_inputs or [fp32_copy(t) for t in inputs]
    ref_out = ref_fn(*fp32_inputs)
    ref_out = ref_out if isinstance(ref_out, tuple) else (ref_out,)
    grads_out = [torch.randn(o.shape, generator=gen, device="cuda") for o in ref_out]
    out, grads = run_and_grads(fn, inputs, grads_out)
    ref_out, ref_grads = run_and_grads(ref_fn, fp32_inputs, grads_out)
    errors = {f"out{i}": rel_err(o.float(), r) for i, (o, r) in enumerate(zip(out, ref_out))}
    errors.update({f"grad{i}": rel_err(g.float(), r) for i, (g, r) in enumerate(zip(grads, ref_grads))})
    bad = {k: v for k, v in errors.items() if not v < MAX_REL_ERR}
    assert not bad, f"relative errors over {MAX_REL_ERR}: {bad} (all: {errors})"
    return out, grads


def loss_inputs(gen):
    """(hidden, weight, targets, ignore_index) of the fused loss, about 5% of the targets ignored."""
    N = B * T
    hidden = randn(gen, N, N_EMBD).requires_grad_(True)
    weight = randn(gen, VOCAB, N_EMBD, scale=0.02).requires_grad_(True)
    targets = torch.randint(0, VOCAB, (N,), generator=gen, device="cuda")
    targets[torch.rand(N, generator=gen, device="cuda") < 0.05] = -100
    return hidden, weight, targets, -100


def rope_table(T, D, base=10000.0):
    inv = 1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float32, device="cuda") / D)
    angles = torch.outer(torch.arange(T, dtype=torch.float32, device="cuda"), inv).repeat(1, 2)
    return angles.cos(), angles.sin()


def test_rms_norm_bf16(ops, gen):
    from lit_gpt import ops as ref_ops

    x = randn(gen, B, T, N_EMBD).requires_grad_(True)
    w = (1.0 + randn(gen, N_EMBD, scale=0.1)).requires_grad_(True)
    out, _ = check_against_fp32(ops.rms_norm, ref_ops.rms_norm, (x, w, 1e-5), gen)
    assert out[0].dtype == BF16


def test_rope_bf16_on_qkv_slices(ops, gen):
    from lit_gpt import ops as ref_ops

    qkv = randn(gen, B, T, N_HEAD + 2 * N_KV, HEAD_SIZE).requires_grad_(True)
    q, k = qkv[:, :, :N_HEAD], qkv[:, :, N_HEAD : N_HEAD + N_KV]
    cos, sin = rope_table(T, HEAD_SIZE)
    qkv32 = fp32_copy(qkv)
    inputs32 = [qkv32[:, :, :N_HEAD], qkv32[:, :, N_HEAD : N_HEAD + N_KV], cos, sin]
    out, _ = check_against_fp32(ops.apply_rope, ref_ops.apply_rope, (q, k, cos, sin), gen, inputs32)
    assert out[0].is_contiguous() and out[0].shape == q.shape and out[0].dtype == BF16


def test_swiglu_bf16(ops, gen):
    from lit_gpt import ops as ref_ops

    gate = randn(gen, B, T, MLP_HIDDEN, scale=2.0).requires_grad_(True)
    up = randn(gen, B, T, MLP_HIDDEN).requires_grad_(True)
    check_against_fp32(ops.swiglu, ref_ops.swiglu, (gate, up), gen)


def test_linear_cross_entropy_bf16(ops, gen):
    from lit_gpt import ops as ref_ops

    check_against_fp32(ops.linear_cross_entropy, ref_ops.linear_cross_entropy, loss_inputs(gen), gen)


@pytest.mark.parametrize("compiled", [False, True])
def test_linear_cross_entropy_memory(ops, gen, compiled):
    # The fused op must never hold the N x V logits (1 GiB in bf16 here): its extra memory is one
    # chunk of logits (250 MiB) plus the two gradients, also when Inductor schedules the chunks.
    N = B * T
    hidden = randn(gen, N, N_EMBD).requires_grad_(True)
    weight = randn(gen, VOCAB, N_EMBD, scale=0.02).requires_grad_(True)
    targets = torch.randint(0, VOCAB, (N,), generator=gen, device="cuda")
    fn = ops.linear_cross_entropy
    if compiled:
        torch._dynamo.reset()
        fn = torch.compile(fn, fullgraph=True)
        fn(hidden, weight, targets).backward()  # compile outside the measured region
        hidden.grad = weight.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = fn(hidden, weight, targets)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    logits_bytes = N * VOCAB * 2
    assert extra < logits_bytes, f"peak extra memory {extra / 2**20:.0f} MiB"


# ---------------------------------------------------------------- torch.compile


def _compiled_matches_eager(fn, inputs, gen, tol=MAX_REL_ERR):
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)  # fullgraph: a graph break fails the test
    out_e, grads_e = run_and_grads(fn, inputs)
    out_c, grads_c = run_and_grads(compiled, inputs)
    for a, b in zip(out_c + grads_c, out_e + grads_e):
        assert rel_err(a.float(), b.float()) < tol


def test_compile_each_op(ops, gen):
    b, t = 2, 256
    x = randn(gen, b, t, N_EMBD).requires_grad_(True)
    w = (1.0 + randn(gen, N_EMBD, scale=0.1)).requires_grad_(True)
    _compiled_matches_eager(lambda x, w: ops.rms_norm(x, w, 1e-5).float().square().sum(), (x, w), gen)

    qkv = randn(gen, b, t, N_HEAD + 2 * N_KV, HEAD_SIZE).requires_grad_(True)
    cos, sin = rope_table(t, HEAD_SIZE)

    def rope_fn(qkv, cos, sin):
        q, k = ops.apply_rope(qkv[:, :, :N_HEAD], qkv[:, :, N_HEAD : N_HEAD + N_KV], cos, sin)
        return (q.float().square().sum() + k.float().sum()).reshape(1)

    _compiled_matches_eager(rope_fn, (qkv, cos, sin), gen)

    gate = randn(gen, b, t, MLP_HIDDEN).requires_grad_(True)
    up = randn(gen, b, t, MLP_HIDDEN).requires_grad_(True)
    _compiled_matches_eager(lambda g, u: ops.swiglu(g, u).float().square().sum(), (gate, up), gen)

    hidden = randn(gen, b * t, N_EMBD).requires_grad_(True)
    weight = randn(gen, VOCAB, N_EMBD, scale=0.02).requires_grad_(True)
    targets = torch.randint(0, VOCAB, (b * t,), generator=gen, device="cuda")
    targets[::7] = -100

    def ce_fn(h, w):
        return ops.linear_cross_entropy(h * 1.0, w, targets, -100, chunk_size=200)

    _compiled_matches_eager(ce_fn, (hidden, weight), gen)


def test_compile_dynamic_shapes(ops, gen):
    """Compiled with symbolic shapes (as after a recompile for a new batch size), two sizes each."""
    for b, t in ((2, 64), (3, 48)):
        x = randn(gen, b, t, N_EMBD).requires_grad_(True)
        w = (1.0 + randn(gen, N_EMBD, scale=0.1)).requires_grad_(True)
        qkv = randn(gen, b, t, N_HEAD + 2 * N_KV, HEAD_SIZE).requires_grad_(True)
        cos, sin = rope_table(t, HEAD_SIZE)
        gate = randn(gen, b, t, MLP_HIDDEN).requires_grad_(True)
        head = randn(gen, 1000, N_EMBD, scale=0.02).requires_grad_(True)
        targets = torch.randint(0, 1000, (b, t), generator=gen, device="cuda")

        def fn(x, w, qkv, gate, head):
            h = ops.rms_norm(x, w, 1e-5)
            q, k = ops.apply_rope(qkv[:, :, :N_HEAD], qkv[:, :, N_HEAD : N_HEAD + N_KV], cos, sin)
            # swiglu(gate, gate): one tensor twice, which needs the wrapper's workaround under compile
            s = ops.swiglu(gate, gate).float().mean() + q.float().mean() + k.float().mean()
            return ops.linear_cross_entropy(h, head, targets, chunk_size=50) + s

        torch._dynamo.reset()
        compiled = torch.compile(fn, dynamic=True)
        inputs = (x, w, qkv, gate, head)
        out_e, grads_e = run_and_grads(fn, inputs)
        out_c, grads_c = run_and_grads(compiled, inputs)
        for a, b_ in zip(out_c + grads_c, out_e + grads_e):
            assert rel_err(a.float(), b_.float()) < MAX_REL_ERR


def test_compile_block_with_all_ops(ops, gen):
    """A pre-norm block in the shape the model uses them, compiled as one graph. In fp32: in bf16,
    Inductor's fusions round differently from eager, and summed gradients (the norm weight's) then
    differ by a few percent between two equally valid results; in fp32 they agree far closer."""
    b, t, n_embd, n_head, n_kv, hs, hidden_mlp, vocab = 2, 128, 256, 8, 2, 32, 688, 1000
    f32 = torch.float32
    params = {
        "norm": (1.0 + randn(gen, n_embd, scale=0.1, dtype=f32)),
        "qkv": randn(gen, (n_head + 2 * n_kv) * hs, n_embd, scale=0.05, dtype=f32),
        "fc1": randn(gen, hidden_mlp, n_embd, scale=0.05, dtype=f32),
        "fc2": randn(gen, hidden_mlp, n_embd, scale=0.05, dtype=f32),
        "proj": randn(gen, n_embd, hidden_mlp, scale=0.05, dtype=f32),
        "head": randn(gen, vocab, n_embd, scale=0.05, dtype=f32),
    }
    for p in params.values():
        p.requires_grad_(True)
    x = randn(gen, b, t, n_embd, dtype=f32)
    targets = torch.randint(0, vocab, (b, t), generator=gen, device="cuda")
    cos, sin = rope_table(t, hs)

    def block(x, norm, qkv_w, fc1, fc2, proj, head):
        h = ops.rms_norm(x, norm, 1e-5)
        qkv = (h @ qkv_w.t()).view(b, t, n_head + 2 * n_kv, hs)
        q, k = ops.apply_rope(qkv[:, :, :n_head], qkv[:, :, n_head : n_head + n_kv], cos, sin)
        h = h + q.reshape(b, t, -1)[..., :n_embd] + k.reshape(b, t, -1).repeat(1, 1, n_embd // (n_kv * hs))
        h = h + ops.swiglu(h @ fc1.t(), h @ fc2.t()) @ proj.t()
        return ops.linear_cross_entropy(ops.rms_norm(h, norm, 1e-5), head, targets)

    _compiled_matches_eager(block, (x, *params.values()), gen, tol=1e-3)


# ---------------------------------------------------------------- liger (optional)


def test_liger_backend_matches_reference(gen):
    pytest.importorskip("liger_kernel")
    from lit_gpt import ops as ref_ops
    from lit_gpt.ops import get_ops

    liger = get_ops("liger")
    x = randn(gen, B, T, N_EMBD).requires_grad_(True)
    w = (1.0 + randn(gen, N_EMBD, scale=0.1)).requires_grad_(True)
    check_against_fp32(liger.rms_norm, ref_ops.rms_norm, (x, w, 1e-5), gen)

    qkv = randn(gen, B, T, N_HEAD + 2 * N_KV, HEAD_SIZE).requires_grad_(True)
    q, k = qkv[:, :, :N_HEAD], qkv[:, :, N_HEAD : N_HEAD + N_KV]
    cos, sin = rope_table(T, HEAD_SIZE)
    qkv32 = fp32_copy(qkv)
    inputs32 = [qkv32[:, :, :N_HEAD], qkv32[:, :, N_HEAD : N_HEAD + N_KV], cos, sin]
    qkv_before = qkv.detach().clone()
    check_against_fp32(liger.apply_rope, ref_ops.apply_rope, (q, k, cos, sin), gen, inputs32)
    assert torch.equal(qkv.detach(), qkv_before)

    gate = randn(gen, B, T, MLP_HIDDEN, scale=2.0).requires_grad_(True)
    up = randn(gen, B, T, MLP_HIDDEN).requires_grad_(True)
    gate32, up32 = fp32_copy(gate), fp32_copy(up)  # liger overwrites gate/up in its backward
    check_against_fp32(liger.swiglu, ref_ops.swiglu, (gate, up), gen, [gate32, up32])

    check_against_fp32(liger.linear_cross_entropy, ref_ops.linear_cross_entropy, loss_inputs(gen), gen)


def test_quack_backend_matches_reference(gen):
    pytest.importorskip("quack")
    from lit_gpt import ops as ref_ops
    from lit_gpt.ops import get_ops

    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("quack-kernels' CuTe DSL kernels need sm90 or newer")
    quack = get_ops("quack")
    x = randn(gen, B, T, N_EMBD).requires_grad_(True)
    w = (1.0 + randn(gen, N_EMBD, scale=0.1)).requires_grad_(True)
    check_against_fp32(quack.rms_norm, ref_ops.rms_norm, (x, w, 1e-5), gen)
    w32 = (1.0 + randn(gen, N_EMBD, scale=0.1, dtype=torch.float32)).requires_grad_(True)  # an fp32 master weight
    check_against_fp32(quack.rms_norm, ref_ops.rms_norm, (x, w32, 1e-5), gen)

    check_against_fp32(quack.linear_cross_entropy, ref_ops.linear_cross_entropy, loss_inputs(gen), gen)


def _train_losses(kernels: str, bf16: bool = True, steps: int = 50, seed: int = 0) -> list:
    """50 AdamW steps of a 4-layer model (tiny_LLaMA_1b widths) on a fixed pool of batches with the given
    kernels backend, in bf16 autocast or in fp32; the initial weights and the data are the same for all."""
    from lit_gpt.config import Config
    from lit_gpt.model import GPT
    from lit_gpt.training.trainer import grad_norm_and_clip, make_optimizer

    config = Config.from_name("tiny_LLaMA_1b", n_layer=4, block_size=512, kernels=kernels)
    torch.manual_seed(seed)
    with torch.device("cuda"):
        model = GPT(config)
    optimizer = make_optimizer(model, lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
    gen = torch.Generator(device="cuda").manual_seed(seed)
    # a small pool of batches seen repeatedly, so the loss falls well within 50 steps
    data = torch.randint(0, 2000, (4, 4, config.block_size + 1), generator=gen, device="cuda")
    losses = []
    for step in range(steps):
        batch = data[step % len(data)]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = model(batch[:, :-1], targets=batch[:, 1:])
        loss.backward()
        grad_norm_and_clip(model, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_fifty_training_steps_match_the_reference_within_bf16_noise():
    """bf16 noise measured, not guessed: the fused run may stray from the fp32 reference run by no more
    than the plain-PyTorch bf16 run does (1.5x, plus a little)."""
    exact = _train_losses("torch", bf16=False)
    reference, fused = _train_losses("torch"), _train_losses("triton")
    assert all(x == x for x in fused), "NaN loss"
    assert reference[-1] < reference[0] - 2.0 and fused[-1] < fused[0] - 2.0  # both really train
    noise = sum(abs(a - b) for a, b in zip(reference, exact)) / len(exact)
    fused_error = sum(abs(a - b) for a, b in zip(fused, exact)) / len(exact)
    print(
        f"mean |loss - fp32 loss| over 50 steps: torch bf16 {noise:.4f}, triton bf16 {fused_error:.4f}; "
        f"final fp32 {exact[-1]:.4f}, torch {reference[-1]:.4f}, triton {fused[-1]:.4f}"
    )
    # (single steps of this short, fast-falling run are chaotic: final losses of the two bf16 runs were
    # seen 0.4 apart on an H100, so the check is the mean distance over the run, not the last step)
    assert fused_error <= 1.5 * noise + 1e-3


def test_document_mask_flex_attention_against_fp32_dense(gen):
    """The FlexAttention document mask (compiled, bf16, grouped-query) against SDPA with the dense mask
    in fp32, forward and gradients, at tiny_LLaMA_1b's head layout."""
    from lit_gpt.model import _compiled_flex_attention, document_causal_mask

    b = 2
    idx = torch.randint(2, 1000, (b, T), generator=gen, device="cuda")
    idx[torch.rand(b, T, generator=gen, device="cuda") < 1 / 300] = 1
    block, dense = document_causal_mask(idx, 1), document_causal_mask(idx, 1, flex=False)
    q = randn(gen, b, N_HEAD, T, HEAD_SIZE).requires_grad_()
    k = randn(gen, b, N_KV, T, HEAD_SIZE).requires_grad_()
    v = randn(gen, b, N_KV, T, HEAD_SIZE).requires_grad_()

    def flex(q, k, v):
        return _compiled_flex_attention()(q, k, v, block_mask=block, enable_gqa=True)

    def reference(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True)

    check_against_fp32(flex, reference, [q, k, v], gen)
