"""A source whose `read` never ends (it writes its pid to $SLOW_SOURCE_PIDFILE and sleeps):
for testing that the harness cleans up on Ctrl-C."""

import os
import sys
import time

if sys.argv[1] == "spec":
    print('{"type":"SPEC","spec":{"connectionSpecification":{}}}')
    sys.exit(0)
if sys.argv[1] != "read":
    sys.exit(1)
with open(os.environ["SLOW_SOURCE_PIDFILE"], "w") as handle:
    handle.write(str(os.getpid()))
time.sleep(300)
