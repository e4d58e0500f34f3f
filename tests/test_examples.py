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


def test_transposed_1d_example_output():
    out = subprocess.run([sys.executable, str(EXAMPLES / "transposed_1d.py")], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0] == "conv_transpose2d: (2, 8, 5, 5) -> (2, 4, 10, 10)  grads (2, 8, 5, 5) (8, 4, 3, 3) (4,)"
    assert out[1] == "== conv2d_input of the convolution: True"
    assert out[2] == "conv1d: (2, 3, 16) -> (2, 6, 16)  d(sum)/dx is the kernel sum everywhere: True"
    assert out[3] == "encoder-decoder: (4, 1, 16, 16) -> (4, 1, 16, 16)  backward (4, 1, 16, 16)"
    assert "padding_mode='reflect'" in out[5] and out[6].strip().startswith("(1): ConvTranspose2D(8, 1")
