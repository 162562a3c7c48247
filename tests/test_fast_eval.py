"""The networks' eval-time fast paths against upstream's arithmetic.

* ONet's conditional batch norms folded into one affine map per object (channels-last rows):
  the logits agree with the unfolded modules within 1e-5 of the largest logit's magnitude
  (measured: at most 1e-6 of it on these random decoders), and their gradients within 1e-4 relative.
* ConvONet's three plane lookups in one ``grid_sample`` call: identical to the last bit.
* ConvONet's three planes through the shared U-Net as one batch: within the same tolerance.
"""

from __future__ import annotations

import pytest
import torch

import occrecon
from occrecon.nets import ARCHITECTURE_PRESETS, build_network, upstream_arithmetic
from occrecon.nets.convonet import sample_feature, sample_planes
from occrecon.nets.coords import normalize_coordinate
from occrecon.nets.onet import DecoderCBatchNorm

ONET_CBN = ["onet-img", "onet-img-legacy", "onet-points", "onet-voxels"]
CONVONET_PLANES = ["convonet-shapenet-3plane", "convonet-shapenet-1plane", "convonet-voxels-3plane"]
TOLERANCE = 1e-5  # of max(1, the largest |logit|)


def random_onet(name: str, seed: int = 0) -> torch.nn.Module:
    """A preset's decoder with random weights and batch-norm statistics (upstream zero-inits several layers)."""
    net = build_network(ARCHITECTURE_PRESETS[name])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in net.decoder.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif not key.endswith("num_batches_tracked"):
                # Inputs spread over the box, hidden layers near unit gain: a field that varies.
                std = 2.0 if key.startswith("fc_p") else 0.6 / tensor.shape[1] ** 0.5 if tensor.dim() > 1 else 0.1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
    return net.eval()


def queries_and_codes(net: torch.nn.Module, objects: int, points: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    c_dim = net.decoder.block0.bn_0.c_dim
    return (torch.rand(objects, points, 3, generator=generator) - 0.5) * 1.1, torch.randn(objects, c_dim, generator=generator)


@pytest.mark.parametrize("name", ONET_CBN)
@pytest.mark.parametrize("objects", [1, 3])
def test_folded_batch_norms_match_the_unfolded_decoder(name, objects):
    net = random_onet(name)
    p, c = queries_and_codes(net, objects)
    with torch.inference_mode():
        fast = net.decode(p, c)
        with upstream_arithmetic(net):
            exact = net.decode(p, c)
    scale = max(1.0, float(exact.abs().max()))
    assert float(exact.std()) > 0.05  # a field that varies, not a constant
    assert float((fast - exact).abs().max()) <= TOLERANCE * scale
    assert not torch.equal(fast, exact)  # the folded path ran: other roundings


def test_the_fold_is_taken_in_eval_mode_only(monkeypatch):
    net = random_onet("onet-points")
    p, c = queries_and_codes(net, 2, 64)
    calls = []
    original = DecoderCBatchNorm.forward_folded
    monkeypatch.setattr(DecoderCBatchNorm, "forward_folded", lambda self, *a: calls.append(1) or original(self, *a))
    with torch.no_grad():
        net.decode(p, c)
        assert calls == [1]
        with upstream_arithmetic(net):
            net.decode(p, c)
        net.train()
        net.decode(p, c)  # training: batch statistics, never folded
    assert calls == [1]


def test_upstream_arithmetic_restores_the_fast_paths_after_an_error():
    net = random_onet("onet-points")
    with pytest.raises(RuntimeError), upstream_arithmetic(net):
        assert net.decoder.fast_eval is False
        raise RuntimeError("boom")
    assert net.decoder.fast_eval is True


def test_gradients_through_the_fold_match():
    # Refinement differentiates the decoder in eval mode; the fold must give the same gradients.
    net = random_onet("onet-points", seed=4)
    p, c = queries_and_codes(net, 1, 500)
    grads = []
    for exact in (False, True):
        points = p.clone().requires_grad_(True)
        if exact:
            with upstream_arithmetic(net):
                net.decode(points, c).sum().backward()
        else:
            net.decode(points, c).sum().backward()
        grads.append(points.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4 * float(grads[1].abs().max()))


@pytest.mark.parametrize("name", CONVONET_PLANES)
def test_batched_plane_sampling_is_per_plane_sampling_to_the_last_bit(name):
    generator = torch.Generator().manual_seed(2)
    encoder = ARCHITECTURE_PRESETS[name]["architecture"]["encoder_kwargs"]
    kinds = [encoder["plane_type"]] if isinstance(encoder["plane_type"], str) else encoder["plane_type"]
    resolution = encoder["plane_resolution"]
    features = {f: torch.randn(2, 32, resolution, resolution, generator=generator) for f in kinds}
    # Points beyond the box too, where the coordinates are clamped.
    p = (torch.rand(2, 5000, 3, generator=generator) - 0.5) * 1.3
    with torch.inference_mode():
        batched = sample_planes(p, features, 0.1)
        one_by_one = {f: sample_feature(normalize_coordinate(p, f, 0.1), fea) for f, fea in features.items()}
    assert batched.keys() == one_by_one.keys()
    for f in features:
        assert torch.equal(batched[f], one_by_one[f]), f


def test_grid_and_planes_together_sample_exactly():
    generator = torch.Generator().manual_seed(3)
    features = {f: torch.randn(1, 8, 16, 16, generator=generator) for f in ("xz", "xy", "yz")}
    features["grid"] = torch.randn(1, 8, 8, 8, 8, generator=generator)
    p = (torch.rand(1, 700, 3, generator=generator) - 0.5) * 1.1
    batched = sample_planes(p, features, 0.1)
    for f, fea in features.items():
        assert torch.equal(batched[f], sample_feature(normalize_coordinate(p, f, 0.1), fea)), f


def test_upstream_extraction_runs_without_the_fold(monkeypatch, voxels_model):
    # tiny-onet-voxels has ONet's CBN decoder: the upstream rule must evaluate it unfolded.
    model = occrecon.load_model(voxels_model, "cpu")
    calls = []
    original = DecoderCBatchNorm.forward_folded
    monkeypatch.setattr(DecoderCBatchNorm, "forward_folded", lambda self, *a: calls.append(1) or original(self, *a))
    grid = torch.zeros(32, 32, 32)
    grid[8:24, 8:24, 8:24] = 1
    occrecon.reconstruct(model, "voxels", grid.numpy(), mise_rule="upstream", resolution=6, upsampling_steps=1)
    assert calls == []
    occrecon.reconstruct(model, "voxels", grid.numpy(), resolution=6, upsampling_steps=1)
    assert calls  # occrecon's rule uses the fast path


@pytest.mark.parametrize("objects", [1, 2])
def test_planes_through_the_unet_as_one_batch_match_plane_by_plane(objects):
    torch.manual_seed(0)
    net = build_network(ARCHITECTURE_PRESETS["convonet-shapenet-3plane"]).eval()
    generator = torch.Generator().manual_seed(5)
    cloud = torch.rand(objects, 3000, 3, generator=generator) - 0.5
    p = (torch.rand(objects, 4000, 3, generator=generator) - 0.5) * 1.1
    calls = []
    net.encoder.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].size(0)))
    with torch.inference_mode():
        fast = net.encode(cloud)
        with upstream_arithmetic(net):
            exact = net.encode(cloud)
        logits, exact_logits = net.decode(p, fast), net.decode(p, exact)
    assert calls == [3 * objects] + [objects] * 3  # one batch of the three planes, then plane by plane
    for f in ("xz", "xy", "yz"):
        scale = max(1.0, float(exact[f].abs().max()))
        assert float((fast[f] - exact[f]).abs().max()) <= TOLERANCE * scale, f
    assert float((logits - exact_logits).abs().max()) <= TOLERANCE * max(1.0, float(exact_logits.abs().max()))


