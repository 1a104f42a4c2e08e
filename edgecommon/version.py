"""Version strings reported by every component."""

import platform
from importlib.metadata import PackageNotFoundError, version

import grpc


def product_version() -> str:
    try:
        return version("autonomyops-edge")
    except PackageNotFoundError:
        return "0.0.0+unknown"


PRODUCT_VERSION = product_version()
PYTHON_VERSION = platform.python_version()
GRPC_VERSION = grpc.__version__
