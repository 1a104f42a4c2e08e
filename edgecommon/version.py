"""Version strings reported by every component."""

import platform

import grpc

from edgecommon import __version__

PRODUCT_VERSION = __version__
PYTHON_VERSION = platform.python_version()
GRPC_VERSION = grpc.__version__