def test_training_mode_runs_the_planes_one_by_one():
    torch.manual_seed(0)
    net = build_network(ARCHITECTURE_PRESETS["convonet-shapenet-3plane"]).train()
    calls = []
    net.encoder.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].size(0)))
    net.encode(torch.rand(2, 500, 3) - 0.5)
    assert calls == [2, 2, 2]


def test_upstream_extraction_encodes_the_planes_one_by_one(points_model):
    # tiny-convonet-points: three planes and a U-Net; upstream's rule must also encode as upstream does.
    model = occrecon.load_model(points_model, "cpu")
    calls = []
    model.net.encoder.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].size(0)))
    cloud = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)).numpy() * 0.2
    occrecon.reconstruct(model, "points", cloud, mise_rule="upstream", resolution=6, upsampling_steps=1)
    assert calls == [1, 1, 1]
    calls.clear()
    occrecon.reconstruct(model, "points", cloud, resolution=6, upsampling_steps=1)
    assert calls == [3]


def _scene_unet() -> torch.nn.Module:
    from occrecon.nets.unet import UNet3D

    torch.manual_seed(0)
    net = UNet3D(in_channels=8, out_channels=8, f_maps=8, num_levels=3, num_groups=4).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.GroupNorm):  # away from the identity, so a wrong affine map shows
            module.weight.data.normal_(1.0, 0.3)
            module.bias.data.normal_(0.0, 0.3)
    return net


@pytest.mark.parametrize("rows", [1, 3, 5, 24])
def test_decoder_levels_in_slabs_match_the_whole_volume(rows):
    net = _scene_unet()
    grid = torch.randn(1, 8, 24, 16, 20) + 0.3
    with torch.inference_mode(), upstream_arithmetic(net):
        whole = net(grid)
        skip = net.encoders[0](grid)
        deeper = net.decoders[0](net.encoders[1](skip), net.encoders[2](net.encoders[1](skip)))
        level = net.decoders[1]
        expected = level(skip, deeper)
    with torch.inference_mode():
        sliced = level.forward_in_slabs(skip, deeper, rows=rows)
    torch.testing.assert_close(sliced, expected, rtol=0, atol=2e-5)
    assert whole.shape == (1, 8, 24, 16, 20)


def test_large_decoder_levels_run_in_slabs_at_eval_time_only(monkeypatch):
    from occrecon.nets import unet

    net = _scene_unet()
    grid = torch.randn(1, 8, 16, 16, 16)
    calls = []
    original = unet.Decoder3d.forward_in_slabs
    monkeypatch.setattr(unet.Decoder3d, "forward_in_slabs", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    monkeypatch.setattr(unet, "SLAB_ELEMENTS", 16**3)  # every level is "large"
    with torch.inference_mode(), upstream_arithmetic(net):
        upstream = net(grid)
    assert calls == []  # upstream's arithmetic: whole volumes
    with torch.inference_mode():
        fast = net(grid)
    assert len(calls) == 2
    torch.testing.assert_close(fast, upstream, rtol=0, atol=2e-5)
    calls.clear()
    net(grid.requires_grad_()).sum().backward()  # training: whole volumes, gradients flow
    assert calls == [] and grid.grad is not None
