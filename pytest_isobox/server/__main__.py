"""`python -m pytest_isobox.server`: the same as `isobox serve`."""

import sys

from pytest_isobox.server.command import main

sys.exit(main(sys.argv[1:]))
