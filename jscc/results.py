"""Results files: one JSON shape (``jscc-results/1``) for every sweep, model and baseline.

The shape is described by ``jscc/schemas/results.schema.json`` (JSON Schema draft
2020-12, unknown keys are errors) and checked by :func:`validate_results`, which adds
the rules a schema cannot express (metric lists aligned with ``snr_db``, the ratio
matching its fraction, finite numbers). :func:`write_results` validates, then writes
atomically; :func:`read_results` reads and validates. The plot tool reads only this
shape.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from fractions import Fraction
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

import jsonschema

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_PATH",
    "ResultsValidationError",
    "load_schema",
    "validate_results",
    "write_results",
    "read_results",
    "bandwidth_ratio_str",
    "parse_ratio",
    "sha256_file",
    "atomic_torch_save",
    "state_dict_sha256",
    "provenance",
]

SCHEMA_ID = "jscc-results/1"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "results.schema.json"
_RATIO_TOL = 1e-9


class ResultsValidationError(ValueError):
    """A results object breaks the schema; ``problems`` lists every one as ``"<json path>: <message>"``;
    ``source``, the file it was read from (named on the message's first line), or None."""

    def __init__(self, problems: list[str], source: str | os.PathLike | None = None):
        self.problems, self.source = problems, source
        listing = "\n".join(f"  {p}" for p in problems)
        if source is None:
            super().__init__(f"{len(problems)} problem(s) in results:\n" + listing)
        else:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            super().__init__(f"{source} is not a valid {SCHEMA_ID} results file: {problems[0] if problems else ''}"
                             f"{more}\n" + listing)


@cache
def load_schema() -> dict[str, Any]:
    """The ``jscc-results/1`` JSON schema as a dict (read once)."""
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- validation


def _path(parts) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _non_finite(obj: Any, parts: tuple = ()) -> list[str]:
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{_path(parts)}: {obj} is not a finite number (JSON cannot store NaN / inf)"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _non_finite(v, parts + (k,))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in _non_finite(v, parts + (i,))]
    return []


def _semantic_problems(obj: dict[str, Any]) -> list[str]:
    """Rules beyond the schema; assumes the schema's types hold where it looks."""
    problems = _non_finite(obj)
    n_snr = len(obj.get("snr_db", []))

    def check_len(value: Any, parts: tuple) -> None:
        if isinstance(value, list) and len(value) != n_snr:
            problems.append(f"{_path(parts)}: has {len(value)} values but snr_db has {n_snr}")

    metric_sets = [(("metrics",), obj.get("metrics"))]
    for field in ("metrics_per_prefix", "metrics_per_frame"):
        if isinstance(obj.get(field), list):
            metric_sets += [((field, i), m) for i, m in enumerate(obj[field])]
    for parts, metrics in metric_sets:
        if not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            if name == "perceptual" and isinstance(value, dict):
                check_len(value.get("values"), parts + (name, "values"))
            else:
                check_len(value, parts + (name,))
    check_len(obj.get("mcs"), ("mcs",))
    delivery = obj.get("delivery")
    if isinstance(delivery, dict):
        for key in ("delivered", "fell_back"):
            check_len(delivery.get(key), ("delivery", key))

    ratio, ratio_str = obj.get("bandwidth_ratio"), obj.get("bandwidth_ratio_str")
    if isinstance(ratio_str, str) and isinstance(ratio, (int, float)):
        try:
            frac = parse_ratio(ratio_str)
        except ValueError as exc:
            problems.append(f"$.bandwidth_ratio_str: {exc}")
        else:
            if ratio_str != f"{frac.numerator}/{frac.denominator}":
                problems.append(
                    f"$.bandwidth_ratio_str: {ratio_str!r} is not a reduced fraction "
                    f"(write {frac.numerator}/{frac.denominator})"
                )
            if abs(float(frac) - ratio) >= _RATIO_TOL:
                problems.append(
                    f"$.bandwidth_ratio: {ratio!r} differs from bandwidth_ratio_str {ratio_str} = {float(frac)!r} "
                    "(store the exact float k / n)"
                )

    layers, prefixes = obj.get("layers"), obj.get("metrics_per_prefix")
    if isinstance(layers, list) and isinstance(prefixes, list) and len(layers) != len(prefixes):
        problems.append(f"$.metrics_per_prefix: has {len(prefixes)} entries but layers has {len(layers)}")
    if isinstance(layers, list) and layers and all(isinstance(layer, dict) for layer in layers):
        total = sum(layer.get("k", 0) for layer in layers)
        if total != obj.get("k"):
            problems.append(f"$.layers: the layers' k sum to {total} but k is {obj.get('k')}")

    train = obj.get("train_snr_db")
    if isinstance(train, list) and len(train) == 2 and all(isinstance(t, (int, float)) for t in train):
        if train[0] > train[1]:
            problems.append(f"$.train_snr_db: range [lo, hi] has lo {train[0]} > hi {train[1]}")
    return problems


def validate_results(obj: dict[str, Any]) -> None:
    """Check a results object against ``jscc-results/1``.

    Args:
        obj: the results as plain Python types (dict, list, str, int, float, bool, None).

    Raises:
        ResultsValidationError: listing every schema error and every broken rule
            beyond the schema (metric lists not as long as ``snr_db``, ``bandwidth_ratio``
            not equal to the reduced fraction ``bandwidth_ratio_str`` within 1e-9, a
            non-finite number, ``train_snr_db`` range with lo > hi), each with its
            JSON path.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
    problems = sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(obj))
    if isinstance(obj, dict):
        problems += _semantic_problems(obj)
    if problems:
        raise ResultsValidationError(problems)


# --------------------------------------------------------------------------- files


def write_results(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate ``obj`` and write it as JSON (indent 2) to ``path``, atomically.

    Parent folders are created. The file is written to a temporary file in the same
    folder and moved over ``path`` with ``os.replace``, so a reader sees the old file
    or the new one, never a partial one. Nothing is written if validation fails.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ResultsValidationError: as :func:`validate_results`.
    """
    validate_results(obj)
    return write_json(obj, path)


def _publish(tmp: str, path: Path) -> None:
    """Give a finished temp file the permissions of a normally created file (``mkstemp`` makes it
    0600, whatever the umask) and move it to ``path`` atomically."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON (indent 2, no NaN) to ``path`` atomically (temp file in the same folder,
    then ``os.replace``), creating parent folders; the writer of results files, zoo tables and
    side files. Returns ``path`` as a :class:`~pathlib.Path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, then ``os.replace`` (never a torn file)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results file and validate it: :class:`ResultsValidationError` if invalid, ValueError if
    not JSON, each naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a JSON results file ({err})") from None
    try:
        validate_results(obj)
    except ResultsValidationError as err:
        raise ResultsValidationError(err.problems, source=path) from None
    return obj


# --------------------------------------------------------------------------- ratios


def bandwidth_ratio_str(k: int, n: int) -> str:
    """``k / n`` as a reduced fraction string: ``(256, 3072) -> "1/12"``.

    Args:
        k: complex channel uses per image, >= 1.
        n: source samples per image (``3*H*W``, times ``T`` for video), >= 1.
    """
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (k, n)):
        raise ValueError(f"k and n must be positive integers, got k={k!r}, n={n!r}")
    frac = Fraction(k, n)
    return f"{frac.numerator}/{frac.denominator}"


def parse_ratio(s: str) -> Fraction:
    """Parse a positive ratio: ``"1/12"``, ``"0.125"`` or ``"3"`` to an exact Fraction.

    Raises:
        TypeError: ``s`` is not a string.
        ValueError: not a fraction ``a/b``, an integer or a decimal, or not > 0.
    """
    if not isinstance(s, str):
        raise TypeError(f"ratio must be a string like '1/12', got {type(s).__name__}")
    try:
        frac = Fraction(s.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"malformed ratio {s!r}: expected 'a/b', an integer or a decimal ({exc})") from None
    if frac <= 0:
        raise ValueError(f"ratio {s!r} must be > 0")
    return frac


# --------------------------------------------------------------------------- provenance


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits, read in ``chunk_size``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over the sorted names, dtypes, shapes and bytes of a state dict's tensors:
    the identity of a set of weights, independent of the file that held them."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _git_commit() -> str | None:
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + "-dirty" if _git("status", "--porcelain") else commit


def provenance(
    command: str | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    lpips_backbones: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``provenance`` block of a results file.

    Args:
        command: how the result was made, e.g. ``"jscc sweep --model ..."``; default
            ``" ".join(sys.argv)``.
        checkpoint_path: the evaluated checkpoint, hashed; None for models without one.
        device: recorded as a string if given.
        seed: recorded if given.
        lpips_backbones: ``{net: source}`` of the LPIPS trunks used
            (:func:`jscc.metrics.lpips_backbone_sources`), recorded if given.

    Returns:
        ``{"checkpoint_sha256", "git_commit", "torch", "command", "python", "created"}``
        plus ``"device"`` / ``"seed"`` when given. ``git_commit`` is the HEAD of the
        repository holding this file, with ``-dirty`` appended when ``git status
        --porcelain`` lists anything (untracked files included), or None outside git.
        ``created`` is the UTC time, ISO 8601, seconds.
    """
    import torch

    out: dict[str, Any] = {
        "checkpoint_sha256": None if checkpoint_path is None else sha256_file(checkpoint_path),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv) if command is None else command,
        "python": platform.python_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device is not None:
        out["device"] = str(device)
    if seed is not None:
        out["seed"] = seed
    if lpips_backbones:
        out["lpips_backbones"] = dict(lpips_backbones)
    return out
