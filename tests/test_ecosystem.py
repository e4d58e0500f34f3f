"""How convcore fits around a Python user: argument forms, names, the command line, the version."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import convcore as cc
from convcore import reference as ref

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ ints as sizes


@pytest.mark.parametrize(
    ("input_size", "kernel_size", "kw", "want"),
    [
        pytest.param(7, 3, {}, (5, 5), id="ints"),
        pytest.param(7, 3, {"stride": 2, "padding": 1}, (4, 4), id="ints-sh2ph1"),
        pytest.param((7, 9), 3, {"stride": 2}, (3, 4), id="pair-int"),
        pytest.param((2, 3, 7, 9), (3, 5), {"dilation": 2}, (3, 1), id="shape-pair-dh2"),
        pytest.param(np.int64(8), np.int32(3), {"padding": "same", "stride": 3}, (3, 3), id="numpy-ints"),
    ],
)
def test_output_size_takes_ints_pairs_and_shapes(input_size, kernel_size, kw, want):
    assert cc.output_size(input_size, kernel_size, **kw) == want
    # The reference's formula, given full (H, W) pairs and per-side padding.
    hw = (input_size, input_size) if np.ndim(input_size) == 0 else tuple(input_size)[-2:]
    k = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    stride, dilation = kw.get("stride", 1), kw.get("dilation", 1)
    pads = ref.same_pads(hw, k, stride, dilation) if kw.get("padding") == "same" else kw.get("padding", 0)
    assert ref.output_size(hw, k, stride, pads, dilation) == want


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        pytest.param(("7", 3), TypeError, r"input_size: expected an int, \(H, W\)", id="str-size"),
        pytest.param((7.0, 3), TypeError, "input_size: .*got 7.0", id="float-size"),
        pytest.param(((7,), 3), ValueError, r"input_size: .*got \(7,\)", id="short-size"),
        pytest.param((7, "3"), TypeError, "kernel_size: expected an int", id="str-kernel"),
        pytest.param((7, (3, 3, 3)), ValueError, "kernel_size: expected an int or a pair", id="triple-kernel"),
        pytest.param((2, 3), ValueError, "kernel", id="kernel-too-big"),
    ],
)
def test_output_size_errors_name_the_argument(args, error, match):
    with pytest.raises(error, match=match):
        cc.output_size(*args)


def test_expand_stride_takes_ints():
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((2, 3, 3, 3))
    got = cc.expand_stride(dy, 2, 7, 3)
    # Zero insertion by hand: a (2*3 - 1) = 5 square with the deltas on the even positions.
    want = np.zeros((2, 3, 5, 5))
    want[:, :, ::2, ::2] = dy
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, cc.expand_stride(dy, (2, 2), (7, 7), (3, 3)))
    np.testing.assert_array_equal(got, cc.expand_stride(dy, 2, (2, 3, 7, 7), 3))
    with pytest.raises(TypeError, match="input_size"):
        cc.expand_stride(dy, 2, "7", 3)
    with pytest.raises(TypeError, match="kernel_size"):
        cc.expand_stride(dy, 2, 7, None)


# ------------------------------------------------------------------------ the wrong channel count


def test_conv2d_layer_blames_the_input_channels():
    layer = cc.Conv2D(5, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"^input: expected 5 channels on axis 1 .* got 3$"):
        layer(np.ones((2, 3, 8, 8), np.float32))
    # The last axis holds the expected count: the array is probably NHWC.
    with pytest.raises(ValueError, match=r"input: expected 5 channels on axis 1 .* got 8 \(an NHWC array\?"):
        layer(np.ones((2, 8, 8, 5), np.float32))
    with pytest.raises(ValueError, match=r"input: expected 5 channels on axis 0 .* got 3$"):
        layer(np.ones((3, 8, 8), np.float32))


# ------------------------------------------------------------------------------ public names


PUBLIC_MODULES = ["convcore", "convcore.nn", "convcore.functional", "convcore.functional_1d",
                  "convcore.functional_transposed", "convcore.padding", "convcore.blocks", "convcore.layers", "convcore.optim",
                  "convcore.plan", "convcore.reference", "convcore.gradcheck", "convcore.demo", "convcore.bench",
                  pytest.param("convcore.distributed", marks=pytest.mark.skipif(
                      importlib.util.find_spec("mpi4py") is None, reason="convcore.distributed needs mpi4py"))]


def test_every_module_with_all_lists_only_it():
    # A module added later with an __all__ gets the same dir() (through _public.public_dir).
    package = pathlib.Path(cc.__file__).parent
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "\n__all__ = " in text:
            assert "\n__dir__ = _public_dir(globals())\n" in text or path.name.startswith("_"), path


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_dir_lists_the_public_names_only(name):
    module = importlib.import_module(name)
    listed = dir(module)
    public = [n for n in listed if not n.startswith("_")]
    assert sorted(public) == sorted(n for n in module.__all__ if not n.startswith("_"))
    for helper in ("annotations", "np", "os", "Dict", "List", "Optional", "Tuple", "Union", "F"):
        assert helper not in listed
    for n in module.__all__:  # every exported name exists
        getattr(module, n)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_star_import_brings_exactly_all(name):
    namespace: dict = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(importlib.import_module(name).__all__)


def test_dir_follows_names_added_to_all(monkeypatch):
    monkeypatch.setattr(cc.nn, "__all__", [*cc.nn.__all__, "np"])
    assert "np" in dir(cc.nn)


# ------------------------------------------------------------------------------ command line


def test_help_keeps_each_command_on_one_line():
    narrow = {**os.environ, "COLUMNS": "60"}  # as in a CI log or a split terminal
    out = subprocess.run([sys.executable, "-m", "convcore", "--help"], capture_output=True, text=True,
                         check=True, env=narrow).stdout
    assert "'convcore bench --help'" in out
    for line in out.splitlines():
        quoted = re.sub(r"(?<=\w)'(?=\w)", "", line)  # apostrophes ("scikit-learn's") aside
        assert quoted.count("'") % 2 == 0, f"a quoted command is wrapped: {line!r}"
    bench = subprocess.run([sys.executable, "-m", "convcore", "bench", "--help"], capture_output=True,
                           text=True, check=True).stdout
    assert "--quick" in bench


def test_demo_without_progress_prints_each_epoch(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    from convcore import demo

    assert demo.main(["--epochs", "2", "--limit", "100", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    epochs = re.findall(r"^epoch (\d)/2: loss (\d+\.\d{4}), acc (\d+\.\d)%, test (\d+\.\d)%$", out, re.M)
    assert [e[0] for e in epochs] == ["1", "2"], out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    where = out.index(f"the plot will be written to {tmp_path / demo.PLOT_FILE}")
    assert where < out.index("epoch 1/2")  # said up front
    assert (tmp_path / demo.PLOT_FILE).exists()


def test_readme_demo_command_names_the_output_folder():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"^python3 -m venv \.venv && .*convcore demo.*$", readme, re.M)
    assert command and "--out" in command.group(0), command


# ------------------------------------------------------------------------------ the version


def test_version_has_one_source():
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    version = re.search(r"project\(convcore VERSION ([0-9.]+)", cmake).group(1)
    assert cc.__version__ == version  # compiled in from CMake's project()
    assert importlib.metadata.version("convcore") == version  # read by the build from the same line
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert not re.search(r"^version\s*=", pyproject, re.M)
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)


# ------------------------------------------------------------------------------ CONVCORE_ISA


def _import_with_isa(value: str, *flags: str) -> subprocess.CompletedProcess:
    code = "import convcore as cc; print(cc._core.isa())"
    env = {**os.environ, "CONVCORE_ISA": value}
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("spelling", [str.upper, str.title, str.lower], ids=["upper", "title", "lower"])
def test_isa_names_in_any_case(spelling):
    for isa in cc._core.supported_isas():
        run = _import_with_isa(spelling(isa), "-W", "error")  # and no warning
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == isa


def test_unknown_isa_warns_with_the_valid_names():
    best = cc._core.supported_isas()[-1]
    run = _import_with_isa("bogus")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == best
    assert "RuntimeWarning: CONVCORE_ISA='bogus' is not a kernel path" in run.stderr
    assert "'generic', 'avx2' or 'avx512'" in run.stderr
    assert f"using '{best}'" in run.stderr
    strict = _import_with_isa("bogus", "-W", "error::RuntimeWarning")
    assert strict.returncode != 0
    assert "CONVCORE_ISA='bogus'" in strict.stderr


def test_unsupported_isa_warns_with_the_supported_names():
    supported = cc._core.supported_isas()
    missing = [isa for isa in ("avx512", "avx2") if isa not in supported]
    if not missing:
        pytest.skip("this CPU runs every kernel path")
    run = _import_with_isa(missing[0].upper())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == supported[-1]
    assert f"cannot run the {missing[0]} path; it runs {', '.join(repr(s) for s in supported)}" in run.stderr


def test_set_isa_takes_any_case():
    before = cc._core.isa()
    try:
        cc._core.set_isa("GENERIC")
        assert cc._core.isa() == "generic"
        with pytest.raises(ValueError, match="expected 'generic', 'avx2' or 'avx512'"):
            cc._core.set_isa("avx")
    finally:
        cc._core.set_isa(before)
