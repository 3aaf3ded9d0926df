"""Our K-quant encoders against the gguf package's own decoders (which follow llama.cpp's layouts)."""

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from gguf import GGMLQuantizationType as Q  # noqa: E402

from lit_gpt.gguf_quants import gets_more_bits, quantize_k, tensor_type  # noqa: E402

# relative RMS error measured on Gaussian weights (lit_gpt/gguf_quants.py): 7.4%, 3.7%, 1.9%
GAUSSIAN_BOUND = {Q.Q4_K: 0.080, Q.Q5_K: 0.040, Q.Q6_K: 0.021}
# one code step of each type, as a fraction of a sub-block's range (Q4_K/Q5_K) or largest magnitude
# (Q6_K), with room for the 6/8-bit quantised sub-block scales
LEVELS = {Q.Q4_K: 15, Q.Q5_K: 31, Q.Q6_K: 32}


def round_trip(w, qtype):
    packed = quantize_k(w, qtype)
    assert packed.dtype == np.uint8
    assert packed.shape == w.shape[:-1] + (w.shape[-1] // 256 * gguf.GGML_QUANT_SIZES[qtype][1],)
    return gguf.quants.dequantize(packed, qtype)


def relative_error(w, restored):
    return np.linalg.norm(restored - w) / np.linalg.norm(w)


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q5_K, Q.Q6_K])
def test_gaussian_weights_round_trip_within_the_measured_error(qtype):
    w = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32) * 0.02
    restored = round_trip(w, qtype)
    assert restored.shape == w.shape
    error = relative_error(w, restored)
    assert 0 < error < GAUSSIAN_BOUND[qtype]
    # fewer bits, more error: the types are not mixed up
    if qtype != Q.Q6_K:
        assert error > relative_error(w, round_trip(w, Q.Q6_K)) * 1.5


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q5_K, Q.Q6_K])
def test_heavy_tailed_real_shaped_weights(qtype):
    """TinyLlama-1B's attn_v shape (256 rows of 2048), Student-t values with a few outlier columns, as
    trained weights have. Every value stays within one code step of its own sub-block plus the rounding
    of the sub-block scales, which are 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K) against the super-block's
    largest: 1/63 of the super-block's largest spread bounds that for all three."""
    rng = np.random.default_rng(1)
    w = (rng.standard_t(4, (256, 2048)) * 0.02).astype(np.float32)
    w[:, rng.choice(2048, 8, replace=False)] *= 20
    restored = round_trip(w, qtype)
    assert relative_error(w, restored) < GAUSSIAN_BOUND[qtype] * 1.7  # measured 9.8%, 5.1%, 3.0%
    sub = 16 if qtype == Q.Q6_K else 32
    x, err = w.reshape(-1, sub), np.abs(restored - w).reshape(-1, sub)
    spread = np.abs(x).max(1) if qtype == Q.Q6_K else x.max(1) - np.minimum(x.min(1), 0)
    super_spread = spread.reshape(-1, 256 // sub).max(1).repeat(256 // sub)
    assert (err.max(1) <= spread / LEVELS[qtype] + super_spread / 63).all()


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q5_K, Q.Q6_K])
def test_special_blocks(qtype):
    """Zeros stay exactly zero, constant and one-sign blocks decode close, nothing becomes NaN."""
    w = np.zeros((6, 256), dtype=np.float32)
    w[1] = 0.5
    w[2] = -np.linspace(0.1, 3.0, 256)
    w[3] = np.linspace(0.1, 3.0, 256)
    w[4, 7] = 1000.0  # a lone outlier
    w[5] = np.random.default_rng(2).standard_normal(256) * 1e-6  # tiny values (f16 scales)
    restored = round_trip(w, qtype)
    assert np.isfinite(restored).all()
    np.testing.assert_array_equal(restored[0], 0)
    for row in (1, 2, 3, 4):
        np.testing.assert_allclose(
            restored[row], w[row], atol=np.abs(w[row]).max() / LEVELS[qtype] * 1.1, err_msg=str(row)
        )
    assert relative_error(w[5], restored[5]) < 0.2


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="super-blocks of 256"):
        quantize_k(np.zeros((4, 100), dtype=np.float32), Q.Q4_K)
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_k(np.full((1, 256), np.nan, dtype=np.float32), Q.Q6_K)
    with pytest.raises(ValueError, match="not a K-quant"):
        quantize_k(np.zeros((1, 256), dtype=np.float32), Q.Q8_0)
    with pytest.raises(ValueError, match="not one of"):
        tensor_type("output.weight", (10, 256), "q3_k", 2)


def test_tensor_types_of_a_q4_k_m_file():
    n_layer = 22  # tiny_LLaMA_1b
    more = [i for i in range(n_layer) if gets_more_bits(i, n_layer)]
    assert more == [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]
    assert tensor_type("output.weight", (32000, 2048), "q4_k_m", n_layer) == Q.Q6_K
    assert tensor_type("token_embd.weight", (32000, 2048), "q4_k_m", n_layer) == Q.Q6_K
    assert tensor_type("blk.0.attn_v.weight", (256, 2048), "q4_k_m", n_layer) == Q.Q6_K
    assert tensor_type("blk.2.attn_v.weight", (256, 2048), "q4_k_m", n_layer) == Q.Q4_K
    assert tensor_type("blk.4.ffn_down.weight", (2048, 5632), "q4_k_m", n_layer) == Q.Q6_K
    assert tensor_type("blk.5.ffn_down.weight", (2048, 5632), "q4_k_m", n_layer) == Q.Q4_K
    assert tensor_type("blk.0.attn_q.weight", (2048, 2048), "q4_k_m", n_layer) == Q.Q4_K
    assert tensor_type("blk.0.attn_q.weight", (2048, 2048), "q5_k_m", n_layer) == Q.Q5_K
    assert tensor_type("blk.2.attn_q.weight", (2048, 2048), "q6_k", n_layer) == Q.Q6_K
    assert tensor_type("blk.0.attn_norm.weight", (2048,), "q4_k_m", n_layer) == Q.F32
    # rows that do not fill super-blocks: Q8_0 when they fill 32-value blocks, else f16
    assert tensor_type("blk.1.ffn_down.weight", (256, 704), "q4_k_m", 4) == Q.Q8_0
    assert tensor_type("blk.1.ffn_down.weight", (32, 88), "q6_k", 2) == Q.F16
    assert tensor_type("blk.1.ffn_down.weight", (32, 88), "q8_0", 2) == Q.F16
    assert tensor_type("blk.1.ffn_up.weight", (88, 32), "f16", 2) == Q.F16
