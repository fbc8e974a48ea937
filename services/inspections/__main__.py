"""python -m wuye.inspections serve | relay | consume events | timers | all | migrate |
verify-draw"""

import sys

from wuye.core.service import run_module
from wuye.inspections.verify import main as verify_draw

if sys.argv[1:2] == ["verify-draw"]:
    sys.exit(verify_draw(sys.argv[2:]))
run_module(__package__)
