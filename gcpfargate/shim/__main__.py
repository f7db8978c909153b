"""`python -m gcpfargate.shim`, or `python3 -m shim` in the shim image."""

import sys

from .server import main

sys.exit(main())
