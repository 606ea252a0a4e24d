"""The float32 peak the benchmarks divide by: FLOP/cycle per microarchitecture, measured sgemm."""

from __future__ import annotations

import pytest

from pipeline.bench.machine import float32_peak, flop_per_cycle

AVX2 = {"avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw"}


@pytest.mark.parametrize(
    ("vendor", "family", "model", "flags", "expected"),
    [
        ("AuthenticAMD", 23, 0x01, AVX2, 16),  # Zen 1 (EPYC Naples): two 128-bit FMA pipes
        ("AuthenticAMD", 23, 0x08, AVX2, 16),  # Zen+
        ("AuthenticAMD", 23, 0x31, AVX2, 32),  # Zen 2 (EPYC Rome)
        ("AuthenticAMD", 25, 0x01, AVX2, 32),  # Zen 3 (EPYC Milan)
        ("AuthenticAMD", 25, 0x11, AVX512, 32),  # Zen 4 (EPYC Genoa): AVX-512 on 256-bit pipes
        ("AuthenticAMD", 26, 0x02, AVX512, 64),  # Zen 5: 512-bit pipes
        ("GenuineIntel", 6, 0x8F, AVX512, 64),  # Sapphire Rapids: two 512-bit FMA units
        ("GenuineIntel", 6, 0x3F, AVX2, 32),  # Haswell
        ("GenuineIntel", 6, 0x2A, {"avx"}, 16),  # Sandy Bridge: no FMA
    ],
)
def test_flop_per_cycle_by_microarchitecture(
    vendor: str, family: int, model: int, flags: set[str], expected: int
) -> None:
    per_cycle, why = flop_per_cycle(vendor, family, model, flags)
    assert per_cycle == expected and why


def test_peak_is_at_least_the_measured_sgemm_rate() -> None:
    peak = float32_peak(1, sgemm_size=512)
    assert peak["measured_sgemm_gflop_per_s"] > 0.5
    assert peak["peak_gflop_per_s"] == max(peak["nominal_gflop_per_s"], peak["measured_sgemm_gflop_per_s"])
    assert "FLOP/cycle" in peak["basis"]
