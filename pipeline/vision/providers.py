"""ONNX Runtime execution providers and session options: one function decides."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import onnxruntime as ort

from pipeline.errors import InternalServerError

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
"""Accepted values of Settings.provider."""

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


_preloaded = False


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip packages (nvidia-cublas, nvidia-cudnn-cu13, ...) when
    they are installed: onnxruntime-gpu finds them only on the system's library path otherwise.
    Once per process; onnxruntime-gpu 1.21 and newer (older ones lack ``preload_dlls``)."""
    global _preloaded
    preload = getattr(ort, "preload_dlls", None)
    if _preloaded or preload is None:
        return
    _preloaded = True
    try:
        preload()
    except Exception as exc:  # a partial set of NVIDIA packages: the session below says what is missing
        log.debug("onnxruntime.preload_dlls() failed: %s", exc)


def cuda_load_error() -> str | None:
    """Why ONNX Runtime's CUDA provider does not load here, in one line; None when it loads.

    Loads a one-node graph on CUDA: that catches a missing onnxruntime-gpu, missing CUDA/cuDNN
    libraries, and a machine without a visible GPU.
    """
    available = ort.get_available_providers()
    if CUDA not in available:
        return f"onnxruntime {ort.__version__} has no CUDA provider (available: {', '.join(available)}); install onnxruntime-gpu"
    _preload_cuda_libraries()
    try:
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        # an IR version every ONNX Runtime that has opset 13 reads (onnx's own default follows the
        # newest onnx and can be newer than the installed ONNX Runtime accepts)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        session = ort.InferenceSession(model.SerializeToString(), providers=[CUDA, CPU])
    except Exception as exc:  # ORT raises its own types, and ImportError/OSError for missing libraries
        return f"the CUDA provider failed to start a session: {type(exc).__name__}: {exc}".splitlines()[0]
    if CUDA not in session.get_providers():
        return "ONNX Runtime fell back to CPU for a CUDA session (no GPU visible, or CUDA/cuDNN libraries missing)"
    return None


def cuda_really_loads() -> bool:
    """True when onnxruntime-gpu is installed and its CUDA provider loads (a GPU and CUDA libs exist)."""
    return cuda_load_error() is None


def choose_providers(
    requested: str,
    available: Sequence[str] | None = None,
    cuda_loads: Callable[[], bool] = cuda_really_loads,
) -> list[str]:
    """The ONNX Runtime provider list for Settings.provider ``requested``.

    'cpu': CPU only. 'cuda': CUDA then CPU, and an error when CUDA does not load. 'auto': CUDA
    when onnxruntime-gpu's provider is installed and really loads, else CPU (with one warning
    when the CUDA provider is installed but does not load).
    """
    if requested not in PROVIDER_CHOICES:
        raise InternalServerError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}; got {requested!r}")
    available = list(ort.get_available_providers() if available is None else available)
    if requested == "cpu":
        return [CPU]
    cuda_installed = CUDA in available
    if requested == "cuda":
        if cuda_installed and cuda_loads():
            return [CUDA, CPU]
        raise InternalServerError(
            "provider 'cuda' asked for, but ONNX Runtime's CUDA provider does not load: install onnxruntime-gpu "
            "with a matching CUDA/cuDNN and check that a GPU is visible, or use provider 'cpu'"
        )
    if cuda_installed:
        if cuda_loads():
            return [CUDA, CPU]
        log.warning("onnxruntime-gpu is installed but its CUDA provider does not load; running on CPU")
    return [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    """Session options: full graph optimisation; ``threads`` intra-op threads (0 = ONNX Runtime's choice)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle worker threads sleep instead of spinning: on a shared or busy CPU spinning threads steal
    # the cores that the working ones need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
