"""`python -m edgetwin` is the `edgetwin` command."""

import sys

from edgetwin.cli import main

sys.exit(main())
