"""python -m wuye.inspections serve | relay | consume events | timers | migrate | verify-draw"""

import sys

from wuye.core.service import main
from wuye.inspections.service import SPEC
from wuye.inspections.verify import main as verify_draw

if sys.argv[1:2] == ["verify-draw"]:
    sys.exit(verify_draw(sys.argv[2:]))
sys.exit(main(SPEC))
