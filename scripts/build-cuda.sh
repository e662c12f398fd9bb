#!/usr/bin/env bash
# Build `agentgen` with `--features cuda` on a machine without a CUDA toolkit, from PyPI wheels
# (CUDA 13.0, the GPU image's version: the driver JIT-compiles candle's PTX, so nvcc must not be
# newer than the driver). Never run in CI: nvcc adds ~10 min per profile on 2 cores.
#
#   scripts/build-cuda.sh            # from the repository root; WORK=/tmp/agentgen-cuda by default
#
# Output: $WORK/target/release/agentgen. It needs libcuda.so.1, libcublas.so.13, libcurand.so.10
# and libcudart.so.13 at run time (on the GPU machine: the driver plus the cu13 libraries of a
# torch venv, via LD_LIBRARY_PATH). Here it runs on CPU with the stub below:
#   LD_LIBRARY_PATH=$WORK/cudax/nvidia/cu13/lib/stubs:$WORK/cudax/nvidia/cu13/lib \
#     $WORK/target/release/agentgen model golden --model DIR --goldens FILE
set -euo pipefail
repo=$(pwd)
WORK=${WORK:-/tmp/agentgen-cuda}
mkdir -p "$WORK" && cd "$WORK"
(cd "$repo" && cargo fetch)
pip download --quiet --no-deps --only-binary=:all: -d cudawheels "nvidia-cuda-nvcc==13.0.*" \
  "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-cublas==13.0.*"
for w in cudawheels/*.whl; do unzip -q -o "$w" 'nvidia/*' -d cudax; done
C=$WORK/cudax/nvidia/cu13
(cd "$C/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done \
  && ln -sf libcurand.so.10 libcurand.so)
# libcuda is the driver and ships in no wheel: link against a stub made from cudarc's symbols.
grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs \
  | awk '{print $4}' | sort -u | sed 's/.*/void &(void){}/' > stub.c
mkdir -p "$C/lib/stubs"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$C/lib/stubs/libcuda.so" stub.c
ln -sf libcuda.so "$C/lib/stubs/libcuda.so.1"
export CUDA_HOME=$C PATH=$C/bin:$PATH CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
cd "$repo"
CARGO_TARGET_DIR=$WORK/target cargo build --release --features cuda -p agentgen
ls -la "$WORK/target/release/agentgen"
