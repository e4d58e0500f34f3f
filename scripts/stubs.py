"""The type stubs of the native module, python/convcore/_core.pyi, generated from the module.

    python scripts/stubs.py            # exit 1, with a diff, when the committed stubs are stale
    python scripts/stubs.py --write    # regenerate them

pybind11-stubgen reads the signatures and docstrings of the installed convcore._core (install the
package first). Values that depend on the build (__version__, has_openmp) are written as bare
annotations, so the stubs are the same for every build of one source tree.
"""

from __future__ import annotations

import difflib
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUBS = ROOT / "python" / "convcore" / "_core.pyi"
BUILD_VALUES = re.compile(r"^(__version__: str|has_openmp: bool) = .*$", re.M)


def generate() -> str:
    """The stubs of the installed convcore._core, normalised."""
    with tempfile.TemporaryDirectory() as out:
        # Run outside the source tree so that the installed package is the one imported.
        subprocess.run([sys.executable, "-m", "pybind11_stubgen", "convcore._core", "--exit-code",
                        "-o", out], check=True, cwd=out)
        text = (pathlib.Path(out) / "convcore" / "_core.pyi").read_text(encoding="utf-8")
    return BUILD_VALUES.sub(r"\1", text)


def main(argv: list[str]) -> int:
    fresh = generate()
    if argv == ["--write"]:
        STUBS.write_text(fresh, encoding="utf-8")
        print(f"wrote {STUBS.relative_to(ROOT)}")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    committed = STUBS.read_text(encoding="utf-8") if STUBS.exists() else ""
    if committed == fresh:
        print(f"{STUBS.relative_to(ROOT)} is current")
        return 0
    sys.stdout.writelines(difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True),
                                               "committed/_core.pyi", "generated/_core.pyi"))
    print(f"\n{STUBS.relative_to(ROOT)} is stale: run `python scripts/stubs.py --write` and commit it",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
