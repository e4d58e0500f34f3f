"""The installed package carries its types: py.typed, and stubs of the native module that match it."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import convcore as cc
from convcore import _core

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = pathlib.Path(cc.__file__).resolve().parent  # site-packages/convcore once installed


def test_installed_package_has_py_typed_and_stubs():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file()


def _stub_names(path: pathlib.Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names - {"__all__"}


def test_stubs_name_everything_the_module_has():
    module = {n for n in dir(_core) if not (n.startswith("__") and n.endswith("__"))} | {"__version__"}
    assert _stub_names(PACKAGE / "_core.pyi") == module


def test_stub_signatures_are_the_modules():
    tree = ast.parse((PACKAGE / "_core.pyi").read_text(encoding="utf-8"))
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    # A few the Python layer relies on, by their argument names and optional types.
    assert [a.arg for a in funcs["set_num_threads"].args.args] == ["n"]
    assert "None" in ast.unparse(funcs["set_num_threads"].args.args[0].annotation)
    assert ast.unparse(funcs["isa_env_problem"].returns) == "str | None"
    assert ast.unparse(funcs["get_num_threads"].returns) == "int"


def test_committed_stubs_are_current():
    pytest.importorskip("pybind11_stubgen")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "stubs.py")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
