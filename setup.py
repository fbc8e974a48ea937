"""Packages of the distribution, found rather than listed: the import package `wuye` is the
folder services/ (package-dir in pyproject.toml), and every package below it, a new service
included, is `wuye.<its path>`. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=["wuye", *(f"wuye.{name}" for name in find_packages("services"))])
