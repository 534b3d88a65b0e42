#!/usr/bin/env python3
"""Compares the rows two engines wrote (JSON-lines files under two directories), row by row.

Usage: compare_rows.py WEIR_DIR FLINK_DIR [--label NAME]

Reads every committed file under each directory (files and directories whose name starts
with '.' are in-progress/hidden and skipped), turns each JSON object into a tuple of its
values ordered by field name (Flink writes the sink's column order, Weir sorted names), normalises the values so that both engines' encodings compare equal
(timestamps 'yyyy-MM-dd HH:mm:ss[.fff]' -> epoch ms, numbers -> float), sorts both lists
and compares them position by position: exact for strings, integers and timestamps, 1e-9
relative for doubles. Prints one line

    <name> verify=ok rows=<n>         or
    <name> verify=FAILED weir_rows=<n> flink_rows=<m> mismatches=<k>

followed, on failure, by the first differing rows on stderr. Exit status 0 only when ok.
"""
import argparse
import datetime as dt
import json
import math
import os
import re
import sys

TS = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d{1,9})?)?Z?$")


def norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and TS.match(v):
        t = dt.datetime.fromisoformat(v.rstrip("Z").replace(" ", "T"))
        return ("ts", round(t.replace(tzinfo=dt.timezone.utc).timestamp() * 1000))
    return v


def sort_key(row):
    # Doubles rounded to 9 significant digits, so two engines' last-bit differences sort alike.
    return tuple((0, f"{x:.9g}") if isinstance(x, float) else (1, repr(x)) for x in row)


def read_rows(d):
    rows = []
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".crc"):
                continue
            with open(os.path.join(root, name)) as f:
                for line in f:
                    if line.strip():
                        rows.append(tuple(norm(v) for _, v in sorted(json.loads(line).items())))
    rows.sort(key=sort_key)
    return rows


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)):
                return False
        elif x != y:
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weir_dir")
    ap.add_argument("flink_dir")
    ap.add_argument("--label", default="rows")
    args = ap.parse_args()
    w, f = read_rows(args.weir_dir), read_rows(args.flink_dir)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(w, f)) if not same(a, b)]
    if len(w) == len(f) and not bad:
        print(f"{args.label} verify=ok rows={len(w)}")
        return 0
    print(f"{args.label} verify=FAILED weir_rows={len(w)} flink_rows={len(f)} "
          f"mismatches={len(bad)}")
    for i, a, b in bad[:5]:
        print(f"  row {i}: weir={a} flink={b}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
