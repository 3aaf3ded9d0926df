"""Triton kernels for the ops of ``lit_gpt.ops`` (see there for the exact contracts).

``get_ops("triton")`` imports this package and uses ``OPS``. Each op is a ``torch.autograd.Function``
whose forward/backward launch Triton kernels directly; torch.compile's Dynamo traces such functions
and turns the launches into its user-defined-Triton-kernel nodes, so the ops compile without graph
breaks. On CPU the kernels run only under ``TRITON_INTERPRET=1``, which has to be in the environment
before this package is imported (Triton picks interpreter or compiler when a kernel is decorated).
"""

from types import SimpleNamespace

from lit_gpt.kernels import cross_entropy, rms_norm, rope, swiglu

OPS = SimpleNamespace(
    name="triton",
    rms_norm=rms_norm.rms_norm,
    apply_rope=rope.apply_rope,
    swiglu=swiglu.swiglu,
    linear_cross_entropy=cross_entropy.linear_cross_entropy,
)
