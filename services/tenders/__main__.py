"""python -m wuye.tenders serve | relay | consume events | timers | all | migrate |
verify-committee"""

from wuye.core.entry import run

run(__package__, {"verify-committee": "wuye.tenders.verify"})
