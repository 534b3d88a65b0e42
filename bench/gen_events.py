#!/usr/bin/env python3
"""Deterministic event generator for the engine-core benchmark.

Writes COUNT JSON lines of the form
    {"user_id":"user_<n>","amount":<float, 2 decimals>,"ts":<epoch millis>}
in event-time order (ts non-decreasing), starting 2026-01-01T00:00:00Z and
advancing 0..4 ms per event (mean 2 ms), so 3M events span ~100 minutes,
i.e. ~100 one-minute tumbling windows. ~1000 distinct users.

Usage: gen_events.py COUNT OUTPUT_PATH

Besides OUTPUT_PATH it writes OUTPUT_PATH.expected.json with the expected
result size of the benchmark query (1-minute tumbling windows, grouped by
user_id): {"events", "users", "windows", "rows"}; "rows" is the number of
(user_id, window) output rows any correct engine must produce.

Stdlib only, fixed seed. If OUTPUT_PATH already exists with exactly COUNT
lines (and the sidecar .meta matches this generator's version), it is kept.
"""
import json
import os
import random
import sys

SEED = 20260101
USERS = 1000
START_MS = 1767225600000  # 2026-01-01T00:00:00Z
GEN_VERSION = "v1"
CHUNK = 50_000


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(1 << 22)
            if not buf:
                break
            n += buf.count(b"\n")
    return n


def meta_path(path):
    return path + ".meta"


def expected_path(path):
    return path + ".expected.json"


def up_to_date(path, count):
    want = f"{GEN_VERSION} seed={SEED} users={USERS} count={count}\n"
    try:
        with open(meta_path(path)) as f:
            if f.read() != want:
                return False
    except OSError:
        return False
    return (os.path.exists(path) and os.path.exists(expected_path(path))
            and count_lines(path) == count)


def generate(count, path):
    rng = random.Random(SEED)
    # Precompute the user_id prefixes; users drawn with a mild skew:
    # half of the events come from the first 100 users.
    prefixes = [f'{{"user_id":"user_{u}","amount":' for u in range(USERS)]
    rand = rng.random
    randrange = rng.randrange
    ts = START_MS
    pairs = set()  # (user, minute) -> distinct output rows
    add_pair = pairs.add
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as out:
        done = 0
        while done < count:
            n = min(CHUNK, count - done)
            lines = []
            append = lines.append
            for _ in range(n):
                ts += randrange(5)  # 0..4 ms, non-decreasing
                if rand() < 0.5:
                    u = randrange(100)
                else:
                    u = randrange(USERS)
                add_pair(u * 1_000_000 + (ts - START_MS) // 60_000)
                cents = randrange(1, 100_000)  # 0.01 .. 999.99
                append(f'{prefixes[u]}{cents // 100}.{cents % 100:02d},"ts":{ts}}}\n')
            out.write("".join(lines))
            done += n
    os.replace(tmp, path)
    expected = {
        "events": count,
        "users": len({p // 1_000_000 for p in pairs}),
        "windows": (ts - START_MS) // 60_000 + 1,
        "rows": len(pairs),
    }
    with open(expected_path(path), "w") as f:
        f.write(json.dumps(expected) + "\n")
    with open(meta_path(path), "w") as f:
        f.write(f"{GEN_VERSION} seed={SEED} users={USERS} count={count}\n")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = int(argv[1])
    path = argv[2]
    if count <= 0:
        print("count must be positive", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if up_to_date(path, count):
        print(f"[gen] {path}: {count} events already present, reusing", file=sys.stderr)
        return 0
    generate(count, path)
    print(f"[gen] wrote {count} events to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
