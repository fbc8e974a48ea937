"""python -m wuye.voting serve | relay | consume events | timers | all | migrate |
verify-tally LOG.json [--roll-digest D] [--receipt R]"""

import sys

from wuye.core.service import run_module
from wuye.voting.verify import main as verify_tally

if sys.argv[1:2] == ["verify-tally"]:
    sys.exit(verify_tally(sys.argv[2:]))
run_module(__package__)
