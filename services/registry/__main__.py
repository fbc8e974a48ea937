"""python -m wuye.registry serve | relay | migrate"""

import sys

from wuye.core.service import main
from wuye.registry.service import SPEC

sys.exit(main(SPEC))
