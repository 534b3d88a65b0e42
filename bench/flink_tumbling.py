#!/usr/bin/env python3
"""Apache Flink 2.3 (PyFlink, Table API/SQL, streaming mode, parallelism 1) side
of the engine-core benchmark.

Job: JSON lines {"user_id","amount","ts"} from a file (filesystem connector,
json format) -> event time = TO_TIMESTAMP_LTZ(ts, 3) with a 1 s bounded
out-of-orderness watermark -> 1-minute TUMBLE window TVF -> COUNT(*) and
SUM(amount) per user_id -> blackhole sink.

Modes
  bench  (default)  run into a `blackhole` sink and print ONE JSON line on stdout:
                    {"engine":"flink","events":N,"job_ms":..,"wall_ms":..,
                     "peak_rss_mib":..,...}
  verify            run the same query into a filesystem (CSV) sink, recompute the
                    expected result in plain Python, compare row-by-row and
                    print {"engine":"flink","mode":"verify","rows":..,"ok":..}.

What is measured
  job_ms        JobExecutionResult.getNetRuntime() of the Flink job (ms): the
                job's own runtime inside the local MiniCluster, from job start
                to job finish. Excludes JVM start, planning/optimisation and
                code generation before submission.
  submit_ms     Python-side wall time from execute_sql() to job completion
                (includes planning, job submission, job runtime).
  wall_ms       wall time from the start of this script (before PyFlink is
                imported, i.e. before the JVM is spawned) to job completion:
                JVM start-up + planning + job. Python interpreter start-up
                (~0.1 s) and JVM shutdown are not included.
  peak_rss_mib  peak resident set size (kernel VmHWM) of the Flink JVM, the
                process that runs the whole local cluster (JobManager +
                TaskManager + the job). Read from /proc/<jvm>/status after
                the job finished, while the JVM is still alive.
  jvm_cpu_ms    user+sys CPU time the Flink JVM used from its start to job
                completion (JVM start-up, JIT, planning, GC and the job; all
                threads). Less sensitive to a busy machine than job_ms.
  driver_rss_mib  VmHWM of this Python driver process (py4j client only; no
                Python code runs per record). Not included in peak_rss_mib.
  events_per_s  events / (job_ms / 1000).

Env: FLINK_JVM_ARGS -> extra JVM flags for the Flink JVM (default: none, i.e.
JVM ergonomics: G1, max heap = 1/4 of RAM).
"""
import argparse
import json
import os
import sys
import time

SCRIPT_START = time.monotonic()

from gen_events import count_lines  # noqa: E402  (same directory, stdlib only)


def sql_quote(s):
    return "'" + s.replace("'", "''") + "'"


def source_ddl(path):
    return f"""
CREATE TEMPORARY TABLE events (
    user_id STRING,
    amount  DOUBLE,
    ts      BIGINT,
    ts_ltz  AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR ts_ltz AS ts_ltz - INTERVAL '1' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = {sql_quote(os.path.abspath(path))},
    'format' = 'json',
    'json.fail-on-missing-field' = 'true',
    'json.ignore-parse-errors' = 'false'
)"""


SINK_DDL = """
CREATE TEMPORARY TABLE sink (
    user_id      STRING,
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    cnt          BIGINT,
    total        DOUBLE
) WITH ('connector' = 'blackhole')"""

WINDOW_QUERY = """
SELECT user_id, window_start, window_end, COUNT(*) AS cnt, SUM(amount) AS total
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts_ltz), INTERVAL '1' MINUTE))
GROUP BY user_id, window_start, window_end"""


def make_env():
    # Importing here so that wall_ms covers PyFlink import + JVM spawn.
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.exec.resource.default-parallelism", "1")
    conf.set("table.local-time-zone", "UTC")
    conf.set("pipeline.name", "flink-tumbling-bench")
    return t_env


