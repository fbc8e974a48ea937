"""python -m wuye.inspections serve | relay | consume events | timers | all | migrate |
verify-draw"""

from wuye.core.entry import run

run(__package__, {"verify-draw": "wuye.inspections.verify"})
