"""python -m wuye.credit serve | relay | consume events | timers | all | migrate"""

from wuye.core.service import run_module

run_module(__package__)
