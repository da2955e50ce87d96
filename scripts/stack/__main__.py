"""`python -m scripts.stack up|down|status|supervise` (what `make up/down/status` run)."""

import sys

from scripts.stack.supervisor import main

sys.exit(main(sys.argv[1:]))
