"""python -m wuye.voting serve | relay | consume events | timers | all | migrate |
verify-tally LOG.json [--roll-digest D] [--receipt R]"""

from wuye.core.entry import run

run(__package__, {"verify-tally": "wuye.voting.verify"})
