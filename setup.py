"""The installable codec (pyproject.toml has the metadata): this only leaves the study's front door out of the
wheel. helpers/commands.py and helpers/__main__.py (``python -m helpers``) reach the study's packages, which are
not installed; the product's command is ``leaf-codec`` (``python -m helpers.codec``)."""

from setuptools import setup
from setuptools.command.build_py import build_py

STUDY_ONLY = {("helpers", "commands"), ("helpers", "__main__")}


class ProductOnly(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) not in STUDY_ONLY]


setup(cmdclass={"build_py": ProductOnly})
