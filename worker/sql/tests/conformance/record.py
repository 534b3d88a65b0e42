#!/usr/bin/env python3
"""Records Apache Flink 2.3's results for the scalar-expression conformance cases.

Usage: record.py [CASES [EXPECTED]]   (defaults: cases.txt, expected.jsonl beside this script)
Run with the Flink venv bench/setup.sh installs (`make sql-conformance-record` does both):
    ~/.cache/weir/flink-venv/bin/python worker/sql/tests/conformance/record.py

For every case of CASES (format described at its top) this writes one JSON line to EXPECTED:
    {"expr": ..., "input": ..., "type": "INT NOT NULL", "value": "42"}
`value` is Flink's `CAST(expr AS STRING)` (null for NULL), `type` the expression's type as
Flink's planner resolves it. A case Flink refuses to plan has {"error": "plan", "message": ...};
one whose job fails at runtime {"error": "runtime", "message": ...}.

Cost: one JVM, one planning per case (cheap), and one job per distinct input schema that runs
every case of that schema together (a CASE over the row's id picks each case's expression,
and Flink's CASE evaluates only the branch it picks). A job that fails is re-run case by case
to tell which case raised the error. The input rows are read from JSON files by the
filesystem connector, so nothing is folded into constants at planning time that a streaming
job would compute per row.

Re-recording is a deliberate step (it needs Flink and takes a few minutes), not part of CI.
"""
import json
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_cases(path):
    """[(expr, input_text, [(name, type, literal)])] in file order."""
    cases = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("["):
                continue
            if ";;" not in line:
                raise SystemExit(f"{path}:{no}: no ';;' between expression and input: {line}")
            expr, inp = (p.strip() for p in line.split(";;", 1))
            cases.append((expr, inp, parse_columns(inp, f"{path}:{no}")))
    return cases


def parse_columns(text, where):
    """`a INT = 1, s STRING = 'x, y'` -> [(name, type, literal)]."""
    cols, i, n = [], 0, len(text)

    def skip_ws():
        nonlocal i
        while i < n and text[i].isspace():
            i += 1

    while True:
        skip_ws()
        if i >= n:
            return cols
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
        if not m:
            raise SystemExit(f"{where}: expected a column name at {text[i:]!r}")
        name = m.group(0)
        i += len(name)
        skip_ws()
        start, depth = i, 0
        while i < n and (depth > 0 or text[i] != "="):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        ty = text[start:i].strip()
        if i >= n:
            raise SystemExit(f"{where}: expected '= literal' after {name} {ty}")
        i += 1
        skip_ws()
        start = i
        if text.startswith("TIMESTAMP", i):
            i += len("TIMESTAMP")
            skip_ws()
        if i < n and text[i] == "'":
            i += 1
            while i < n:
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        else:
            while i < n and text[i] != ",":
                i += 1
        lit = text[start:i].strip()
        cols.append((name, ty, lit))
        skip_ws()
        if i < n:
            if text[i] != ",":
                raise SystemExit(f"{where}: expected ',' after {lit} at {text[i:]!r}")
            i += 1


