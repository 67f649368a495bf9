"""Run a Python module with a higher soft limit on open files.

    python bench/with_open_files.py 20000 -m daphne ... app:application

Servers inherit the limit of whoever starts them, often 1,024; an idle
socket costs one descriptor, so the limit decides how many a process holds.
"""

import os
import resource
import runpy
import sys


def main():
    wanted, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(__doc__)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = int(wanted) if hard == resource.RLIM_INFINITY else min(int(wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

    # As `python -m` would: the working folder first, so the application
    # module is found.
    sys.path.insert(0, os.getcwd())
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
