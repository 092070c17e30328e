"""http_peer.py: HTTP clients for test/integration/http_source.sh where
curl (one well-behaved request at a time) will not do: many concurrent
posts, and clients that go before their answer.

usage: http_peer.py COMMAND ARGS...   (python3, standard library only)
  many PORT PATH FILE N CONC OUT  POST FILE N times from CONC threads (each
                                  connection keep-alive), MSH-10 made unique
                                  ("<id>-<i>"); every answer must be 200 with
                                  an ACK whose MSA-2 is the id sent; writes the
                                  ids acknowledged AA/CA to OUT, prints
                                  "ok=<n> bad=<n>" and the first failures
  vanish PORT PATH FILE N MODE    N clients that go before the answer; MODE:
                                  rst (the whole request, then a reset),
                                  close (the whole request, then close),
                                  partial (headers and half the body, then close)
                                  prints "sent=<n>"
Every socket has a timeout; nothing waits for ever.
"""
import http.client
import socket
import struct
import sys
import threading
import time


def unique(msg, suffix):
    """msg with MSH-10 suffixed: fields split on MSH's own separator."""
    sep = msg[3:4]
    lines = msg.split(b"\r")
    f = lines[0].split(sep)
    f[9] = f[9] + suffix
    lines[0] = sep.join(f)
    return b"\r".join(lines), f[9].decode()


def msa(body):
    for seg in body.replace(b"\n", b"\r").split(b"\r"):
        if seg.startswith(b"MSA"):
            f = seg.split(seg[3:4])
            return f[1].decode(), (f[2].decode() if len(f) > 2 else "")
    return "-", "-"


def cmd_many(port, path, fname, n, conc, out):
    msg = open(fname, "rb").read().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    n, conc = int(n), int(conc)
    lock = threading.Lock()
    acked, bad = [], []
    counter = iter(range(n))

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=20)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, cid = unique(msg, b"-%d" % i)
            try:
                c.request("POST", path, body, {"Content-Type": "application/hl7-v2+er7"})
                r = c.getresponse()
                data = r.read()
                code, ref = msa(data)
                ok = (r.status == 200 and ref == cid and code in ("AA", "CA")
                      and r.getheader("Content-Type") == "application/hl7-v2+er7")
                with lock:
                    (acked if ok else bad).append(cid if ok else "%s status=%d msa=%s %s"
                                                  % (cid, r.status, code, ref))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    bad.append("%s %r" % (cid, e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=20)
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    with open(out, "w") as f:
        for cid in acked:
            f.write(cid + "\n")
    print("ok=%d bad=%d" % (len(acked), len(bad)))
    for b in bad[:5]:
        print("  " + b)
    return 0 if not bad and len(acked) == n else 1


def cmd_vanish(port, path, fname, n, mode):
    msg = open(fname, "rb").read()
    sent = 0
    for i in range(int(n)):
        body, _ = unique(msg.replace(b"\r\n", b"\r").replace(b"\n", b"\r"), b"-v%d" % i)
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/hl7-v2+er7\r\n"
                "Content-Length: %d\r\n\r\n" % (path, len(body))).encode()
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        try:
            if mode == "partial":
                s.sendall(head + body[:len(body) // 2])
            else:
                s.sendall(head + body)
            if mode == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sent += 1
        except OSError:
            pass
        finally:
            s.close()
        if i % 10 == 9:
            time.sleep(0.01)
    print("sent=%d" % sent)
    return 0


def main(argv):
    cmds = {"many": (cmd_many, 6), "vanish": (cmd_vanish, 5)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    return cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
