# Unknown flag keys from one SDK key: N OFREP requests for keys that name no flag, then the
# server's memory and the size of /metrics. Usage: python3 bench/edge/unknown_keys.py 100000
# (after cargo build --release -p switchyard). Figures: docs/benchmarks.md.
import http.client, json, os, subprocess, sys, time, tempfile
d = tempfile.mkdtemp()
env = dict(os.environ, SWITCHYARD_ADMIN_TOKEN="flood-admin-token-0123456", SWITCHYARD_LOG="warn")
p = subprocess.Popen([os.environ.get("SWITCHYARD_BIN", "target/release/switchyard"), "serve", "--listen", "127.0.0.1:0", "--db", f"sqlite://{d}/f.db"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
for line in p.stdout:
    if line.startswith(b"listening on"):
        port = int(line.decode().strip().rsplit(":", 1)[1])
        break
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) / 1024
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("POST", "/api/v1/tokens", json.dumps({"name": "f", "role": "sdk", "environment": "production"}), {"Authorization": "Bearer flood-admin-token-0123456"})
key = json.loads(c.getresponse().read())["token"]
before = rss()
n = int(sys.argv[1])
t = time.time()
for i in range(n):
    c.request("POST", f"/ofrep/v1/evaluate/flags/unknown-{i}", '{"context":{"targetingKey":"u"}}', {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 404
el = time.time() - t
after = rss()
t = time.time(); c.request("GET", "/metrics"); m = c.getresponse().read(); mt = time.time() - t
print(f"{n} unknown keys in {el:.1f}s: RSS {before:.1f} -> {after:.1f} MiB; /metrics {len(m)/1024:.1f} KiB in {mt*1000:.1f} ms; evaluation series: {sum(1 for l in m.decode().splitlines() if l.startswith('switchyard_evaluations_total{'))}")
p.kill()
