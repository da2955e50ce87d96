"""`python -m scripts.bench [--duration 60] [--rate N] [--use-running] [--target direct|ingress]`."""

import sys

from scripts.bench.run import main

sys.exit(main())
