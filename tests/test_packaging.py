"""The source distribution: what it carries, and metadata that matches the code.

The sdist is built with setuptools' own PEP 517 hook from a copy of this
checkout (building writes an ``.egg-info`` folder beside the sources), as
``pip`` or ``python -m build`` would build it.
"""

from __future__ import annotations

import ast
import email.message
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDED = {
    "LICENSE",
    "README.md",
    "MANIFEST.in",
    "pyproject.toml",
    "setup.py",
    "tox.ini",
    "pytest_permission_startup.pth",
    "pytest_permission/py.typed",
    "tests/conftest.py",
    "tests/conformance_table.py",
    "tests/constraints.txt",
    "example_project/README.md",
    "example_project/pyproject.toml",
    "example_project/tests/data/weather.ini",
    ".ci/run",
    ".ci/requirements.txt",
    ".ci/pythons.sh",
}
"""Beyond the package: what the sdist's own tests, tox and CI read."""
SHIPPED_FOLDERS = ("pytest_permission", "tests", "example_project", "benchmarks", ".ci")
NOT_SOURCES = re.compile(r"(__pycache__|\.pyc$|_cache/|\.hypothesis/)")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".tox", "dist", "build", "*.egg-info", "__pycache__", "node", ".ci-venv"
)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    pytest.importorskip("setuptools", minversion="77", reason="PEP 639 license metadata")
    work = tmp_path_factory.mktemp("sdist")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=COPY_IGNORE)
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_sdist('..'))"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return tarfile.open(work / built)


def names(sdist: tarfile.TarFile) -> set[str]:
    """The sdist's files, relative to its top folder."""
    return {m.name.partition("/")[2] for m in sdist.getmembers() if m.isfile()}


def metadata(sdist: tarfile.TarFile) -> email.message.Message:
    top = sdist.getnames()[0].partition("/")[0]
    member = sdist.extractfile(f"{top}/PKG-INFO")
    assert member is not None
    return email.parser.Parser().parsestr(member.read().decode())


def test_the_sdist_carries_what_its_tests_need_and_no_caches(sdist: tarfile.TarFile) -> None:
    shipped = names(sdist)
    assert shipped >= NEEDED
    sources = {
        str(path.relative_to(ROOT))
        for folder in SHIPPED_FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and not NOT_SOURCES.search(str(path.relative_to(ROOT)) + "/")
    }
    assert sources - shipped == set()
    assert [name for name in shipped if NOT_SOURCES.search(name)] == []


def test_the_tests_of_the_sdist_collect(sdist: tarfile.TarFile, tmp_path: Path) -> None:
    sdist.extractall(tmp_path, filter="data")
    unpacked = next(tmp_path.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\d+ tests collected", done.stdout, re.M), done.stdout


def test_license_and_python_versions(sdist: tarfile.TarFile) -> None:
    meta = metadata(sdist)
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    classified = {
        c.rpartition(":: ")[2]
        for c in meta.get_all("Classifier", [])
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    envlist = re.search(r"py\{([\d,]+)\}", (ROOT / "tox.ini").read_text())
    assert envlist is not None
    tested = {f"{v[0]}.{v[1:]}" for v in envlist.group(1).split(",")}
    assert classified == tested == {"3.10", "3.11", "3.12", "3.13"}
    assert meta["Requires-Python"] == f">={min(tested, key=lambda v: int(v.split('.')[1]))}"


def imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level names a module imports at import time, and inside functions."""
    tree = ast.parse(path.read_text())
    eager: set[str] = set()
    lazy: set[str] = set()
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = {node.module.partition(".")[0]}
        else:
            continue
        (lazy if id(node) in inside else eager).update(found)
    return eager, lazy


def test_declared_dependencies_match_what_the_code_imports(sdist: tarfile.TarFile) -> None:
    """pytest is needed to import the package; coverage only when it already measures."""
    own = {"pytest_permission", "__future__", "_pytest"}  # _pytest: pytest's own package
    eager: set[str] = set()
    lazy: set[str] = set()
    for module in (ROOT / "pytest_permission").rglob("*.py"):
        now, later = imports(module)
        eager |= now
        lazy |= later
    stdlib = set(sys.stdlib_module_names)
    assert eager - stdlib - own == {"pytest"}
    assert lazy - stdlib - own == {"coverage"}
    requires = metadata(sdist).get_all("Requires-Dist", [])
    assert [r for r in requires if "extra ==" not in r] == ["pytest>=8"]
    assert 'coverage>=7; extra == "coverage"' in requires


def test_the_example_readme_commands_name_their_folders() -> None:
    """Install from the repository root, then run the suite in example_project."""
    readme = (ROOT / "example_project" / "README.md").read_text()
    block = re.search(r"```console\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]
    assert commands == ["pip install -e .", "cd example_project", "python -m pytest"]
    assert 'name = "pytest-permission"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "example_project" / "pyproject.toml").is_file()
