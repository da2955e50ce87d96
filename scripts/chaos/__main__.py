"""`python -m scripts.chaos`: see scripts.chaos.run."""

import sys

from scripts.chaos.run import main

sys.exit(main(sys.argv[1:]))
