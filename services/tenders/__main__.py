"""python -m wuye.tenders serve | relay | consume events | timers | all | migrate |
verify-committee"""

import sys

from wuye.core.service import run_module
from wuye.tenders.verify import main as verify_committee

if sys.argv[1:2] == ["verify-committee"]:
    sys.exit(verify_committee(sys.argv[2:]))
run_module(__package__)
