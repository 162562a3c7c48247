"""Choosing where the network runs."""

from __future__ import annotations

import pytest
import torch

from occrecon import device


def test_resolve_device_falls_back_to_the_cpu_with_a_note(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    assert device.resolve_device("auto") == (torch.device("cpu"), "no GPU found; running on the CPU")
    with pytest.raises(ValueError, match="CUDA is not available"):
        device.resolve_device("cuda")
