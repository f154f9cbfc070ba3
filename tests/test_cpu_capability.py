"""devices.native_bf16 reads the processor's flags: hand-made /proc/cpuinfo texts."""

from pathlib import Path

import pytest

from unetbench.system import devices


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n", False),  # AVX512, bf16 emulated
        ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", True),  # Arm (Neoverse V1 and later)
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("processor\t: 0\n", False),
    ],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path, monkeypatch, text, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    real = Path

    def fake(path, *rest):
        return real(cpuinfo) if str(path) == "/proc/cpuinfo" else real(path, *rest)

    monkeypatch.setattr(devices, "Path", fake)
    devices.native_bf16.cache_clear()
    try:
        assert devices.native_bf16() is expected
    finally:
        devices.native_bf16.cache_clear()
