"""python -m wuye.registry serve | relay | worker | migrate"""

from wuye.core.service import run_module

run_module(__package__)
