"""What finding the object in a photo costs, as ratios against the same photo with its mask.

For every ``NAME__image.png`` with a ``NAME__mask.png`` beside it (default:
../shared/eval/photos), in one process and after one warm-up, the median over
``--repeat`` runs of:

* ``auto``: ``prepare_image`` finding the object itself (the border's colours, or
  GrabCut where the border is busy: see ``occrecon.preprocess.segment``);
* ``mask``: ``prepare_image`` given the mask (the baseline);
* ``reconstruct``: the bundled image model's whole reconstruction from the masked photo.

It prints ``auto / mask`` per photo and ``(auto - mask) / reconstruct``, the share the
matte adds to a reconstruction, with which method found the object and its IoU
against the mask.

    python benchmarks/matting.py [--photos DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import occrecon
from occrecon.io.readers import read_image, read_mask
from occrecon.preprocess.image import _matte, _to_rgba, prepare_image
from occrecon.registry import default_model

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "photos"


def _median_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pairs = [(p, p.with_name(p.name.replace("__image.png", "__mask.png"))) for p in sorted(args.photos.glob("*__image.png"))]
    pairs = [(image, mask) for image, mask in pairs if mask.exists()]
    if not pairs:
        raise SystemExit(f"{args.photos}: no NAME__image.png with a NAME__mask.png beside it")
    model = occrecon.load_model(default_model("image"))
    size = model.input_spec.image_size
    photo, mask = read_image(pairs[0][0]), read_mask(pairs[0][1])
    prepare_image(photo, size=size)  # warm-up: imports, caches
    occrecon.reconstruct_image(model, photo, mask=mask)

    print(f"{'photo':24} {'matte':9} {'IoU/mask':>8} {'auto/mask':>10} {'matte/reconstruct':>18}")
    shares = []
    for image_path, mask_path in pairs:
        photo, mask = read_image(image_path), read_mask(mask_path)
        auto = _median_seconds(lambda: prepare_image(photo, size=size), args.repeat)
        masked = _median_seconds(lambda: prepare_image(photo, size=size, mask=mask), args.repeat)
        whole = _median_seconds(lambda: occrecon.reconstruct_image(model, photo, mask=mask), args.repeat)
        notes = prepare_image(photo, size=size).notes
        method = "GrabCut" if any("GrabCut" in note for note in notes) else "colours"
        # The object the automatic matte found, at full size, against the given mask.
        rgb, alpha = _to_rgba(photo, None)
        found, _ = _matte(rgb, alpha, None, "auto", None, [])
        iou = float((found & mask).sum() / max((found | mask).sum(), 1))
        shares.append((auto - masked) / whole)
        print(f"{image_path.name.replace('__image.png', ''):24} {method:9} {iou:8.3f} {auto / masked:10.1f} {shares[-1]:18.2f}")
    print(f"median share of a reconstruction added by the automatic matte: {np.median(shares):.2f}")


if __name__ == "__main__":
    main()
