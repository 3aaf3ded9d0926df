# flash-attn-4 and quack-kernels on the GPU machine, which reaches no package index: sourced (it exports
# PYTHONPATH) by the call that runs the benchmark. The wheels are fetched beforehand on a machine with PyPI:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_24_x86_64 --platform any flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 \
#     nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1 \
#     apache-tvm-ffi torch-c-dlpack-ext quack-kernels==0.6.5
# A call carries 64 MiB, so the 92 MB libs-cu13 wheel travels in two parts (`split -b 48m`): .fa4/a holds
# cu13.part.aa, carried by an earlier call on the same warm machine, which copies it into /tmp/fa4
# (`mkdir -p /tmp/fa4 && cp .fa4/a/* /tmp/fa4/`); .fa4/b holds cu13.part.ab and the other wheels, carried
# by this call:
#   source benchmarks/fa4_wheels.sh && bash benchmarks/speed_session.sh fa4trainer
# The folder's path must hold "/site-packages/": quack-kernels fingerprints every function its epilogues reach,
# except those in installed code, which it recognises by that path; elsewhere it walks into the CuTe DSL's own
# globals and fails at import ("epilogue fn depends on <ContextVar name='_LOC_TRANSFORMS' ...>", the tenth
# session's call, with --target /tmp/fa4_site).
FA4_TARGET=${FA4_TARGET:-/tmp/fa4/site-packages}
FA4_SHA256_PREFIX=50191a381d8cc139  # of the joined libs-cu13 wheel
fa4_wheel=/tmp/fa4/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
if [ ! -f /tmp/fa4/cu13.part.aa ]; then
  echo "fa4_wheels: /tmp/fa4/cu13.part.aa is missing: carry .fa4/a in an earlier call on this machine" >&2
  return 1
fi
cat /tmp/fa4/cu13.part.aa .fa4/b/cu13.part.ab > "$fa4_wheel"
if [ "$(sha256sum "$fa4_wheel" | cut -c1-16)" != "$FA4_SHA256_PREFIX" ]; then
  echo "fa4_wheels: the joined libs-cu13 wheel does not match its sha256" >&2
  return 1
fi
python3 -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --target "$FA4_TARGET" \
  .whl/*.whl .fa4/b/*.whl "$fa4_wheel" || return 1
# --target does not run the CuTe DSL's .pth file, which puts its packages on the path
export PYTHONPATH="$FA4_TARGET:$FA4_TARGET/nvidia_cutlass_dsl/dsl_packages:$PWD"
