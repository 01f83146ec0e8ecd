"""Build hook: the top-level ``conf/`` and ``sweeps/`` travel inside the wheel as ``fcnlab/conf`` and
``fcnlab/sweeps`` (``fcnlab.config`` looks there first), so an installed fcnlab finds its configs.
An editable install reads them from the checkout instead. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in ("conf", "sweeps"):
            target = Path(self.build_lib) / "fcnlab" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(TOP / name, target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
