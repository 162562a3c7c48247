"""The CPU allocator settings the CLI makes at start-up."""

from __future__ import annotations

import platform

import pytest
import torch

import occrecon
from occrecon import allocator
from occrecon.cli.main import main


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture
def fake_glibc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(allocator, "_allocator_tuned", False)
    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    return libc


def test_tune_sets_both_glibc_thresholds_once(fake_glibc):
    assert allocator.tune_cpu_allocator() is True
    assert fake_glibc.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert allocator.tune_cpu_allocator() is True
    assert len(fake_glibc.calls) == 2


def test_tune_reports_a_refused_setting(fake_glibc):
    fake_glibc.answer = 0
    assert allocator.tune_cpu_allocator() is False


def test_tune_leaves_other_c_libraries_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_allocator_tuned", False)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("no C library may be loaded"))
    assert allocator.tune_cpu_allocator() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_takes_on_this_glibc():
    assert occrecon.tune_cpu_allocator() is True
    x = torch.ones(8 << 20)  # 32 MiB: still allocates and frees normally
    assert float(x.sum()) == 8 << 20


def test_cli_tunes_the_allocator_before_anything_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "tune_cpu_allocator", lambda: calls.append(True) or True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert calls == [True]
