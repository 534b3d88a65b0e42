#!/usr/bin/env python3
"""The large-state benchmark (issue #27): one keyed SQL job whose RocksDB state is several
times the managed memory, on Weir and on Apache Flink 2.3, side by side. Run it through
bench/large-state.sh, which installs Flink, builds weir and passes the knobs.

Usage: large_state.py --out DIR --data-dir DIR --keys K --events N --weir-bin BIN
                      --flink-python PY [--engines weir,flink] [--rescale-to P2] ...

The job (the same Flink SQL text on both engines, bench/sql/large_state.sql):

    SELECT k, COUNT(*), SUM(v), MAX(v) FROM events GROUP BY k   -- into a blackhole sink

over a JSON-lines file of N events {"k": <key>, "v": <0..999>} with K distinct keys: pass
p (p = 0, 1, ...) over the file visits every key once in a scrambled order
(k = (i * 2654435761 + p) mod K for i in 0..K-1), so every key is written at each pass and
read from the second on: a RocksDB get and put per event once the state outgrows memory.

Both engines run at parallelism 1 with `state.backend.type: rocksdb`, incremental
checkpoints every --interval to a local file:// directory, and --managed-mb of managed
memory for RocksDB (Flink: taskmanager.memory.managed.size; Weir: that share of a
taskmanager.memory.process.size of 256 MiB). Per engine:

1. main run: the whole file. Throughput = N / job time (Weir: elapsed_ms of --summary-json;
   Flink: the JobExecutionResult's net runtime), CPU = the engine process's utime+stime during
   the job (Weir: the weir process; Flink: the JVM, sampled by flink_sql.py). While it runs,
   a thread polls the engine's REST API (both serve Flink's GET /jobs/:id/checkpoints) every
   POLL seconds and records every completed checkpoint: end_to_end_duration (duration),
   checkpointed_size (what it wrote: the incremental size) and state_size (what it
   references: the full size). A main run still going after --max-seconds (MAX_SECONDS) is
   cancelled over REST: its throughput is then the records its source emitted by then (GET
   /jobs/:id, the source vertex's write-records) over the job's duration, its CPU the process
   tree's utime+stime since the job was first seen RUNNING; the state it restores is smaller
   than a finished run's (the table gives each restored checkpoint's full size). Each completed checkpoint's files are hard-linked aside at
   once, as Flink deletes a finished job's checkpoints; the last one is restored below.
2. empty: a fresh start on an empty input file: the job's start-up and end, no state.
3. restore: the last completed checkpoint of run 1 at parallelism 1, with the input file
   replaced by an empty one (so the restored source finds its file read): the time to
   restore the state, start and see the input ended. Flink: the net runtime (job creation to
   finish, including deployment and the RocksDB restore); Weir: the wall time of the whole
   `weir run` process (start-up, planning and the restore included).
4. rescale: the same checkpoint at parallelism --rescale-to (0: skipped).

--reuse flink reports the Flink results kept by an earlier run of the same input instead of
running Flink again (REUSE_FLINK=1 in bench/large-state.sh).

Prints one line per engine and metric (`<engine> <metric>=<value>`) and a final table, and
writes every figure to OUT/large-state.json.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GEN_VERSION = "v1"
MULT = 2654435761


def log(msg):
    print(f"[large-state] {msg}", file=sys.stderr, flush=True)


# ---- data -----------------------------------------------------------------------------------

def generate(path, keys, events):
    """Writes the input file unless it exists with the same parameters (its .meta)."""
    meta = f"{GEN_VERSION} keys={keys} events={events} mult={MULT}\n"
    if os.path.exists(path) and os.path.exists(path + ".meta"):
        with open(path + ".meta") as f:
            if f.read() == meta:
                return
    if keys % MULT == 0:  # MULT is prime: any other key count keeps the passes permutations
        raise SystemExit(f"the key count {keys} must not be a multiple of {MULT}")
    log(f"generating {events} events over {keys} keys into {path}")
    tmp = path + ".tmp"
    chunk = 200_000
    with open(tmp, "w") as f:
        i = 0
        while i < events:
            n = min(chunk, events - i)
            f.write("".join(
                f'{{"k":{((j % keys) * MULT + j // keys) % keys},"v":{(j * 7919) % 1000}}}\n'
                for j in range(i, i + n)))
            i += n
    os.replace(tmp, path)
    with open(path + ".meta", "w") as f:
        f.write(meta)


# ---- REST polling and checkpoint mirroring ----------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port, path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def tree_cpu_ms(root):
    """utime+stime (ms) of process `root` and its descendants (the JVM PyFlink spawns, the
    weir process measure.py and nice exec)."""
    procs, tree = process_tree(root)
    return sum(procs[p][1] for p in tree if p in procs) * 1000 // os.sysconf("SC_CLK_TCK")


def kill_tree(root):
    """SIGKILL to process `root` and its descendants (the JVM outlives a killed PyFlink)."""
    for p in process_tree(root)[1]:
        try:
            os.kill(p, 9)
        except OSError:
            pass


def process_tree(root):
    """({pid: (ppid, utime+stime ticks)} of every process, pids of `root` and descendants)."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, (ppid, _) in procs.items() if ppid == p and c not in tree]
    return procs, tree


