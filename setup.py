"""Packages and package data; the project's metadata is in pyproject.toml.

The Avro schemas stay in the top-level ``schemas/`` (the contract other teams read and the
design card names). Here setuptools maps that directory into the package as
``processor/contract/_schemas/``, so a wheel carries them and ``processor.contract.schemas``
finds them installed. No copy is kept in the tree, and nothing has to be regenerated.
Only the current schemas ship (``schemas/*.avsc``, ``schemas/internal/*.avsc``); anything
else under ``schemas/`` (for example released versions kept for compatibility checks) stays
in the repository.

This file exists because pyproject.toml's ``packages.find`` cannot add a mapped package.
"""

from setuptools import find_packages, setup

SCHEMAS = "processor.contract._schemas"

setup(
    packages=find_packages(include=["processor", "processor.*"]) + [SCHEMAS, f"{SCHEMAS}.internal"],
    package_dir={SCHEMAS: "schemas", f"{SCHEMAS}.internal": "schemas/internal"},
    package_data={
        "processor": ["console/static/*"],
        SCHEMAS: ["*.avsc"],
        f"{SCHEMAS}.internal": ["*.avsc"],
    },
)
