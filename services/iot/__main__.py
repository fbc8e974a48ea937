"""python -m wuye.iot serve | relay | consume events | all | migrate"""

from wuye.core.entry import run

run(__package__)
