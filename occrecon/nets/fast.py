"""The networks' eval-time fast paths, and the switch back to upstream's arithmetic.

A fast path that computes the same function with other float32 roundings is marked by a
``fast_eval`` attribute on its module:

* ONet's conditional batch norms folded into one affine map per object, on channels-last rows
  (:meth:`~occrecon.nets.onet.DecoderCBatchNorm.forward_folded`);
* ConvONet's three planes through their shared U-Net as one batch (``_FeatureVolumes._volumes``);
* the 3D U-Net's large decoder levels in slabs of depth (:meth:`~occrecon.nets.unet.Decoder3d.forward_in_slabs`),
  which halves the published crop model's peak memory.

Their logits differ from upstream's in the last bits (within 1e-5 of the largest logit,
``tests/test_fast_eval.py``), which moves mesh vertices slightly and could flip a lattice value
lying on the threshold; reproducing upstream's mesh exactly (``--mise upstream``) therefore runs
the networks as upstream does, inside :func:`upstream_arithmetic`. Fast paths that are exact
(ConvONet's batched plane sampling, in-place additions) need no switch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def upstream_arithmetic(net: nn.Module) -> Iterator[nn.Module]:
    """Within this block ``net`` computes as upstream's modules do, to the last bit (every ``fast_eval`` path off).

    Example:
        >>> from occrecon.nets import ARCHITECTURE_PRESETS, build_network
        >>> net = build_network(ARCHITECTURE_PRESETS["onet-points"])
        >>> with upstream_arithmetic(net):
        ...     net.decoder.fast_eval
        False
        >>> net.decoder.fast_eval
        True
    """
    switched = [module for module in net.modules() if getattr(module, "fast_eval", False)]
    for module in switched:
        module.fast_eval = False
    try:
        yield net
    finally:
        for module in switched:
            module.fast_eval = True
