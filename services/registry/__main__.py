"""python -m wuye.registry serve | relay | consume events | all | migrate"""

from wuye.core.entry import run

run(__package__)