def literal_to_json(lit):
    """The JSON value Flink's json format reads as the literal's value."""
    if lit.upper() == "NULL":
        return None
    if lit.upper() in ("TRUE", "FALSE"):
        return lit.upper() == "TRUE"
    if lit.startswith("TIMESTAMP"):
        lit = lit[len("TIMESTAMP"):].strip()
    if lit.startswith("'"):
        return lit[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", lit):
        return int(lit)
    # Keep the literal's digits: a DECIMAL column reads them exactly.
    return json.loads(lit) if re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", lit) else lit


def raw_json_number(lit):
    return re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", lit) is not None


def row_json(case_id, cols):
    parts = [f'"id": {case_id}']
    for name, _, lit in cols:
        if raw_json_number(lit):
            parts.append(f'"{name}": {lit}')  # the literal's own digits
        else:
            parts.append(f'"{name}": {json.dumps(literal_to_json(lit), ensure_ascii=False)}')
    return "{" + ", ".join(parts) + "}"


def java_message(e):
    """The innermost cause's message of a Py4J/PyFlink exception, on one line."""
    text = str(e)
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    msg = causes[-1] if causes else text.strip().split("\n")[0]
    return msg.strip()[:300]


def make_env():
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", "UTC")
    return t_env


def main():
    cases_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "cases.txt")
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "expected.jsonl")
    cases = parse_cases(cases_path)
    t_env = make_env()
    tmp = tempfile.mkdtemp(prefix="weir-conformance-")

    # One table per distinct schema, one row per case.
    schemas = {}
    for idx, (_, _, cols) in enumerate(cases):
        key = tuple((name, ty) for name, ty, _ in cols)
        schemas.setdefault(key, []).append(idx)
    table_of = {}
    for t, (key, idxs) in enumerate(schemas.items()):
        table = f"in{t}"
        path = os.path.join(tmp, table)
        os.makedirs(path)
        with open(os.path.join(path, "rows.json"), "w", encoding="utf-8") as f:
            for idx in idxs:
                f.write(row_json(idx, cases[idx][2]) + "\n")
        columns = ", ".join(["id INT"] + [f"`{n}` {ty}" for n, ty in key])
        t_env.execute_sql(
            f"CREATE TEMPORARY TABLE {table} ({columns}) WITH ('connector' = 'filesystem', "
            f"'path' = '{path}', 'format' = 'json')"
        )
        for idx in idxs:
            table_of[idx] = table

    results = [None] * len(cases)
    runnable = {}
    for idx, (expr, _, _) in enumerate(cases):
        try:
            t = t_env.sql_query(f"SELECT ({expr}) AS v FROM {table_of[idx]}")
            ty = t._j_table.getResolvedSchema().getColumns().get(0).getDataType().toString()
            # The text as Flink casts it to STRING, which is how it prints it too.
            t_env.sql_query(f"SELECT CAST(({expr}) AS STRING) FROM {table_of[idx]}")
            results[idx] = {"type": ty}
            runnable.setdefault(table_of[idx], []).append(idx)
        except Exception as e:  # noqa: BLE001 - Py4J raises a generic wrapper
            results[idx] = {"error": "plan", "message": java_message(e)}

    def run(table, idxs):
        branches = " ".join(
            f"WHEN {i} THEN CAST(({cases[i][0]}) AS STRING)" for i in idxs
        )
        ids = ", ".join(str(i) for i in idxs)
        q = f"SELECT id, CASE id {branches} END FROM {table} WHERE id IN ({ids})"
        got = {}
        with t_env.sql_query(q).execute().collect() as rows:
            for r in rows:
                got[r[0]] = r[1]
        return got

    def run_bisecting(table, idxs):
        """Runs idxs together; when the job fails, halves them to find the failing cases."""
        try:
            return run(table, idxs)
        except Exception as e:  # noqa: BLE001
            if len(idxs) == 1:
                results[idxs[0]] = {"error": "runtime", "message": java_message(e)}
                return {}
            half = len(idxs) // 2
            got = run_bisecting(table, idxs[:half])
            got.update(run_bisecting(table, idxs[half:]))
            return got

    for table, idxs in runnable.items():
        got = run_bisecting(table, idxs)
        for i in idxs:
            if "error" not in results[i]:
                results[i]["value"] = got.get(i)
        print(f"[record] {table}: {len(idxs)} cases", file=sys.stderr, flush=True)

    with open(out_path, "w", encoding="utf-8") as f:
        for (expr, inp, _), r in zip(cases, results):
            f.write(json.dumps({"expr": expr, "input": inp, **r}, ensure_ascii=False) + "\n")
    errors = sum(1 for r in results if "error" in r)
    print(f"[record] {len(cases)} cases ({errors} errors) -> {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
