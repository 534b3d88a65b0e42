#!/usr/bin/env python3
"""Compares the rows two engines wrote (JSON-lines files under two directories), row by row.

Usage: compare_rows.py WEIR_DIR FLINK_DIR [--label NAME]
       compare_rows.py --changelog WEIR_PRINT_LOG FLINK_DIR [--label NAME]

Reads every committed file under each directory (files and directories whose name starts
with '.' are in-progress/hidden and skipped), turns each JSON object into a tuple of its
values ordered by field name (Flink writes the sink's column order, Weir sorted names), normalises the values so that both engines' encodings compare equal
(timestamps 'yyyy-MM-dd HH:mm:ss[.fff]' -> epoch ms, numbers -> float), sorts both lists
and compares them position by position: exact for strings, integers and timestamps, 1e-9
relative for doubles. Prints one line

    <name> verify=ok rows=<n>         or
    <name> verify=FAILED weir_rows=<n> flink_rows=<m> mismatches=<k>

followed, on failure, by the first differing rows on stderr. Exit status 0 only when ok.

--changelog compares updating results as their final tables: Weir's rows are the lines its
`print` sink wrote (`+I[v1, v2]`, `-U[…]`, `+U[…]`, `-D[…]`, maybe prefixed `n> `; other lines
of the log are ignored), Flink's the `debezium-json` files of its filesystem sink (`"op": "c"`
adds `after`, `"d"` removes `before`); each changelog is applied to a multiset of rows (a
retraction of a row not there is an error), and the two final tables are compared as above,
by position (both engines keep the sink's column order). Weir's printed values are read back
as numbers where they are numbers (and `<NULL>`/`null` as NULL), so a STRING column holding
digits compares with its number form on both sides alike.
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


PRINT = re.compile(r"^(?:\d+> )?([+-][IUD])\[(.*)\]$")
NUM = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def printed_value(s):
    if s in ("<NULL>", "null"):
        return None
    if s in ("TRUE", "true"):
        return True
    if s in ("FALSE", "false"):
        return False
    if NUM.match(s):
        return float(s)
    return norm(s)


def apply(table, kind, row, where):
    if kind in ("+I", "+U"):
        table[row] = table.get(row, 0) + 1
    elif table.get(row, 0) > 0:
        table[row] -= 1
        if table[row] == 0:
            del table[row]
    else:
        sys.exit(f"{where}: {kind} retracts a row that is not in the table: {row}")


def final_table(table):
    rows = [r for r, n in table.items() for _ in range(n)]
    rows.sort(key=sort_key)
    return rows


def weir_changelog(path):
    table = {}
    with open(path) as f:
        for i, line in enumerate(f, 1):
            m = PRINT.match(line.rstrip("\n"))
            if m:
                vals = m.group(2).split(", ") if m.group(2) else []
                apply(table, m.group(1), tuple(printed_value(v) for v in vals), f"{path}:{i}")
    return final_table(table)


def flink_changelog(d):
    table = {}
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".crc"):
                continue
            with open(os.path.join(root, name)) as f:
                for line in f:
                    if not line.strip():
                        continue
                    rec = json.loads(line)
                    row = rec["after"] if rec["op"] == "c" else rec["before"]
                    vals = tuple(printed_value(str(v)) if isinstance(v, str) else norm(v)
                                 for v in row.values())
                    apply(table, "+I" if rec["op"] == "c" else "-D", vals, name)
    return final_table(table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weir")
    ap.add_argument("flink_dir")
    ap.add_argument("--label", default="rows")
    ap.add_argument("--changelog", action="store_true")
    args = ap.parse_args()
    if args.changelog:
        w, f = weir_changelog(args.weir), flink_changelog(args.flink_dir)
    else:
        w, f = read_rows(args.weir), read_rows(args.flink_dir)
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
