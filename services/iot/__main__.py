"""python -m wuye.iot serve | relay | consume events | worker | migrate"""

from wuye.core.service import run_module

run_module(__package__)
