"""Ships ``pytest_permission_startup.pth`` into site-packages, for wheels and editable installs.

The file makes every Python interpreter started from a restricted test
enforce the test's policy (see ``pytest_permission/startup.py``). A ``.pth``
must sit at the top of site-packages, which package data cannot reach, so
the build commands put it there. Everything else is in pyproject.toml.
"""

from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "pytest_permission_startup.pth"
SOURCE = Path(__file__).parent / PTH


class BuildPyWithPth(build_py):
    """Wheels: the file goes to the root of the build, which is site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(SOURCE), str(Path(self.build_lib, PTH)), preserve_mode=0)


class _AlsoWritePth:
    """Wraps setuptools' editable strategy (whichever it picked) to add the file."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def __enter__(self) -> "_AlsoWritePth":
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self.strategy.__exit__(*exc)

    def __call__(self, wheel: Any, files: Any, mapping: Any) -> None:
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH, SOURCE.read_bytes())


class EditableWheelWithPth(editable_wheel):
    """Editable installs (PEP 660) build no ``build_lib``: add the file to the wheel."""

    def _select_strategy(self, *args: Any, **kwargs: Any) -> Any:
        return _AlsoWritePth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