def local_path(uri):
    """'file:/a/b', 'file:///a/b' or '/a/b' -> '/a/b'."""
    return re.sub(r"^file:/*", "/", uri)


def link_tree(src, dst):
    """Hard-links every file below src into dst (directories created)."""
    for d, _, files in os.walk(src):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            try:
                os.link(os.path.join(d, f), os.path.join(dst, rel, f))
            except FileNotFoundError:
                pass  # removed meanwhile: a file of an older checkpoint


class Poller(threading.Thread):
    """Polls an engine's REST API while its job runs: the job id and each completed checkpoint,
    whose files it hard-links into keep/<id>/ (the layout below the job's checkpoint dir)."""

    def __init__(self, port, keep, every, pid):
        super().__init__(daemon=True)
        self.port, self.keep, self.every, self.pid = port, keep, every, pid
        # From the job's first sight RUNNING: (cpu ms, monotonic) then, and the latest
        # (records its sources emitted, job duration ms, cpu ms)
        self.cpu0 = None
        self.progress = (0, 0, 0)
        self.stop = threading.Event()
        self.jid = None
        self.checkpoints = {}  # id -> dict
        self.mirrored = []  # ids, oldest first
        self.errors = 0

    def run(self):
        while not self.stop.is_set():
            try:
                self.poll()
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                self.errors += 1
            self.stop.wait(self.every)

    def poll(self):
        if self.jid is None:
            jobs = get_json(self.port, "/jobs/overview").get("jobs", [])
            if not jobs:
                return
            self.jid = jobs[0]["jid"]
        job = get_json(self.port, f"/jobs/{self.jid}")
        if job.get("state") == "RUNNING":
            cpu = tree_cpu_ms(self.pid)
            if self.cpu0 is None:
                self.cpu0 = cpu
            sources = [v for v in job.get("vertices", []) if v["name"].startswith("Source")]
            self.progress = (sum(v["metrics"].get("write-records", 0) for v in sources),
                             job.get("duration", 0), cpu - self.cpu0)
        stats = get_json(self.port, f"/jobs/{self.jid}/checkpoints")
        for h in sorted(stats.get("history", []), key=lambda h: h["id"]):
            if h.get("status") != "COMPLETED" or h.get("is_savepoint") \
                    or h["id"] in self.checkpoints:
                continue
            seen = time.monotonic()
            path = local_path(h["external_path"])
            self.mirror(h["id"], path)
            self.checkpoints[h["id"]] = {
                "id": h["id"],
                "duration_ms": h.get("end_to_end_duration"),
                "incremental_bytes": h.get("checkpointed_size"),
                "full_bytes": h.get("state_size"),
                "path": path,
                "mirrored": h["id"] in self.mirrored,
                "mirror_ms": round((time.monotonic() - seen) * 1000),
            }

    def mirror(self, cid, chk):
        """Hard-links chk-<n>/ and the job's shared/ and taskowned/ files aside, keeping the
        last two mirrors: enough to restore the newest checkpoint the job left behind."""
        root = os.path.dirname(chk)
        if not os.path.isfile(os.path.join(chk, "_metadata")):
            log(f"checkpoint {cid}: {chk}/_metadata is gone already; not kept")
            return
        dst = os.path.join(self.keep, str(cid))
        for sub in os.listdir(root):
            if sub in (os.path.basename(chk), "shared", "taskowned"):
                link_tree(os.path.join(root, sub), os.path.join(dst, sub))
        self.mirrored.append(cid)
        while len(self.mirrored) > 2:
            shutil.rmtree(os.path.join(self.keep, str(self.mirrored.pop(0))), ignore_errors=True)


def put_back(keep, cid, chk):
    """Recreates a mirrored checkpoint at its original path (Flink's _metadata names its files
    by absolute path) as hard links, fresh for each restore."""
    root = os.path.dirname(chk)
    shutil.rmtree(root, ignore_errors=True)
    link_tree(os.path.join(keep, str(cid)), root)


