"""python -m wuye.meetings serve | relay | consume events | timers | all | migrate |
verify-minutes"""

import sys

# The verifier is anyone's tool: it starts without the service's runtime.
if sys.argv[1:2] == ["verify-minutes"]:
    from wuye.meetings.verify import main as verify_minutes

    sys.exit(verify_minutes(sys.argv[2:]))
else:
    from wuye.core.service import run_module

    run_module(__package__)
