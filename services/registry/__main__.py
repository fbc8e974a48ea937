"""python -m wuye.registry serve | relay | consume events | all | migrate"""

from wuye.core.service import run_module

run_module(__package__)
