#!/usr/bin/env python3
"""Captures the raw bytes of an Autobahn run (kosoku) against weft, both roles,
through a recording TCP proxy on loopback, for fuzz/seeds/make_seeds.py.

    python3 fuzz/seeds/capture_autobahn.py OUT_DIR [CASE ...]

server role: kosoku -m fuzzingclient -> proxy -> examples/echo_server
client role: examples/autobahn_client -> proxy -> kosoku -m fuzzingserver

Writes OUT_DIR/{server,client}/NNNN.c2s and NNNN.s2c, one pair per TCP
connection in the order they were accepted (client-to-server and
server-to-client bytes, handshake included). kosoku runs one case at a
time (-p 1), so connection N of the server role is the N-th selected case;
in the client role the case number is in the request line
(/runCase?case=N), and the case id in kosoku's report (reports-server/,
reports-client/ in OUT_DIR). The raw captures are not committed:
`make_seeds.py --from-capture OUT_DIR` trims them into fuzz/seeds/autobahn/
(see fuzz/README.md).

Needs kosoku in .venv (scripts/autobahn.sh installs it) and the two
examples built (cargo build --example echo_server --example autobahn_client).
Every wait is bounded; only 127.0.0.1 is used.
"""
import os, socket, subprocess, sys, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KOSOKU = os.path.join(ROOT, ".venv", "bin", "kosoku")
EXAMPLES = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "examples")

DEFAULT_CASES = [
    "1.1.3", "1.2.4", "2.3", "2.5", "2.10", "3.2", "3.6", "4.1.1", "4.2.1",
    "5.6", "5.9", "5.15", "5.19", "6.2.3", "6.4.1", "6.6.1", "7.1.1", "7.3.2",
    "7.5.1", "7.9.1", "12.1.2", "12.2.3", "12.4.1", "13.1.2", "13.2.1", "13.3.1",
    "13.5.2", "13.7.3",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port} after {timeout}s")


class Proxy(threading.Thread):
    """Accepts on listen_port, connects each connection to upstream_port, and
    records both directions. The probe connection of wait_port (no bytes)
    is not recorded."""

    def __init__(self, listen_port, upstream_port, out):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.upstream = upstream_port
        self.out = out
        self.n = 0
        self.lock = threading.Lock()
        os.makedirs(out, exist_ok=True)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        except OSError:
            c.close()
            return
        bufs = {"c2s": bytearray(), "s2c": bytearray()}

        def pump(src, dst, key):
            try:
                while True:
                    d = src.recv(65536)
                    if not d:
                        break
                    bufs[key] += d
                    dst.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        a = threading.Thread(target=pump, args=(c, u, "c2s"))
        b = threading.Thread(target=pump, args=(u, c, "s2c"))
        a.start(); b.start()
        a.join(60); b.join(60)
        c.close(); u.close()
        if not bufs["c2s"]:
            return  # a port probe
        with self.lock:
            self.n += 1
            n = self.n
        for k, v in bufs.items():
            with open(os.path.join(self.out, f"{n:04d}.{k}"), "wb") as f:
                f.write(v)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    cases = sys.argv[2:] or DEFAULT_CASES
    inc = [a for c in cases for a in ("-i", c)]
    procs = []
    try:
        # Server role.
        srv, prx = free_port(), free_port()
        procs.append(subprocess.Popen([os.path.join(EXAMPLES, "echo_server"), "--addr", f"127.0.0.1:{srv}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(srv)
        Proxy(prx, srv, os.path.join(out, "server")).start()
        subprocess.run([KOSOKU, "-m", "fuzzingclient", f"ws://127.0.0.1:{prx}", "-p", "1", *inc,
                        "-o", os.path.join(out, "reports-server")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        # Client role.
        fz, prx2 = free_port(), free_port()
        procs.append(subprocess.Popen([KOSOKU, "-m", "fuzzingserver", f"127.0.0.1:{fz}", *inc,
                                       "-o", os.path.join(out, "reports-client")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(fz)
        Proxy(prx2, fz, os.path.join(out, "client")).start()
        subprocess.run([os.path.join(EXAMPLES, "autobahn_client"), "--url", f"ws://127.0.0.1:{prx2}",
                        "--agent", "weft"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        procs[-1].wait(timeout=60)
        time.sleep(1)  # the proxy threads write their files
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
    for role in ("server", "client"):
        d = os.path.join(out, role)
        print(role, len(os.listdir(d)) // 2 if os.path.isdir(d) else 0, "connections")


if __name__ == "__main__":
    main()
