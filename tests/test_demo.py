"""``python -m convcore demo``: a short run on a subset, and the message when extras are missing."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from convcore import demo
from convcore.__main__ import main as cli_main


@pytest.mark.parametrize("module", ["sklearn", "tqdm"])
def test_missing_extra_prints_what_to_install(module, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    assert cli_main(["demo", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "convcore[demo]"' in err
    assert demo.REQUIRED[module] in err
    assert "Traceback" not in err


def test_short_run_on_a_subset(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    args = ["--epochs", "3", "--limit", "400", "--no-progress", "--save", "--out", str(tmp_path)]
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    m = re.search(r"test accuracy (\d+\.\d)% \((\d+) images\) in \d+\.\d s", out)
    assert m, out
    assert int(m.group(2)) == 80
    assert float(m.group(1)) > 60  # chance is 10%
    assert (tmp_path / demo.MODEL_FILE).exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot" in capsys.readouterr().err
    else:
        assert (tmp_path / demo.PLOT_FILE).stat().st_size > 0

    # The same seed gives the same run.
    assert demo.main(args) == 0
    again = capsys.readouterr().out
    assert re.search(r"test accuracy \S+", again).group(0) == m.group(0).split(" (")[0]


def test_resnet_short_run_on_a_subset(capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    assert demo.main(["--model", "resnet", "--epochs", "3", "--limit", "400", "--no-progress", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits: resnet, 320 training")
    m = re.search(r"test accuracy (\d+\.\d)% \(80 images\)", out)
    assert m, out
    assert float(m.group(1)) > 60  # chance is 10%
    model = demo.build_resnet(0)
    assert any(isinstance(layer, demo.nn.Residual) for layer in model)
    assert model.forward(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)


def test_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "0"])
    assert "--epochs" in capsys.readouterr().err


def test_without_matplotlib_no_plot_is_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert demo.main(["--epochs", "1", "--limit", "100", "--no-progress", "--out", str(tmp_path)]) == 0
    assert 'no plot will be written (pip install "convcore[demo]")' in capsys.readouterr().err
    assert not (tmp_path / demo.PLOT_FILE).exists()