def proc_children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: fields after the last ')'.
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == pid:
            kids.append(int(d))
    return kids


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_ms(pid):
    """user+sys CPU time of a live process, in ms."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    ticks = int(rest[11]) + int(rest[12])  # utime, stime
    return int(ticks * 1000 / os.sysconf("SC_CLK_TCK"))


def jvm_pids():
    pids = []
    for pid in proc_children(os.getpid()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "java":
                    pids.append(pid)
        except OSError:
            pass
    return pids


def run_bench(path, events):
    t_env = make_env()
    t_env.execute_sql(source_ddl(path))
    t_env.execute_sql(SINK_DDL)
    t0 = time.monotonic()
    result = t_env.execute_sql("INSERT INTO sink" + WINDOW_QUERY)
    job_client = result.get_job_client()
    exec_result = job_client.get_job_execution_result().result()
    t1 = time.monotonic()
    job_ms = int(exec_result.get_net_runtime())
    jvms = jvm_pids()
    jvm_kib = sum(vm_hwm_kib(p) or 0 for p in jvms) if jvms else None
    out = {
        "engine": "flink",
        "version": "2.3.0",
        "events": events,
        "job_ms": job_ms,
        "submit_ms": int((t1 - t0) * 1000),
        "wall_ms": int((t1 - SCRIPT_START) * 1000),
        "events_per_s": round(events / (job_ms / 1000.0)) if job_ms > 0 else None,
        "peak_rss_mib": round(jvm_kib / 1024) if jvm_kib else None,
        "driver_rss_mib": round((vm_hwm_kib(os.getpid()) or 0) / 1024),
        "jvm_cpu_ms": sum(cpu_ms(p) or 0 for p in jvms) if jvms else None,
        "jvm_pids": jvms,
        "job_id": str(exec_result.get_job_id()),
    }
    print(json.dumps(out), flush=True)


def expected_rows(path):
    """Reference result in plain Python: {(user, window_start_ms): (count, sum)}."""
    acc = {}
    with open(path) as f:
        for line in f:
            ev = json.loads(line)
            key = (ev["user_id"], ev["ts"] - ev["ts"] % 60_000)
            c, s = acc.get(key, (0, 0.0))
            acc[key] = (c + 1, s + ev["amount"])
    return acc


def run_verify(path):
    """Same query into a filesystem/CSV sink, then compare with a Python
    reference. (A collect() sink pulls rows one by one over py4j: minutes for
    100k rows, so a file sink is used instead.)"""
    import csv
    import datetime as dt
    import shutil
    import tempfile

    out_dir = tempfile.mkdtemp(prefix="flink-verify-")
    try:
        t_env = make_env()
        t_env.execute_sql(source_ddl(path))
        t_env.execute_sql(f"""
CREATE TEMPORARY TABLE result_sink (
    user_id      STRING,
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    cnt          BIGINT,
    total        DOUBLE
) WITH (
    'connector' = 'filesystem',
    'path' = {sql_quote(out_dir)},
    'format' = 'csv'
)""")
        res = t_env.execute_sql("INSERT INTO result_sink" + WINDOW_QUERY)
        res.get_job_client().get_job_execution_result().result()

        def ms(text):
            t = dt.datetime.fromisoformat(text.replace(" ", "T"))
            return int(t.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)

        got = {}
        dup = 0
        for root, _, files in os.walk(out_dir):
            for name in files:
                if name.startswith("."):
                    continue  # in-progress/crc files
                with open(os.path.join(root, name), newline="") as f:
                    for user, ws, we, cnt, total in csv.reader(f):
                        ws_ms, we_ms = ms(ws), ms(we)
                        assert we_ms - ws_ms == 60_000, (ws, we)
                        if (user, ws_ms) in got:
                            dup += 1
                        got[(user, ws_ms)] = (int(cnt), float(total))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    want = expected_rows(path)
    bad = []
    for key, (c, s) in want.items():
        g = got.get(key)
        if g is None or g[0] != c or abs(g[1] - s) > 1e-6 * max(1.0, abs(s)):
            bad.append((key, (c, s), g))
    extra = [k for k in got if k not in want]
    ok = not bad and not extra and dup == 0
    out = {
        "engine": "flink",
        "mode": "verify",
        "input": path,
        "events": sum(c for c, _ in want.values()),
        "rows": len(got),
        "expected_rows": len(want),
        "windows": len({ws for _, ws in want}),
        "total_count": sum(c for c, _ in got.values()),
        "mismatches": len(bad),
        "unexpected_rows": len(extra),
        "duplicate_rows": dup,
        "ok": ok,
    }
    print(json.dumps(out), flush=True)
    for b in bad[:5]:
        print("mismatch:", b, file=sys.stderr)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="JSON-lines input file")
    ap.add_argument("--mode", choices=["bench", "verify"], default="bench")
    ap.add_argument("--events", type=int, default=None,
                    help="number of events in the input (counted if omitted)")
    args = ap.parse_args()
    if not os.path.exists(args.input):
        print(f"input not found: {args.input}", file=sys.stderr)
        return 2
    extra = os.environ.get("FLINK_JVM_ARGS")
    if extra:
        os.environ["JVM_ARGS"] = (os.environ.get("JVM_ARGS", "") + " " + extra).strip()
    if args.mode == "verify":
        return run_verify(args.input)
    events = args.events if args.events is not None else count_lines(args.input)
    run_bench(args.input, events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
