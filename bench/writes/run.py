#!/usr/bin/env python3
"""Write cost against store size: median and p99 of one flag change (a rollout over HTTP,
acknowledged) with N flags stored, for N in 12, 1 000, 5 000, 10 000, on SQLite (the default)
and optionally PostgreSQL.

Usage: bench/writes/run.py [--postgres URL] [--writes 200]
Needs target/release/switchyard (cargo build --release -p switchyard).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time, urllib.request

ADMIN = "write-bench-admin-token-0123"

def flags_file(path, n):
    with open(path, "w") as f:
        f.write("flags:\n")
        for i in range(n):
            if i % 3 == 0:
                f.write(f"  - key: flag-{i}\n")
            elif i % 3 == 1:
                f.write(f"  - key: flag-{i}\n    fallthrough: {{percentage: 12.5, variant: \"on\"}}\n")
            else:
                f.write(f"  - key: flag-{i}\n    rules:\n      - conditions: [{{attribute: plan, operator: in, value: [a, b]}}]\n        variant: \"on\"\n")

def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                                 headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.status, json.loads(r.read() or b"null")

def measure(db, n, writes, work):
    path = os.path.join(work, f"flags-{n}.yaml")
    flags_file(path, n)
    env = dict(os.environ, SWITCHYARD_ADMIN_TOKEN=ADMIN, SWITCHYARD_SEED_EXAMPLES="false", SWITCHYARD_LOG="warn")
    p = subprocess.Popen(["target/release/switchyard", "serve", "--listen", "127.0.0.1:0", "--db", db, "--import", path],
                         env=env, stdout=subprocess.PIPE, text=True)
    try:
        for line in p.stdout:
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
        target = f"{url}/api/v1/flags/flag-{n // 2}/environments/production/rollout"
        times = []
        for i in range(writes):
            t = time.perf_counter()
            status, _ = call("PUT", target, json.dumps({"percentage": 1 + i % 99}))
            times.append((time.perf_counter() - t) * 1000)
            assert status == 200
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.99) - 1]
    finally:
        p.terminate()
        p.wait()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres")
    ap.add_argument("--writes", type=int, default=200)
    args = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(__file__), "..", ".."))
    with tempfile.TemporaryDirectory() as work:
        for n in (12, 1000, 5000, 10000):
            med, p99 = measure(f"sqlite://{work}/db-{n}.sqlite", n, args.writes, work)
            print(f"SQLite      {n:>6} flags: median {med:6.2f} ms, p99 {p99:6.2f} ms per acknowledged write")
            if args.postgres:
                schema = f"sy_writes_{os.getpid()}_{n}"
                subprocess.run(["psql", args.postgres, "-q", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                               check=True, env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))
                sep = "&" if "?" in args.postgres else "?"
                med, p99 = measure(f"{args.postgres}{sep}options=-c%20search_path%3D{schema}", n, args.writes, work)
                print(f"PostgreSQL  {n:>6} flags: median {med:6.2f} ms, p99 {p99:6.2f} ms per acknowledged write")
                subprocess.run(["psql", args.postgres, "-q", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                               check=True, env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))

if __name__ == "__main__":
    main()
