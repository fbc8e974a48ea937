"""python -m wuye.meetings serve | relay | consume events | timers | worker | migrate |
verify-minutes"""

import sys

from wuye.core.service import run_module
from wuye.meetings.verify import main as verify_minutes

if sys.argv[1:2] == ["verify-minutes"]:
    sys.exit(verify_minutes(sys.argv[2:]))
run_module(__package__)