# ---- engines --------------------------------------------------------------------------------

class Run:
    def __init__(self, args, engine, out):
        self.args, self.engine, self.out = args, engine, out
        self.ck = os.path.join(out, "checkpoints")
        self.keep = os.path.join(out, "kept")
        self.localdir = os.path.join(out, "rocksdb")
        self.input_dir = os.path.join(out, "input")
        self.script = os.path.join(out, "large_state.sql")

    def prepare(self, data_file):
        shutil.rmtree(self.out, ignore_errors=True)
        for d in (self.ck, self.keep, self.localdir, self.input_dir):
            os.makedirs(d)
        os.symlink(data_file, os.path.join(self.input_dir, "events.jsonl"))
        with open(os.path.join(HERE, "sql", "large_state.sql")) as f:
            text = f.read().replace("${INPUT}", os.path.join(self.input_dir, "events.jsonl"))
        with open(self.script, "w") as f:
            f.write(text)

    def empty_input(self):
        p = os.path.join(self.input_dir, "events.jsonl")
        os.remove(p)
        open(p, "w").close()

    def settings(self, port, restore=None):
        a = self.args
        common = {
            "state.backend.type": "rocksdb",
            "state.backend.incremental": "true",
            "execution.checkpointing.interval": a.interval,
            "state.checkpoints.dir": f"file://{self.ck}",
            "state.backend.rocksdb.localdir": self.localdir,
            "rest.port": str(port),
        }
        if self.engine == "flink":
            common.update({
                "taskmanager.memory.managed.size": f"{a.managed_mb}m",
                "rest.address": "127.0.0.1",
                "rest.bind-address": "127.0.0.1",
                # REST answers checkpoint statistics from a cache (3 s by default): fresh ones
                # let the poller keep a checkpoint before the next one replaces it
                "rest.cache.checkpoint-statistics.timeout": "100 ms",
                # the source's record count in GET /jobs/:id, read when a run is capped
                "metrics.fetcher.update-interval": "500",
                # a bounded job would otherwise wait for one more checkpoint before it ends
                "execution.checkpointing.checkpoints-after-tasks-finish": "false",
            })
            if restore:
                common["execution.state-recovery.path"] = f"file://{restore}"
        else:
            # managed memory is a fraction of the process budget: MANAGED_MB of 256 MiB
            common["taskmanager.memory.process.size"] = "256m"
            common["taskmanager.memory.managed.fraction"] = str(a.managed_mb / 256)
        return common

    def run(self, tag, parallelism, restore=None, poll=False):
        a = self.args
        port = free_port()
        conf = self.settings(port, restore)
        load = float(open("/proc/loadavg").read().split()[0])
        logf = os.path.join(self.out, f"{tag}.log")
        nice = ["nice", "-n", str(a.nice)]
        if self.engine == "flink":
            cmd = nice + [a.flink_python, os.path.join(HERE, "flink_sql.py"), self.script,
                          "--events", str(a.events), "--name", f"large_state_{tag}",
                          "--parallelism", str(parallelism)]
            for k, v in conf.items():
                cmd += ["--conf", f"{k}={v}"]
        else:
            summary = os.path.join(self.out, f"{tag}.summary.json")
            measure = os.path.join(self.out, f"{tag}.measure")
            cmd = [sys.executable, os.path.join(HERE, "measure.py"), measure] + nice + [
                a.weir_bin, "run", self.script, "--parallelism", str(parallelism),
                "--no-progress", "--summary-json", summary]
            for k, v in conf.items():
                cmd += ["--set", f"{k}={v}"]
            if restore:
                cmd += ["--from-savepoint", f"file://{restore}"]
        t0 = time.monotonic()
        capped = False
        with open(logf, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            poller = Poller(port, self.keep, a.poll, proc.pid) if poll else None
            if poller:
                poller.start()
            try:
                stdout, _ = proc.communicate(timeout=a.max_seconds if poll else None)
            except subprocess.TimeoutExpired:
                # Still running after --max-seconds: what it processed so far is the figure;
                # cancel it over REST (checkpoints kept) and let the process end.
                capped = True
                poller.stop.set()
                poller.join()
                if poller.jid is None:
                    # no job to cancel (its REST API never answered): end the process tree
                    # instead of leaving it running, and say why there is no figure
                    kill_tree(proc.pid)
                    proc.communicate()
                    raise SystemExit(
                        f"{self.engine} {tag}: no job seen running within {a.max_seconds} s "
                        f"(load {open('/proc/loadavg').read().split()[0]}); see {logf}")
                log(f"{self.engine} {tag}: still running after {a.max_seconds} s; cancelling "
                    f"(read {poller.progress[0]} of {a.events} events)")
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/jobs/{poller.jid}?mode=cancel", method="PATCH")
                urllib.request.urlopen(req, timeout=10).read()
                stdout, _ = proc.communicate()
        wall = round((time.monotonic() - t0) * 1000)
        if poller:
            poller.stop.set()
            poller.join()
        if capped:
            records, job_ms, cpu = poller.progress
            r = {"tag": tag, "parallelism": parallelism, "loadavg_1m": load,
                 "process_wall_ms": wall, "capped_after_s": a.max_seconds, "events": records,
                 "job_ms": job_ms, "cpu_ms": cpu, "peak_rss_mib": None,
                 "checkpoints": [poller.checkpoints[k] for k in sorted(poller.checkpoints)],
                 "mirrored": list(poller.mirrored), "job_id": poller.jid}
            log(f"{self.engine} {tag}: " + json.dumps({k: v for k, v in r.items()
                                                       if k != "checkpoints"}))
            return r
        if proc.returncode != 0:
            tail = open(logf).read().strip().splitlines()[-5:]
            raise SystemExit(f"{self.engine} {tag} failed (exit {proc.returncode}, log {logf}):\n"
                             + "\n".join(tail))
        r = {"tag": tag, "parallelism": parallelism, "loadavg_1m": load,
             "process_wall_ms": wall, "events": a.events}
        if self.engine == "flink":
            line = [ln for ln in stdout.splitlines() if ln.startswith('{"engine": "flink"')]
            if not line:
                raise SystemExit(f"flink {tag}: no result line (log {logf})")
            d = json.loads(line[-1])
            r.update(job_ms=d["job_ms"], cpu_ms=d.get("job_cpu_ms"),
                     peak_rss_mib=d.get("peak_rss_mib"))
            r["restore_ms"] = d["job_ms"]
        else:
            s = json.load(open(summary))
            wall_ms, rss_kib, _, cpu_ms = (int(x) for x in open(measure).read().split())
            r.update(job_ms=s["elapsed_ms"], cpu_ms=cpu_ms, peak_rss_mib=round(rss_kib / 1024),
                     records_in=s["records_in"], records_out=s["records_out"])
            r["restore_ms"] = wall_ms
        if poller:
            r["checkpoints"] = [poller.checkpoints[k] for k in sorted(poller.checkpoints)]
            r["mirrored"] = list(poller.mirrored)
            r["job_id"] = poller.jid
        log(f"{self.engine} {tag}: " + json.dumps({k: v for k, v in r.items()
                                                   if k != "checkpoints"}))
        return r


def bench_engine(args, engine, data_file):
    run = Run(args, engine, os.path.join(args.out, engine))
    run.prepare(data_file)
    main = run.run("main", 1, poll=True)
    res = {"engine": engine, "main": main}
    cks = main["checkpoints"]
    if engine == "weir" and "capped_after_s" not in main:
        want_out = args.keys + 2 * (args.events - args.keys)
        if main["records_in"] != args.events or main["records_out"] != want_out:
            log(f"WARNING: weir read {main['records_in']} records (expected {args.events}) and "
                f"emitted {main['records_out']} (expected {want_out})")
    kept = [c for c in cks if c["id"] in main["mirrored"]]
    run.empty_input()
    res["empty"] = run.run("empty", 1)
    if not kept:
        log(f"{engine}: no completed checkpoint was kept; no restore measured "
            f"(a longer input or a shorter --interval gives some)")
        return res
    last = kept[-1]
    res["restored_checkpoint"] = last
    put_back(run.keep, last["id"], last["path"])
    res["restore"] = run.run("restore", 1, restore=last["path"])
    if args.rescale_to:
        put_back(run.keep, last["id"], last["path"])
        res["rescale"] = run.run(f"rescale-p{args.rescale_to}", args.rescale_to,
                                 restore=last["path"])
    shutil.rmtree(run.localdir, ignore_errors=True)
    return res


# ---- report ---------------------------------------------------------------------------------

def metrics(args, r):
    """The figures of one engine, in print order: (name, value, unit)."""
    m, cks = r["main"], r["main"].get("checkpoints", [])
    # A capped run whose REST API gave no source record count (weir at parallelism 1 chains
    # the source with the aggregate and the sink: the chain's write-records are the sink's)
    n = m.get("events", args.events) or None
    out = [("events_per_s", round(n / (m["job_ms"] / 1000)) if n else None, "events/s"),
           ("events_per_cpu_s",
            round(n / (m["cpu_ms"] / 1000)) if n and m.get("cpu_ms") else None,
            "events per CPU-second"),
           ("events_processed", n, ""),
           ("job_ms", m["job_ms"], "ms"), ("cpu_ms", m.get("cpu_ms"), "ms"),
           ("peak_rss_mib", m.get("peak_rss_mib"), "MiB"),
           ("loadavg_1m", m["loadavg_1m"], "")]
    durs = [c["duration_ms"] for c in cks if c["duration_ms"] is not None]
    out += [("checkpoints", len(cks), ""),
            ("checkpoint_ms_median", round(statistics.median(durs)) if durs else None, "ms"),
            ("checkpoint_ms_max", max(durs) if durs else None, "ms")]
    if cks:
        mid = cks[len(cks) // 2]
        out += [("mid_checkpoint_id", mid["id"], ""),
                ("mid_checkpoint_incremental_bytes", mid["incremental_bytes"], "bytes"),
                ("mid_checkpoint_full_bytes", mid["full_bytes"], "bytes"),
                ("last_checkpoint_full_bytes", cks[-1]["full_bytes"], "bytes")]
        # every checkpoint after the first (which holds the whole state by definition): one
        # checkpoint picked mid-run may or may not be one that follows a compaction
        inc = [c["incremental_bytes"] for c in cks[1:] if c["incremental_bytes"] is not None]
        out += [("incremental_bytes_median", round(statistics.median(inc)) if inc else None,
                 "bytes"),
                ("incremental_bytes_mean", round(statistics.mean(inc)) if inc else None,
                 "bytes"),
                ("uploaded_bytes_total",
                 sum(c["incremental_bytes"] or 0 for c in cks), "bytes")]
    out.append(("empty_start_ms", r["empty"]["restore_ms"], "ms"))
    if "restore" in r:
        out += [("restored_checkpoint_id", r["restored_checkpoint"]["id"], ""),
                ("restore_ms", r["restore"]["restore_ms"], "ms")]
    if "rescale" in r:
        out.append((f"rescale_p1_to_p{args.rescale_to}_ms", r["rescale"]["restore_ms"], "ms"))
    return out


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return f"{v:,}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--keys", type=int, required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--weir-bin", required=True)
    ap.add_argument("--flink-python", required=True)
    ap.add_argument("--engines", default="weir,flink")
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--managed-mb", type=int, default=16)
    ap.add_argument("--rescale-to", type=int, default=2)
    ap.add_argument("--poll", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=300,
                    help="cancel a main run still going after this long; its throughput is "
                         "then what its sources read so far")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--reuse", default="",
                    help="engines whose results of an earlier run (OUT/<engine>/result.json, "
                         "same input) are reported instead of running them again")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.data_dir, exist_ok=True)
    data = os.path.join(args.data_dir, f"large-state-{args.events}-{args.keys}.jsonl")
    generate(data, args.keys, args.events)
    log(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} input {data} "
        f"({os.path.getsize(data):,} bytes), {args.events} events, {args.keys} keys, "
        f"managed memory {args.managed_mb} MiB, checkpoints every {args.interval}")
    results = {}
    for engine in args.engines.split(","):
        saved = os.path.join(args.out, engine, "result.json")
        if engine in args.reuse.split(","):
            with open(saved) as f:
                kept = json.load(f)
            if (kept["keys"], kept["events"]) != (args.keys, args.events):
                raise SystemExit(f"{saved} is of another input ({kept['keys']} keys, "
                                 f"{kept['events']} events)")
            log(f"{engine}: reusing the results of {saved} (not rerun)")
            results[engine] = kept["result"]
            continue
        results[engine] = bench_engine(args, engine, data)
        with open(saved, "w") as f:
            json.dump({"keys": args.keys, "events": args.events, "result": results[engine]}, f)
    with open(os.path.join(args.out, "large-state.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)

    rows = {e: metrics(args, r) for e, r in results.items()}
    for e, ms in rows.items():
        for name, v, _ in ms:
            print(f"{e} {name}={'n/a' if v is None else v}")
    engines = list(rows)
    names = [n for n, _, _ in rows[engines[0]]]
    units = {n: u for n, _, u in rows[engines[0]]}
    print()
    print("| metric | " + " | ".join(engines) + " |")
    print("|---|" + "---|" * len(engines))
    for n in names:
        vals = [dict((k, v) for k, v, _ in rows[e]).get(n) for e in engines]
        unit = f" ({units[n]})" if units[n] else ""
        print(f"| {n}{unit} | " + " | ".join(fmt(v) for v in vals) + " |")


if __name__ == "__main__":
    main()
