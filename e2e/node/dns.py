#!/usr/bin/env python3
"""The real node's cluster DNS: answers Service names from the API server, forwards the rest.

CoreDNS is not packaged in Debian, so this small server stands in for it (standard library
only). It owns the `<cluster domain>` zone as the kubelet's `clusterDNS` and serves what pods
on a Kubernetes cluster rely on:

- `<svc>.<ns>.svc.<domain>` A: the Service's ClusterIP; for a headless Service (clusterIP
  None) the ready addresses of its Endpoints;
- `<hostname>.<svc>.<ns>.svc.<domain>` A: an endpoint's address when it has a hostname
  (StatefulSet pods under their governing Service);
- any other name in the zone: NXDOMAIN (so the search-path expansions of `ndots:5` fail fast),
  and a known name asked for another type (AAAA): an empty answer.

Other names are relayed to the host's first nameserver. Services and Endpoints are re-read
from the API server every second (client certificate authentication), so a new Service
resolves within about a second. UDP only: the answers here are small.

    dns.py --listen 10.88.0.1:53 --api https://127.0.0.1:6443 --ca ca.crt --cert c.crt --key c.key
"""

import argparse
import ipaddress
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.request

TTL = 5
TYPE_A = 1
CLASS_IN = 1


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Records:
    """Name → IPv4 addresses for the zone, replaced whole on each refresh."""

    def __init__(self, args):
        self.domain = args.domain.strip(".").lower()
        self.api = args.api.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=args.ca)
        self.ctx.load_cert_chain(args.cert, args.key)
        self.names = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def get(self, path):
        with urllib.request.urlopen(self.api + path, context=self.ctx, timeout=10) as r:
            return json.load(r)

    def refresh(self):
        names = {}
        services = self.get("/api/v1/services")["items"]
        endpoints = {
            (e["metadata"]["namespace"], e["metadata"]["name"]): e
            for e in self.get("/api/v1/endpoints")["items"]
        }
        for svc in services:
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            fqdn = f"{name}.{ns}.svc.{self.domain}"
            cluster_ip = svc["spec"].get("clusterIP")
            subsets = endpoints.get((ns, name), {}).get("subsets") or []
            ready = [a for s in subsets for a in s.get("addresses") or []]
            if cluster_ip and cluster_ip != "None":
                names[fqdn] = [cluster_ip]
            else:
                names[fqdn] = sorted({a["ip"] for a in ready})
            for a in ready:
                if a.get("hostname"):
                    names.setdefault(f"{a['hostname']}.{fqdn}", []).append(a["ip"])
        with self.lock:
            self.names = names
        self.ready.set()

    def run(self, interval):
        failing = False
        while True:
            try:
                self.refresh()
                if failing:
                    log("API server reachable again")
                failing = False
            except Exception as e:  # keep serving the last good records
                if not failing:
                    log(f"reading Services/Endpoints from {self.api} failed: {e}")
                failing = True
            time.sleep(interval)

    def lookup(self, name):
        """(in_zone, addresses or None when the name does not exist)."""
        name = name.rstrip(".").lower()
        if name != self.domain and not name.endswith("." + self.domain):
            return False, None
        with self.lock:
            if name in self.names:
                return True, self.names[name]
            # A name that only exists as a parent of others (e.g. `ns.svc.cluster.local`) has no
            # records but is not NXDOMAIN.
            suffix = "." + name
            if name == self.domain or any(n.endswith(suffix) for n in self.names):
                return True, []
        return True, None


def parse_question(data):
    """(qname, qtype, end offset of the question) of a query with one question."""
    if len(data) < 12:
        raise ValueError("short packet")
    qdcount = struct.unpack("!H", data[4:6])[0]
    if qdcount != 1:
        raise ValueError(f"{qdcount} questions")
    labels, i = [], 12
    while True:
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(data[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, _qclass = struct.unpack("!HH", data[i : i + 4])
    return ".".join(labels), qtype, i + 4


def answer(query, end, rcode, addresses):
    flags_in = struct.unpack("!H", query[2:4])[0]
    # QR, the query's opcode and RD, AA (we own the zone), RA, and the response code.
    flags = 0x8000 | (flags_in & 0x7900) | 0x0400 | 0x0080 | rcode
    header = query[:2] + struct.pack("!HHHHH", flags, 1, len(addresses), 0, 0)
    body = query[12:end]
    for ip in addresses:
        body += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
        body += ipaddress.IPv4Address(ip).packed
    return header + body


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        server = self.server
        try:
            name, qtype, end = parse_question(data)
        except (ValueError, IndexError, struct.error):
            return  # not a query we can answer; a resolver retries or gives up
        in_zone, addrs = server.records.lookup(name)
        if in_zone:
            if addrs is None:
                reply = answer(data, end, 3, [])  # NXDOMAIN
            else:
                reply = answer(data, end, 0, addrs if qtype == TYPE_A else [])
            sock.sendto(reply, self.client_address)
            return
        if server.upstream is None:
            sock.sendto(answer(data, end, 2, []), self.client_address)  # SERVFAIL
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(3)
            try:
                up.sendto(data, (server.upstream, 53))
                reply, _ = up.recvfrom(65535)
            except OSError:
                reply = answer(data, end, 2, [])
        sock.sendto(reply, self.client_address)


def host_upstream(listen_ip):
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] != listen_ip:
                    if ipaddress.ip_address(parts[1]).version == 4:
                        return parts[1]
    except OSError:
        pass
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="IP:PORT")
    p.add_argument("--api", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)

    records = Records(args)
    threading.Thread(target=records.run, args=(args.interval,), daemon=True).start()
    records.ready.wait(30)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    server = socketserver.ThreadingUDPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.records = records
    server.upstream = host_upstream(host)
    log(f"serving {records.domain} on {host}:{port} from {records.api}; upstream {server.upstream}")
    server.serve_forever()


if __name__ == "__main__":
    main()
