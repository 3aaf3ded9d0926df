import os

# Triton kernels run on the CPU only through its interpreter, which must be chosen before any kernel
# is decorated; set it before anything imports triton.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:
    pass
