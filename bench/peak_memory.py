"""Run a Python script and write its peak resident memory to a file.

    python bench/peak_memory.py OUT.json manage.py train --feedback explicit

The peak is VmHWM from /proc, read as the script exits. Not getrusage():
on Linux a child's ru_maxrss starts from its parent's peak when it is
forked, so a large parent makes every child look as large.
"""

import atexit
import json
import os
import runpy
import sys


def peak_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    out_path, script, *arguments = sys.argv[1:]

    def write_peak():
        with open(out_path, "w") as out:
            json.dump({"peak_kib": peak_kib()}, out)

    atexit.register(write_peak)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
