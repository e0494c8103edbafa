"""Registers a model and SIGKILLs itself at a named step (run by test_crash.py).

usage: python crash_worker.py MODEL_PATH NAME KILL_AT   (KILL_AT: a step name or "never")
The backend comes from the MODELPORT_* environment, as for the CLI.
"""

import os
import signal
import sys

from modelport.core.config import Settings
from modelport.registry import Registry

path, name, kill_at = sys.argv[1:4]


def on_step(step: str) -> None:
    print(step, flush=True)
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


reg = Registry.from_settings(Settings(), on_step=on_step)
v = reg.register(path, name)
print("registered", v.ref, flush=True)
