"""Time of a digital baseline over 5G LDPC with an empty BLER cache (cold) and again (warm).

The case of the performance issue: ``jscc baseline --codec jpeg2000 --link ldpc --design-snr 20
--snr 5 20 --bandwidth-ratio 1/6`` on 200 CIFAR-10 test images, run as a user runs it (a fresh
``jscc`` process, imports included), first with an empty cache folder, then with the cache it
left. The BLER tables are lazy (``channels.links.bler_table``): the design search reads one or two
points of the few MCSs it tries instead of building every waterfall. Usage::

    python benchmarks/bench_ldpc_cold.py --data ../shared/data/cifar10/test
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_deepjscc import machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=200)
    args = p.parse_args()
    jscc = Path(sys.executable).with_name("jscc")
    print(machine(), f"| {args.limit} images of {args.data}")
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"JSCC_CACHE_DIR": tmp}
        for run in ("cold", "warm"):
            out = Path(tmp) / f"{run}.json"
            cmd = [str(jscc), "baseline", "--codec", "jpeg2000", "--link", "ldpc", "--design-snr", "20", "--snr", "5",
                   "20", "--bandwidth-ratio", "1/6", "--data", args.data, "--limit", str(args.limit), "--quiet",
                   "--out", str(out)]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t0
            res = json.loads(out.read_text())
            points = sum(n > 0 for f in Path(tmp, "bler").glob("*.json") for n in json.loads(f.read_text())["n_blocks"])
            print(f"{run}: {seconds:.1f} s; PSNR at 5 / 20 dB: "
                  + " / ".join(f"{v:.2f}" for v in res["metrics"]["psnr"])
                  + f"; {points} BLER points simulated in the cache")


if __name__ == "__main__":
    main()
