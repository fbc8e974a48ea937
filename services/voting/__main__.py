"""python -m wuye.voting verify-tally LOG.json [--roll-digest D] [--receipt R]"""

import sys

from wuye.voting.verify import main as verify_tally

if sys.argv[1:2] == ["verify-tally"]:
    sys.exit(verify_tally(sys.argv[2:]))
print(
    "usage: python -m wuye.voting verify-tally LOG.json [--roll-digest D] [--receipt R]",
    file=sys.stderr,
)
sys.exit(2)
