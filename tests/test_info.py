import subprocess
import sys


def test_info_lists_backends_with_reasons():
    out = subprocess.run([sys.executable, "-m", "tq", "info", "--codebooks"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("cutile", "triton", "reference", "torch", "lloyd-max"):
        assert name in out.stdout
