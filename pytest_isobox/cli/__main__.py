"""`python -m pytest_isobox.cli`."""

import sys

from pytest_isobox.cli import main

sys.exit(main())
