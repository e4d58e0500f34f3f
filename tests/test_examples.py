"""The README's quickstart runs and prints what the README shows."""

import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_output():
    out = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0] == "shapes: y (2, 4, 4, 4)  dx (2, 3, 7, 7)  dw (4, 3, 3, 3)  db (4,)"
    assert out[1].endswith("True") and out[2].endswith("True")
    assert out[3] == "bias after one step: [ 0.614 -0.133 -0.673 -0.411]"
