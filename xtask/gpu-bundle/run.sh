#!/usr/bin/env bash
# ferry's CUDA check bundle (made by `cargo xtask gpu-bundle`): runs every CUDA test and the
# CUDA benchmarks on this machine's GPU, with no Rust toolchain. Needs an NVIDIA driver >= 580
# (CUDA 13) and a Python whose site-packages hold the CUDA 13 libraries (`nvidia-*` wheels, as
# PyTorch cu130 installs them). Writes gpu-bundle.log and results.md to $OUT (default:
# ./gpu-results beside this script). Exit status: 0 all passed, 1 something failed, 3 no GPU.
#
# Environment: PYTHON (default python3), CUDA_PATH (CUDA headers for NVRTC; default: nvcc's
# install, else the cu13 wheel's), FERRY_SANITIZER=1 (also run compute-sanitizer memcheck).
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/gpu-results}
mkdir -p "$out"
log=$out/gpu-bundle.log
results=$out/results.md
: > "$log"
exec > >(tee -a "$log") 2>&1

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
    echo "ferry gpu-bundle: no NVIDIA GPU is visible here (nvidia-smi is missing or finds none),"
    echo "so there is nothing to check. Run this bundle on a machine with an NVIDIA GPU and driver >= 580."
    exit 3
fi
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv

python=${PYTHON:-python3}
sites=$("$python" -c 'import site; print("\n".join(site.getsitepackages()))' 2> /dev/null || true)
libs=""
for s in $sites; do
    for d in "$s"/nvidia/*/lib; do
        [ -d "$d" ] && libs="$libs:$d"
    done
done
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${CUDA_PATH:-}" ]; then
    if command -v nvcc > /dev/null 2>&1; then
        CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    else
        for s in $sites; do
            [ -f "$s/nvidia/cu13/include/cuda.h" ] && CUDA_PATH=$s/nvidia/cu13
        done
    fi
fi
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "CUDA_PATH=$CUDA_PATH"

# The binaries travel xz-compressed; unpack them next to the results.
bin=$out/bin
mkdir -p "$bin"
"$python" - "$here/bin" "$bin" << 'UNPACK' || { echo "ferry gpu-bundle: could not unpack the binaries with $python"; exit 1; }
import lzma, os, sys
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    if name.endswith(".xz"):
        path = os.path.join(dst, name[:-3])
        with open(os.path.join(src, name), "rb") as f, open(path, "wb") as out:
            out.write(lzma.decompress(f.read()))
        os.chmod(path, 0o755)
UNPACK

status=0
{
    echo "# ferry CUDA bundle results"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
    echo
    echo "| check | result |"
    echo "|---|---|"
} > "$results"
row() { echo "| $1 | $2 |" >> "$results"; }

# Every library a binary needs must resolve before it runs.
check_libs() {
    local missing
    missing=$(ldd "$1" 2>&1 | grep "not found" || true)
    if [ -n "$missing" ]; then
        echo "ferry gpu-bundle: $(basename "$1") cannot load: $missing"
        echo "  (CUDA 13 libraries are looked for in the nvidia/*/lib folders of $python's site-packages)"
        return 1
    fi
}

# Runs one test binary's CUDA tests and records libtest's summary.
run_tests() {
    local name=$1 exe=$bin/$1-tests
    echo "== $name: CUDA tests"
    if ! check_libs "$exe"; then
        row "$name CUDA tests" "FAILED: libraries missing"
        status=1
        return
    fi
    local summary
    timeout 300 "$exe" cuda:: --test-threads=1 2>&1 | tee "$out/$name-tests.txt"
    local rc=${PIPESTATUS[0]}
    summary=$(grep "^test result:" "$out/$name-tests.txt" | tail -1)
    row "$name CUDA tests" "${summary:-no summary (exit $rc)}"
    [ "$rc" -eq 0 ] || status=1
    if [ "${FERRY_SANITIZER:-0}" = 1 ]; then
        local sanitizer
        sanitizer=$(command -v compute-sanitizer || ls "$CUDA_PATH"/bin/compute-sanitizer 2> /dev/null || true)
        if [ -n "$sanitizer" ]; then
            echo "== $name: compute-sanitizer memcheck"
            timeout 400 "$sanitizer" --tool memcheck --error-exitcode 9 "$exe" cuda:: --test-threads=1 > "$out/$name-memcheck.txt" 2>&1
            local mrc=$?
            tail -3 "$out/$name-memcheck.txt"
            row "$name compute-sanitizer memcheck" "exit $mrc"
            [ "$mrc" -eq 0 ] || status=1
        else
            row "$name compute-sanitizer memcheck" "not run: no compute-sanitizer"
        fi
    fi
}

run_bench() {
    local name=$1 exe=$bin/$1-bench
    echo "== $name: CUDA benchmarks"
    check_libs "$exe" || { row "$name CUDA benchmarks" "FAILED: libraries missing"; status=1; return; }
    timeout 300 "$exe" --bench 2>&1 | tee "$out/$name-bench.txt"
    local rc=${PIPESTATUS[0]}
    grep "^cuda |" "$out/$name-bench.txt" | sed 's/^cuda | //; s/^/| /; s/$/ |/' >> "$results"
    [ "$rc" -eq 0 ] || { row "$name CUDA benchmarks" "FAILED (exit $rc)"; status=1; }
}

for name in candle burn; do
    run_tests "$name"
done
for name in candle burn; do
    run_bench "$name"
done

# tch's stand-in: PyTorch CUDA tensors into ferry's Python module (the abi3 wheel).
echo "== python: PyTorch CUDA tensors through ferry's module"
pyroot=$out/python
rm -rf "$pyroot" && mkdir -p "$pyroot"
if "$python" -c "import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + '/python/*.whl')[0]).extractall(sys.argv[2])" "$here" "$pyroot"; then
    PYTHONPATH="$pyroot" timeout 300 "$python" "$here/cuda_check.py" 2>&1 | tee "$out/python.txt"
    rc=${PIPESTATUS[0]}
    row "python: torch CUDA → ferry" "$(grep "passed, " "$out/python.txt" | tail -1) (exit $rc)"
    [ "$rc" -eq 0 ] || status=1
else
    row "python: torch CUDA → ferry" "FAILED: the wheel could not be unpacked"
    status=1
fi

echo
cat "$results"
echo "ferry gpu-bundle: log and results in $out (exit $status)"
exit $status
