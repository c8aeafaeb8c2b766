"""Run the lab: `python -m lab --help`."""

import sys

from lab.run import main

sys.exit(main())
