"""`pytest_isobox.wait`, the readiness strategies, kept importable by their public name: this
module is `pytest_isobox.plugin.wait` itself (one module object, so isinstance checks hold)."""

import sys

from pytest_isobox.plugin import wait as _wait

sys.modules[__name__] = _wait
