"""python -m wuye.iot serve | relay | consume events | migrate"""

import sys

from wuye.core.service import main
from wuye.iot.service import SPEC

sys.exit(main(SPEC))
