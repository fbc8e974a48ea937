"""python -m wuye.fund serve | relay | consume events | timers | all | migrate"""

from wuye.core.entry import run

run(__package__)
