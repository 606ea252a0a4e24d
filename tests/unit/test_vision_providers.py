"""Provider choice: one function decides, testable without a GPU."""

from __future__ import annotations

import logging

import pytest

from pipeline.errors import InternalServerError
from pipeline.vision.providers import CPU, CUDA, choose_providers, cuda_really_loads, session_options


def test_cpu_is_cpu_even_with_cuda() -> None:
    assert choose_providers("cpu", [CUDA, CPU], lambda: True) == [CPU]


def test_auto_uses_cuda_only_when_it_loads(caplog: pytest.LogCaptureFixture) -> None:
    assert choose_providers("auto", [CUDA, CPU], lambda: True) == [CUDA, CPU]
    with caplog.at_level(logging.WARNING):
        assert choose_providers("auto", [CUDA, CPU], lambda: False) == [CPU]
    assert "does not load" in caplog.text
    caplog.clear()
    assert choose_providers("auto", [CPU], lambda: True) == [CPU]
    assert caplog.text == ""


def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(InternalServerError, match="onnxruntime-gpu"):
        choose_providers("cuda", [CPU], lambda: True)
    with pytest.raises(InternalServerError, match="does not load"):
        choose_providers("cuda", [CUDA, CPU], lambda: False)


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(InternalServerError, match="auto, cpu, cuda"):
        choose_providers("tpu", [CPU])


def test_real_probe_and_options() -> None:
    assert isinstance(cuda_really_loads(), bool)
    assert session_options(3).intra_op_num_threads == 3
