"""python -m wuye.credit serve | relay | consume events | timers | migrate"""

import sys

from wuye.core.service import main
from wuye.credit.service import SPEC

sys.exit(main(SPEC))
