"""occrecon's test-time optimisers: torch.optim's updates, without torch.optim's import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from occrecon.optim import Adam, RMSprop


@pytest.mark.parametrize(("ours", "theirs"), [(Adam, torch.optim.Adam), (RMSprop, torch.optim.RMSprop)])
def test_each_update_is_torchs(ours, theirs):
    start = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    target = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    mine, reference = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    optimizers = ours([mine], lr=0.05), theirs([reference], lr=0.05)
    for _ in range(30):
        for tensor, optimizer in zip((mine, reference), optimizers):
            ((tensor - target) ** 4).sum().backward()
            optimizer.step()
        optimizers[1].zero_grad(set_to_none=True)
        assert mine.grad is None  # ours consumes the gradient
    torch.testing.assert_close(mine, reference, rtol=0, atol=1e-6)
    assert (mine - start).abs().mean() > 0.01  # it did move


def test_fitting_and_refinement_do_not_import_torch_dynamo(points_model: Path):
    # torch.optim imports torch._dynamo (2.5 s) when a process makes its first optimizer.
    script = (
        "import sys, numpy as np, occrecon\n"
        "from occrecon.pipeline import ExtractionOptions\n"
        f"model = occrecon.load_model({str(points_model)!r}, 'cpu')\n"
        "cloud = np.random.default_rng(0).normal(size=(500, 3))\n"
        "result = occrecon.reconstruct(model, 'points', cloud, fit_steps=3, rotations=2, winding=True, options=ExtractionOptions(refine=2))\n"
        "assert len(result.mesh.faces) > 0\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
