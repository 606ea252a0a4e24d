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
