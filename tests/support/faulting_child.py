"""A stand-in for `flexlearn.models.native_check`'s child that dies the way llama.cpp does on a CPU whose kernels
fault: by a real SIGILL. No test machine's CPU faults, so this is how the parent's handling is tested.

`FLEX_TEST_FAULT` says when: `extra` (only with llama.cpp's extra buffer types), `always`, or `fail` (an ordinary
error, exit 1). Each run appends its argument to the file `FLEX_TEST_FAULT_LOG` when that is set.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    extra_bufts = sys.argv[2] == "1"
    log = os.environ.get("FLEX_TEST_FAULT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{int(extra_bufts)}\n")
    mode = os.environ.get("FLEX_TEST_FAULT", "extra")
    if mode == "fail":
        print("not a model file", file=sys.stderr)
        return 1
    if mode == "always" or (mode == "extra" and extra_bufts):
        signal.signal(signal.SIGILL, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
