#!/usr/bin/env python3
"""Runs a command and writes "<wall_ms> <maxrss_kib> <exit> <cpu_ms>" to OUT.

Usage: measure.py OUT CMD...

maxrss and CPU are getrusage(RUSAGE_CHILDREN) of this process: its only child is CMD (and
`nice` execs into the command it runs), so they are that one process's peak RSS and
utime+stime. Exits with CMD's exit code. Used by engine-core.sh and sql.sh.
"""
import resource
import subprocess
import sys
import time

out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
rc = subprocess.call(cmd)
wall_ms = int((time.monotonic() - t0) * 1000)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_ms = int((ru.ru_utime + ru.ru_stime) * 1000)
with open(out, "w") as f:
    f.write(f"{wall_ms} {ru.ru_maxrss} {rc} {cpu_ms}\n")
sys.exit(rc)
