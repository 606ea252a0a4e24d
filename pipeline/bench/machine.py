"""What a benchmark ran on: CPU, cores, GPU, library versions, and the execution provider really used."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = (
    "facepipe",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python",
    "opencv-python-headless",
    "faiss-cpu",
    "faiss-gpu",
    "faiss-gpu-cu12",
    "botocore",
    "uvicorn",
    "starlette",
    "matplotlib",
)
"""Distributions whose versions go into every report (those not installed are left out)."""

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD extensions that matter for inference speed (avx2, avx512*, fma, amx*) the CPU reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")
            return [f for f in wanted if f in flags]
    return []


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi lists them (name, memory, driver); empty without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return found


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries in LIBRARIES."""
    versions: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, Any]:
    """The machine section of a report."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


@dataclass(frozen=True)
class ProviderChoice:
    """The execution provider a run asked for, the one it gets, and why they differ (empty note if not)."""

    requested: str
    used: str
    note: str

    def to_json(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "note": self.note}


def choose_provider(requested: str, available: list[str], cuda_loads: Callable[[], bool]) -> ProviderChoice:
    """Resolve 'cpu' | 'cuda' | 'auto' against ONNX Runtime's available providers.

    'cuda' and 'auto' use CUDA only when ONNX Runtime offers it and ``cuda_loads()`` confirms that
    it really loads; otherwise the run falls back to CPU with a note saying why. Raises ValueError
    on any other name.
    """
    if requested not in ("cpu", "cuda", "auto"):
        raise ValueError(f"provider must be one of cpu, cuda, auto; got {requested!r}")
    if requested == "cpu":
        return ProviderChoice(requested, "cpu", "")
    if CUDA_PROVIDER not in available:
        why = "ONNX Runtime offers no CUDAExecutionProvider (install onnxruntime-gpu for CUDA)"
    elif not cuda_loads():
        why = (
            "CUDAExecutionProvider is installed but does not load (no GPU visible, or CUDA/cuDNN "
            "libraries missing or incompatible)"
        )
    else:
        return ProviderChoice(requested, "cuda", "")
    prefix = "CUDA was requested but " if requested == "cuda" else ""
    return ProviderChoice(requested, "cpu", f"{prefix}{why}; ran on CPU")


def confirm_provider(choice: ProviderChoice, session_providers: list[str]) -> ProviderChoice:
    """Correct a choice with the providers an ONNX Runtime session really loaded.

    A CUDA choice whose session ended up on CPU alone (the CUDA libraries failed to load) becomes
    CPU with a note; anything else stays as it was.
    """
    if choice.used == "cuda" and session_providers and CUDA_PROVIDER not in session_providers:
        return ProviderChoice(
            choice.requested,
            "cpu",
            "CUDAExecutionProvider is installed but did not load (CUDA/cuDNN libraries missing or "
            "incompatible); ran on CPU instead",
        )
    return choice


def ort_available_providers() -> list[str]:
    """ONNX Runtime's available execution providers (empty if onnxruntime is missing)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def flop_per_cycle(vendor: str, family: int, model: int, flags: set[str]) -> tuple[int, str]:
    """Float32 FLOP per cycle per core from the FMA units of the microarchitecture, and the reason.

    AMD: Zen 1 (family 23, model < 0x30) has two 128-bit FMA pipes: 16; Zen 2 and Zen 3 two
    256-bit: 32; Zen 4 (family 25 with AVX-512) runs AVX-512 on its 256-bit pipes: 32; Zen 5
    (family 26) has 512-bit pipes: 64. Intel with AVX-512: two 512-bit FMA units (server cores):
    64; AVX2 + FMA: 32. AVX without FMA: 16; SSE: 8.
    """
    if vendor == "AuthenticAMD" and family == 23:
        if model < 0x30:
            return 16, "AMD Zen 1/Zen+: 2 FMA pipes x 4 lanes (128-bit) x 2"
        return 32, "AMD Zen 2: 2 FMA pipes x 8 lanes (256-bit) x 2"
    if vendor == "AuthenticAMD" and family == 25:
        if "avx512f" in flags:
            return 32, "AMD Zen 4: AVX-512 on 2 x 256-bit FMA pipes: 2 x 8 lanes x 2"
        return 32, "AMD Zen 3: 2 FMA pipes x 8 lanes (256-bit) x 2"
    if vendor == "AuthenticAMD" and family >= 26 and "avx512f" in flags:
        return 64, "AMD Zen 5: 2 FMA pipes x 16 lanes (512-bit) x 2"
    if "avx512f" in flags:
        return 64, "AVX-512: 2 FMA units x 16 lanes x 2"
    if "fma" in flags and "avx2" in flags:
        return 32, "AVX2 + FMA: 2 FMA units x 8 lanes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 lanes x (1 add + 1 mul)"
    return 8, "SSE: 4 lanes x (1 add + 1 mul)"


def measured_sgemm(threads: int, size: int = 2048) -> float:
    """Best float32 matrix-multiply rate (FLOP/s) of numpy's BLAS on ``threads`` threads
    (``size`` x ``size`` matrices, best of 6), in a child process (so the thread count applies):
    the rate this machine really reaches."""
    import sys

    code = (
        "import numpy as np, time\n"
        f"a = np.random.rand({size}, {size}).astype(np.float32)\n"
        "a @ a\n"
        "best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(6))\n"
        f"print(2 * {size}**3 / best)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def float32_peak(threads: int, sgemm_size: int = 2048) -> dict[str, Any]:
    """The float32 peak of ``threads`` cores: nominal (cores x nominal clock x flop_per_cycle) and
    measured (numpy's sgemm); ``peak_gflop_per_s`` is the larger (a measured rate above the
    nominal one means the cores boost above the clock /proc/cpuinfo reports)."""
    mhz, vendor, family, model = 0.0, "", 0, 0
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "cpu MHz" and not mhz:
            mhz = float(value)
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "vendor_id" and not vendor:
            vendor = value
        elif key == "cpu family" and not family:
            family = int(value)
        elif key == "model" and not model:
            model = int(value)
    per_cycle, why = flop_per_cycle(vendor, family, model, flags)
    nominal = threads * mhz * 1e6 * per_cycle
    sgemm = measured_sgemm(threads, sgemm_size)
    return {
        "nominal_gflop_per_s": nominal / 1e9,
        "flop_per_cycle_per_core": per_cycle,
        "basis": f"{threads} cores x {mhz / 1000:.2f} GHz (nominal) x {per_cycle} FLOP/cycle ({why})",
        "measured_sgemm_gflop_per_s": sgemm / 1e9,
        "peak_gflop_per_s": max(nominal, sgemm) / 1e9,
    }
