#!/usr/bin/env python3
"""W7-style durability measurement for one durable Muster server on loopback.

Loads N KV keys (256-byte values, through /v1/txn, 64 operations each) and M service
instances (through /v1/catalog/register, 10 per node), then measures:
  - the size of the data dir (raft log + snapshots);
  - `muster snapshot save` time and file size;
  - restart-to-serving: kill -9, start again on the same data dir, time until a GET of a
    known key answers 200 with the right value (polled every millisecond), median of runs;
  - restore speed: `PUT /v1/snapshot` of the saved file into a fresh server (MB/s).

Usage:
  python3 perf/restart.py --bin target/release/muster [--keys 100000] [--instances 50000]
                          [--runs 3] [--cpu 1]
Only loopback traffic; service addresses (10.x) are data, never contacted.
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PORT_BASE = 19500


def ports(slot):
    b = PORT_BASE + slot * 10
    return {"http": b, "dns": b + 1, "lan": b + 2, "wan": b + 3, "server": b + 4}


def start(bin_path, data_dir, slot, cpu, extra=()):
    p = ports(slot)
    args = [
        bin_path, "agent", "-server", "-bootstrap", "-data-dir", data_dir, "-node", f"perf{slot}",
        "-bind", "127.0.0.1", "-client", "127.0.0.1", "-http-port", str(p["http"]),
        "-dns-port", str(p["dns"]), "-serf-lan-port", str(p["lan"]), "-serf-wan-port",
        str(p["wan"]), "-server-port", str(p["server"]), "-log-level", "info", *extra,
    ]
    if cpu is not None:
        args = ["taskset", "-c", str(cpu)] + args
    log = open(os.path.join(os.path.dirname(data_dir), f"agent-{slot}.log"), "ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def conn(slot):
    return http.client.HTTPConnection("127.0.0.1", ports(slot)["http"], timeout=60)


def request(c, method, path, body=None):
    c.request(method, path, body=body)
    r = c.getresponse()
    return r.status, r.read()


def wait_serving(slot, key, value, limit=60.0):
    """Seconds until the server serves: GET /v1/kv/<key>?raw answers `value` and a new write
    is acknowledged (which needs a leader and the whole committed log applied)."""
    t0 = time.perf_counter()
    read_ok = False
    while time.perf_counter() - t0 < limit:
        try:
            c = conn(slot)
            if not read_ok:
                st, body = request(c, "GET", f"/v1/kv/{key}?raw")
                read_ok = st == 200 and body == value
            if read_ok:
                st, body = request(c, "PUT", "/v1/kv/perf/probe", b"x")
                if st == 200 and body == b"true":
                    c.close()
                    return time.perf_counter() - t0
            c.close()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"server {slot} not serving {key} after {limit}s")


def newest_snapshot_index(data):
    d = os.path.join(data, "snapshots")
    names = sorted(n for n in os.listdir(d) if n.endswith(".snap")) if os.path.isdir(d) else []
    return int(names[-1].split("-")[0]) if names else 0


def value_for(i):
    return (f"value-{i:08d}-" * 20)[:256].encode()


def load_kv(slot, n, threads=4):
    def worker(first, last):
        c = conn(slot)
        for start_i in range(first, last, 64):
            ops = [
                {"KV": {"Verb": "set", "Key": f"perf/k{i:07d}",
                        "Value": base64.b64encode(value_for(i)).decode()}}
                for i in range(start_i, min(start_i + 64, last))
            ]
            st, body = request(c, "PUT", "/v1/txn", json.dumps(ops))
            if st != 200:
                raise RuntimeError(f"txn failed: {st} {body[:200]}")
        c.close()

    run_split(worker, n, threads)


def load_catalog(slot, n, threads=4):
    def worker(first, last):
        c = conn(slot)
        for i in range(first, last):
            node = f"node-{i // 10:05d}"
            reg = {
                "Node": node,
                "Address": f"10.{(i // 10) // 65536 % 256}.{(i // 10) // 256 % 256}.{(i // 10) % 256}",
                "Service": {"ID": f"svc-{i % 1000}-{i}", "Service": f"svc-{i % 1000}",
                            "Port": 8000 + i % 1000, "Tags": ["v1", "perf"]},
                "Check": {"CheckID": f"check-{i}", "Name": "ttl", "Status": "passing",
                          "ServiceID": f"svc-{i % 1000}-{i}"},
            }
            st, body = request(c, "PUT", "/v1/catalog/register", json.dumps(reg))
            if st != 200:
                raise RuntimeError(f"register failed: {st} {body[:200]}")
        c.close()

    run_split(worker, n, threads)


def run_split(worker, n, threads):
    step = (n + threads - 1) // threads
    errors = []

    def wrap(a, b):
        try:
            worker(a, b)
        except Exception as e:  # surfaced after join
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i * step, min(n, (i + 1) * step)))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def grep_log(path, needle):
    with open(path, "rb") as f:
        return [l.decode(errors="replace").rstrip() for l in f if needle.encode() in l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--instances", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    ap.add_argument("--snapshot-interval", default="5s",
                    help="raft_snapshot_interval for the run (Consul's default is 30s)")
    a = ap.parse_args()

    root = tempfile.mkdtemp(prefix="muster-restart-")
    data = os.path.join(root, "data")
    os.makedirs(data)
    procs = []
    try:
        extra = ["-hcl", f'raft_snapshot_interval = "{a.snapshot_interval}"']
        p = start(a.bin, data, 0, a.cpu, extra)
        procs.append(p)
        wait_serving_leader(0)
        t0 = time.perf_counter()
        load_kv(0, a.keys)
        t_kv = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_catalog(0, a.instances)
        t_cat = time.perf_counter() - t0
        print(f"loaded {a.keys} keys in {t_kv:.1f} s, {a.instances} instances in {t_cat:.1f} s")

        snap = os.path.join(root, "saved.snap")
        t0 = time.perf_counter()
        subprocess.run([a.bin, "snapshot", "save", f"-http-addr=127.0.0.1:{ports(0)['http']}", snap],
                       check=True, stdout=subprocess.DEVNULL)
        t_save = time.perf_counter() - t0
        print(f"snapshot save: {t_save * 1e3:.0f} ms, {os.path.getsize(snap) / 2**20:.1f} MiB")

        last_key = f"perf/k{a.keys - 1:07d}"
        # First restart: no snapshot on disk yet, the whole log is replayed.
        if newest_snapshot_index(data) == 0:
            p.send_signal(signal.SIGKILL)
            p.wait()
            print(f"data dir before any snapshot: {du(data) / 2**20:.1f} MiB")
            p = start(a.bin, data, 0, a.cpu, extra)
            procs.append(p)
            waited = wait_serving(0, last_key, value_for(a.keys - 1))
            print(f"restart replaying the whole log (no snapshot): serving after {waited * 1e3:.0f} ms")
        # Then wait for a snapshot covering the load, so restarts read it and a short tail.
        t0 = time.perf_counter()
        while newest_snapshot_index(data) == 0 and time.perf_counter() - t0 < 120:
            time.sleep(0.2)
        print(f"snapshot on disk at index {newest_snapshot_index(data)}")
        times = []
        for run in range(a.runs):
            p.send_signal(signal.SIGKILL)
            p.wait()
            print(f"data dir: {du(data) / 2**20:.1f} MiB "
                  f"(raft {du(os.path.join(data, 'raft')) / 2**20:.1f}, "
                  f"snapshots {du(os.path.join(data, 'snapshots')) / 2**20:.1f})")
            p = start(a.bin, data, 0, a.cpu, extra)
            procs.append(p)
            waited = wait_serving(0, last_key, value_for(a.keys - 1))
            times.append(waited)
            print(f"restart {run + 1}: serving after {waited * 1e3:.0f} ms")
        print(f"restart-to-serving median {statistics.median(times) * 1e3:.0f} ms over {len(times)} runs")
        for l in grep_log(os.path.join(root, "agent-0.log"), "loaded snapshot")[-1:]:
            print("  " + l)
        for l in grep_log(os.path.join(root, "agent-0.log"), "raft ready")[-1:]:
            print("  " + l)

        # Restore into a fresh server.
        data2 = os.path.join(root, "data2")
        os.makedirs(data2)
        q = start(a.bin, data2, 1, a.cpu)
        procs.append(q)
        wait_serving_leader(1)
        with open(snap, "rb") as f:
            blob = f.read()
        c2 = conn(1)
        t0 = time.perf_counter()
        st, body = request(c2, "PUT", "/v1/snapshot", blob)
        t_restore = time.perf_counter() - t0
        if st != 200:
            raise RuntimeError(f"restore failed: {st} {body[:200]}")
        wait_serving(1, last_key, value_for(a.keys - 1))
        mb = len(blob) / 2**20
        print(f"restore: {mb:.1f} MiB in {t_restore * 1e3:.0f} ms = {mb / t_restore:.0f} MiB/s")
        for l in grep_log(os.path.join(root, "agent-1.log"), "snapshot restored")[-1:]:
            print("  " + l)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("kept", root)


def wait_serving_leader(slot, limit=30.0):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        try:
            c = conn(slot)
            st, body = request(c, "GET", "/v1/status/leader")
            c.close()
            if st == 200 and body not in (b'""', b""):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no leader")


if __name__ == "__main__":
    sys.exit(main())
