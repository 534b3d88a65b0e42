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
                     "peak_rss_mib":..,"jvm_cpu_ms":..,"job_cpu_ms":..,
                     "thread_cpu_ms":{..},...}
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
  job_cpu_ms    user+sys CPU time of the Flink JVM (all threads) while the job
                ran: a thread of this Python process (CpuSampler) reads
                /proc/<jvm>/stat every 20 ms from just before submission to
                completion, without calling into the JVM; the job ran in
                [t_end - job_ms, t_end], t_end = when the driver saw it
                complete; job_cpu_ms = CPU(t_end) - CPU(t_end - job_ms), each
                interpolated between the samples around it.
  job_cores     job_cpu_ms / job_ms: cores the JVM kept busy during the job.
  thread_cpu_ms job_cpu_ms split by thread (/proc/<jvm>/task/*/stat, every
                100 ms, grouped by name, see thread_group): flink_task (task
                threads and source split fetchers), gc, jit (C1/C2 compiler
                threads), other (MiniCluster RPC, metrics, VM thread, ...), and
                exited_unsampled (threads that exited after their last sample).
                The run's log (stderr) names the threads of each group and the
                busiest threads during the job.
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
import threading
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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_cpu_ms(path):
    """utime+stime (ms) from a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file; None if
    the process or thread is gone."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    # comm may contain spaces/parens: fields after the last ')'.
    rest = stat[stat.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) * 1000 // CLK_TCK  # utime, stime (ticks)


def cpu_ms(pid):
    """user+sys CPU time of a live process (all its threads), in ms."""
    return _stat_cpu_ms(f"/proc/{pid}/stat")


def _comm(path):
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


# Flink names a task's thread after the task, i.e. its chain of operators ("Source: bid[1] ->
# Calc[2] -> Sink: ... (1/1)#0"); the native name keeps the first 15 bytes ("Source: bid[1] ",
# "GlobalWindowAgg"). "Source Data Fet(cher ...)" is a FLIP-27 source's split fetcher thread,
# which reads and decodes the file for the source task; "OutputFlusher f(or ...)" flushes a
# task's network buffers.
TASK_THREAD_PREFIXES = ("Source: ", "Source Data Fet", "OutputFlusher", "Sink: ", "Window", "GroupWindow",
                        "LocalWindow", "GlobalWindow", "GroupAggregate", "Join", "WindowJoin",
                        "IntervalJoin", "Calc", "Rank", "Deduplicate", "Expand", "TableSource",
                        "Filter")


def thread_group(name):
    """Group of a JVM thread by its native name (OpenJDK 17 sets the Java thread name, which
    the kernel cuts to 15 bytes; the names were checked on this JVM, see bench/README.md)."""
    if name.startswith(("GC Thread", "G1 ")):
        return "gc"
    if name.startswith(("C1 CompilerThre", "C2 CompilerThre", "Sweeper thread")):
        return "jit"
    if name.startswith(TASK_THREAD_PREFIXES):
        return "flink_task"
    return "other"


class CpuSampler:
    """Samples the CPU time of the Flink JVM from a background thread of this (Python) process,
    without calling into the JVM: every `interval` s the process's utime+stime
    (/proc/<pid>/stat: all its threads, exited ones included), and every `thread_every`-th
    sample each thread's (/proc/<pid>/task/<tid>/stat) with its name, so that a thread that
    exits before the end (Flink's task threads end with their job) is still seen.

    cpu_between(t0, t1) is the process CPU in [t0, t1] (time.monotonic() seconds),
    interpolated linearly between the samples around each instant; threads_between(t0, t1)
    splits it by thread group (thread_group) plus "exited_unsampled": threads that exited
    after their last sample (their last <= thread_every * interval s) or lived only between
    two samples."""

    def __init__(self, pid, interval=0.02, thread_every=5):
        self.pid = pid
        self.interval = interval
        self.thread_every = thread_every
        self.samples = []      # [(t, process cpu_ms)]
        self.threads = {}      # tid -> {"name": str, "samples": [(t, cpu_ms)]}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jvm-cpu-sampler", daemon=True)

    def start(self):
        self._sample(threads=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample(threads=True)

    def _run(self):
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            self._sample(threads=n % self.thread_every == 0)

    def _sample(self, threads):
        t = time.monotonic()
        cpu = _stat_cpu_ms(f"/proc/{self.pid}/stat")
        if cpu is None:
            return
        self.samples.append((t, cpu))
        if not threads:
            return
        task_dir = f"/proc/{self.pid}/task"
        try:
            tids = os.listdir(task_dir)
        except OSError:
            return
        for tid in tids:
            c = _stat_cpu_ms(f"{task_dir}/{tid}/stat")
            if c is None:
                continue
            th = self.threads.get(tid)
            if th is None:
                name = _comm(f"{task_dir}/{tid}/comm")
                if name is None:
                    continue
                th = self.threads[tid] = {"name": name, "samples": []}
            th["samples"].append((t, c))

    @staticmethod
    def _at(samples, t):
        """Value at t, linear between the two samples around t; the last value after the
        last sample; None before the first sample."""
        if not samples:
            return 0
        if t <= samples[0][0]:
            return samples[0][1] if t == samples[0][0] else None
        if t >= samples[-1][0]:
            return samples[-1][1]
        lo, hi = 0, len(samples) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if samples[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (ta, ca), (tb, cb) = samples[lo], samples[hi]
        return ca + (cb - ca) * (t - ta) / (tb - ta)

    def cpu_between(self, t0, t1):
        a, b = self._at(self.samples, t0), self._at(self.samples, t1)
        return None if a is None or b is None else round(b - a)

    def threads_between(self, t0, t1):
        total = self.cpu_between(t0, t1)
        if total is None:
            return None
        groups = {"flink_task": 0.0, "gc": 0.0, "jit": 0.0, "other": 0.0}
        for th in self.threads.values():
            s = th["samples"]
            d = self._thread_delta(s, t0, t1)
            groups[thread_group(th["name"])] += d
        out = {k: round(v) for k, v in groups.items()}
        out["exited_unsampled"] = max(0, total - sum(out.values()))
        return out

    def _thread_delta(self, s, t0, t1):
        """CPU of one thread (its samples s) in [t0, t1]."""
        if s[0][0] > t1:  # created after the interval
            return 0.0
        a = self._at(s, t0)
        if a is None:  # first seen after t0: created during the interval (if after the
            a = 0.0 if s[0][0] > self.samples[0][0] else s[0][1]  # sampler's first sample)
        return max(0.0, self._at(s, t1) - a)

    def top_threads(self, t0, t1, n=12):
        """The n threads with the most CPU in [t0, t1]: [(name, group, ms)]."""
        rows = [(th["name"], thread_group(th["name"]), round(self._thread_delta(th["samples"], t0, t1)))
                for th in self.threads.values()]
        return sorted(rows, key=lambda r: -r[2])[:n]

    def thread_names(self):
        """{group: sorted distinct thread names}: what thread_group saw."""
        names = {}
        for th in self.threads.values():
            names.setdefault(thread_group(th["name"]), set()).add(th["name"])
        return {k: sorted(v) for k, v in names.items()}


def start_job_sampler():
    """A CpuSampler on the (single) Flink JVM, started now; None if there is not exactly one."""
    jvms = jvm_pids()
    return CpuSampler(jvms[0]).start() if len(jvms) == 1 else None


def job_result(exec_result, events, t0, t1, script_start, sampler, **extra):
    """The JSON line of a finished Flink job (bench/README.md, "What the numbers mean"):
    submitted at monotonic time t0, seen complete at t1, the driver started at script_start;
    `extra` fields go after "events"."""
    job_ms = int(exec_result.get_net_runtime())
    jvms = jvm_pids()
    jvm_kib = sum(vm_hwm_kib(p) or 0 for p in jvms) if jvms else None
    return {
        "engine": "flink",
        "version": "2.3.0",
        **extra,
        "events": events,
        "job_ms": job_ms,
        "submit_ms": int((t1 - t0) * 1000),
        "wall_ms": int((t1 - script_start) * 1000),
        "events_per_s": round(events / (job_ms / 1000.0)) if job_ms > 0 else None,
        "peak_rss_mib": round(jvm_kib / 1024) if jvm_kib else None,
        "driver_rss_mib": round((vm_hwm_kib(os.getpid()) or 0) / 1024),
        "jvm_cpu_ms": sum(cpu_ms(p) or 0 for p in jvms) if jvms else None,
        **job_cpu_fields(sampler, t1, job_ms),
        "jvm_pids": jvms,
        "job_id": str(exec_result.get_job_id()),
    }


def job_cpu_fields(sampler, t_end, job_ms):
    """Fields for the JSON line: the JVM's CPU while the job ran, i.e. in
    [t_end - job_ms, t_end] with t_end the moment the driver saw the job complete, and its
    split by thread group. Thread names go to stderr (the run's log)."""
    if sampler is None:
        return {"job_cpu_ms": None, "thread_cpu_ms": None}
    sampler.stop()
    t_start = t_end - job_ms / 1000.0
    job_cpu = sampler.cpu_between(t_start, t_end)
    print("jvm threads by group: " + json.dumps(sampler.thread_names()), file=sys.stderr)
    print("jvm threads with the most CPU during the job (name, group, ms): "
          + json.dumps(sampler.top_threads(t_start, t_end)), file=sys.stderr)
    return {
        "job_cpu_ms": job_cpu,
        "job_cores": round(job_cpu / job_ms, 2) if job_cpu is not None and job_ms > 0 else None,
        "thread_cpu_ms": sampler.threads_between(t_start, t_end),
        "cpu_samples": len(sampler.samples),
    }


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
    sampler = start_job_sampler()
    t0 = time.monotonic()
    result = t_env.execute_sql("INSERT INTO sink" + WINDOW_QUERY)
    job_client = result.get_job_client()
    exec_result = job_client.get_job_execution_result().result()
    t1 = time.monotonic()
    out = job_result(exec_result, events, t0, t1, SCRIPT_START, sampler)
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
