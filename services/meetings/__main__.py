"""python -m wuye.meetings serve | relay | consume events | timers | all | migrate |
verify-minutes"""

from wuye.core.entry import run

run(__package__, {"verify-minutes": "wuye.meetings.verify"})
