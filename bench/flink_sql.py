#!/usr/bin/env python3
"""Runs a SQL script on Apache Flink 2.3 (PyFlink, streaming mode, parallelism 1 unless told)
and measures its job the way flink_tumbling.py does.

Usage: flink_sql.py SCRIPT.sql --events N [--name NAME] [--parallelism P] [--conf KEY=VALUE]...

--conf sets a Flink configuration key for the job (e.g. state.backend.type=rocksdb).

SCRIPT is a ';'-separated list of statements (CREATE TABLE/VIEW, INSERT INTO), the exact text
Weir runs too (bench/sql.sh substitutes the file paths first). CREATE statements run one by
one; the INSERT statements run together as one job (a statement set), as `weir run` does.

Prints one JSON line:
  {"engine": "flink", "events": N, "job_ms", "submit_ms", "wall_ms", "events_per_s",
   "peak_rss_mib", "driver_rss_mib", "jvm_cpu_ms", "job_cpu_ms", "job_cores",
   "thread_cpu_ms", ...}
with the fields of flink_tumbling.py (bench/README.md, "What the numbers mean"): job_ms is
JobExecutionResult.getNetRuntime(), peak_rss_mib the JVM's VmHWM, jvm_cpu_ms its utime+stime
from JVM start, job_cpu_ms its utime+stime while the job ran (sampled from /proc by
flink_tumbling.CpuSampler), thread_cpu_ms that split by thread group.

Env: FLINK_JVM_ARGS -> extra JVM flags for the Flink JVM.
"""
import argparse
import json
import os
import sys
import time

SCRIPT_START = time.monotonic()

# Same directory; stdlib-only helpers (importing flink_tumbling does not import PyFlink).
from flink_tumbling import job_result, start_job_sampler  # noqa: E402


def split_statements(text):
    """Splits SQL text on ';' outside quotes and comments; drops comments and empty parts."""
    stmts, cur, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c in "'`\"":
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c == ";":
            s = "".join(cur).strip()
            if s:
                stmts.append(s)
            cur = []
        else:
            cur.append(c)
        i += 1
    s = "".join(cur).strip()
    if s:
        stmts.append(s)
    return stmts


def make_env(name, parallelism, settings=()):
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    # Set before the environment exists, so that they reach the local cluster the job runs on
    # (the state backend and checkpointing are read there).
    base = Configuration()
    for key, value in settings:
        base.set_string(key, value)
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(base).build()
    )
    conf = t_env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("table.exec.resource.default-parallelism", str(parallelism))
    conf.set("table.local-time-zone", "UTC")
    conf.set("pipeline.name", name)
    return t_env


def run(script, events, name, parallelism, settings=()):
    with open(script) as f:
        stmts = split_statements(f.read())
    t_env = make_env(name, parallelism, settings)
    inserts = []
    for s in stmts:
        if s.split(None, 1)[0].upper() == "INSERT":
            inserts.append(s)
        else:
            t_env.execute_sql(s)
    if not inserts:
        raise SystemExit(f"{script}: no INSERT statement to run")
    sampler = start_job_sampler()
    t0 = time.monotonic()
    if len(inserts) == 1:
        result = t_env.execute_sql(inserts[0])
    else:
        stmt_set = t_env.create_statement_set()
        for s in inserts:
            stmt_set.add_insert_sql(s)
        result = stmt_set.execute()
    exec_result = result.get_job_client().get_job_execution_result().result()
    t1 = time.monotonic()
    out = job_result(exec_result, events, t0, t1, SCRIPT_START, sampler, query=name)
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("script", help="SQL script (paths already substituted)")
    ap.add_argument("--events", type=int, required=True, help="input records the job reads")
    ap.add_argument("--name", default=None, help="job name (default: the script's file name)")
    ap.add_argument("--parallelism", type=int, default=1, help="job parallelism (default 1)")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Flink configuration key for the job (repeatable)")
    args = ap.parse_args()
    settings = []
    for kv in args.conf:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--conf {kv!r}: expected KEY=VALUE")
        settings.append((key, value))
    extra = os.environ.get("FLINK_JVM_ARGS")
    if extra:
        os.environ["JVM_ARGS"] = (os.environ.get("JVM_ARGS", "") + " " + extra).strip()
    name = args.name or os.path.splitext(os.path.basename(args.script))[0]
    run(args.script, args.events, name, args.parallelism, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
