"""peer.py: the odd MLLP peers and store readers the ingest tests need,
where hl7ctl send (a well-behaved client) will not do: raw bytes, slow
senders, frames that never end, a connection held across a reload,
byte-exact replies, and the message store read back with mdb_dump.

usage: peer.py COMMAND ARGS...   (python3, standard library only)
  free-port PORT...               exit 0 when every PORT can be bound on 127.0.0.1
  wait-port PORT SECONDS          exit 0 once 127.0.0.1:PORT accepts a connection
  frame PORT FILE OUT [SECONDS]   send FILE in one frame; write the reply frame's
                                  content, byte for byte, to OUT
  raw PORT FILE SECONDS           send FILE's bytes unframed; report what came back
  garbage PORT NBYTES SECONDS     send NBYTES random bytes (no <VT> in them); report
  endless PORT MAXBYTES SECONDS   send <VT> then bytes with no end until the server
                                  closes, MAXBYTES or SECONDS; report
  slow PORT FILE INTERVAL SECONDS send FILE framed one byte every INTERVAL s;
                                  report whether a reply came or the server closed
  session PORT FILE GOFILE SECONDS
                                  one connection: send FILE, print MSA-1 MSA-2; wait
                                  for GOFILE to exist; send FILE again with MSH-10
                                  suffixed "-2", print MSA-1 MSA-2
  serve PORT MODE                 a misbehaving MLLP server for client tests, one
                                  connection at a time, until killed. MODE: silent
                                  (never replies), huge (a 17 MiB reply), junk (bytes
                                  outside a frame), nocr (<FS> without <CR>), commit
                                  (a commit ACK and no HL7 ACK, then close), ae (AE),
                                  wrongid (AA for another MSA-2), once (AA, then
                                  closes the connection after each message)
  receive PORT LOG [MODE [DIR]]   an MLLP subscriber until killed: each frame's
                                  MSH-10 appended to LOG; with DIR each frame
                                  kept whole as DIR/frame-<n>.hl7 (cmd_receive)
  store-ids DATA_DIR              every stored message as "SOURCE CONTROL_ID
                                  TLS_SUBJECT" (the subject "-" when none)
  store-errors DATA_DIR           every error record as "SOURCE ACK_CODE REASON"
A report is one line: "reply=<bytes> closed=<yes|no> after=<s> sent=<bytes>
msa=<MSA-1 or ->".
"""
import os
import random
import socket
import subprocess
import sys
import time

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_frame(s, deadline):
    """The content of the next reply frame, or None on close/timeout."""
    data = b""
    while True:
        end = data.find(FS + CR)
        start = data.find(VT)
        if start >= 0 and end > start:
            return data[start + 1:end]
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionError):
            return None
        if not chunk:
            return None
        data += chunk


def msa(frame):
    if frame is None:
        return "-"
    for seg in frame.replace(b"\n", b"\r").split(b"\r"):
        if seg.startswith(b"MSA") and len(seg) > 3:
            f = seg.split(seg[3:4])
            return " ".join(x.decode("latin-1") for x in f[1:3])
    return "?"


def watch(s, seconds, started, sent):
    """Read until close or timeout; print the report line."""
    got = b""
    closed = "no"
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionError:
            closed = "yes"
            break
        if not chunk:
            closed = "yes"
            break
        got += chunk
    frame = None
    if VT in got and FS + CR in got:
        frame = got[got.find(VT) + 1:got.find(FS + CR)]
    print("reply=%d closed=%s after=%.1f sent=%d msa=%s"
          % (len(got), closed, time.monotonic() - started, sent, msa(frame).replace(" ", ",")))


def cmd_free_port(ports):
    for p in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", int(p)))
        except OSError:
            return 1
        finally:
            s.close()
    return 0


def cmd_wait_port(port, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            connect(port, 0.5).close()
            return 0
        except OSError:
            time.sleep(0.05)
    return 1


def cmd_frame(port, path, out, seconds="10"):
    data = open(path, "rb").read()
    s = connect(port)
    s.sendall(VT + data + FS + CR)
    frame = read_frame(s, time.monotonic() + float(seconds))
    s.close()
    if frame is None:
        sys.stderr.write("peer: no reply\n")
        return 1
    open(out, "wb").write(frame)
    return 0


def cmd_raw(port, path, seconds):
    data = open(path, "rb").read()
    s = connect(port)
    started = time.monotonic()
    s.sendall(data)
    watch(s, seconds, started, len(data))
    s.close()
    return 0


def cmd_garbage(port, nbytes, seconds):
    rnd = random.Random(int(nbytes))
    data = bytes(b for b in (rnd.randrange(256) for _ in range(int(nbytes) * 2))
                 if b != 0x0b)[:int(nbytes)]
    s = connect(port)
    started = time.monotonic()
    try:
        s.sendall(data)
    except ConnectionError:
        pass
    watch(s, seconds, started, len(data))
    s.close()
    return 0


def cmd_endless(port, maxbytes, seconds):
    s = connect(port)
    started = time.monotonic()
    deadline = started + float(seconds)
    chunk = b"x" * 65536
    sent = 0
    closed = "no"
    try:
        s.sendall(VT)
        s.settimeout(0.5)
        while sent < int(maxbytes) and time.monotonic() < deadline:
            try:
                sent += s.send(chunk)
            except socket.timeout:
                continue
    except ConnectionError:
        closed = "yes"
    if closed == "yes":
        print("reply=0 closed=yes after=%.1f sent=%d msa=-" % (time.monotonic() - started, sent))
    else:
        watch(s, max(0.1, deadline - time.monotonic()), started, sent)
    s.close()
    return 0


def cmd_slow(port, path, interval, seconds):
    data = VT + open(path, "rb").read() + FS + CR
    s = connect(port)
    started = time.monotonic()
    deadline = started + float(seconds)
    sent = 0
    try:
        for b in data:
            if time.monotonic() >= deadline:
                break
            s.send(bytes([b]))
            sent += 1
            # a reply or a close while we dribble ends it
            s.settimeout(float(interval))
            try:
                chunk = s.recv(65536)
                if not chunk:
                    print("reply=0 closed=yes after=%.1f sent=%d msa=-"
                          % (time.monotonic() - started, sent))
                    return 0
                watch_rest = chunk
                print("reply=%d closed=no after=%.1f sent=%d msa=%s"
                      % (len(watch_rest), time.monotonic() - started, sent,
                         msa(watch_rest[1:watch_rest.find(FS)]).replace(" ", ",")))
                return 0
            except socket.timeout:
                pass
    except ConnectionError:
        print("reply=0 closed=yes after=%.1f sent=%d msa=-" % (time.monotonic() - started, sent))
        return 0
    watch(s, 0.1, started, sent)
    return 0


def cmd_session(port, path, gofile, seconds):
    data = open(path, "rb").read()
    s = connect(port)
    s.sendall(VT + data + FS + CR)
    print(msa(read_frame(s, time.monotonic() + 10)), flush=True)
    deadline = time.monotonic() + float(seconds)
    while not os.path.exists(gofile) and time.monotonic() < deadline:
        time.sleep(0.05)
    sep = data[3:4]
    f = data.split(sep, 10)
    f[9] = f[9] + b"-2"
    s.sendall(VT + sep.join(f) + FS + CR)
    print(msa(read_frame(s, time.monotonic() + 10)), flush=True)
    s.close()
    return 0


def ack(frame, code, ctrl=None):
    """A minimal ACK for a received frame (MSH-10 from its header)."""
    f = frame.split(b"\r")[0].split(b"|")
    if ctrl is None:
        ctrl = f[9] if len(f) > 9 else b""
    return (b"MSH|^~\\&|FAKE|TEST|||20260101000000||ACK|F1|P|2.4\rMSA|" + code
            + b"|" + ctrl + b"\r")


def cmd_serve(port, mode):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(16)
    print("listening", flush=True)
    while True:
        s, _ = ls.accept()
        try:
            while True:
                frame = read_frame(s, time.monotonic() + 30)
                if frame is None:
                    break
                if mode == "silent":
                    time.sleep(30)
                elif mode == "huge":
                    s.sendall(VT + b"x" * (17 << 20) + FS + CR)
                elif mode == "junk":
                    s.sendall(b"hello\r\n")
                elif mode == "nocr":
                    s.sendall(VT + ack(frame, b"AA") + FS + b"x")
                elif mode == "commit":
                    s.sendall(VT + b"\x06" + FS + CR)
                    break
                elif mode == "ae":
                    s.sendall(VT + ack(frame, b"AE") + FS + CR)
                elif mode == "wrongid":
                    s.sendall(VT + ack(frame, b"AA", b"OTHER") + FS + CR)
                elif mode == "once":
                    s.sendall(VT + ack(frame, b"AA") + FS + CR)
                    break
        except ConnectionError:
            pass
        finally:
            s.close()


def dump(data_dir, db):
    """The values of one named database, as bytes. mdb_dump's hex form:
    its -p form prints a backslash bare, which makes it ambiguous."""
    out = subprocess.run(["mdb_dump", "-s", db, data_dir], check=True,
                         stdout=subprocess.PIPE).stdout
    rows = []
    in_data = False
    for line in out.split(b"\n"):
        if line == b"HEADER=END":
            in_data = True
        elif line == b"DATA=END":
            break
        elif in_data and line.startswith(b" "):
            rows.append(bytes.fromhex(line[1:].decode()))
    return rows[1::2]


def strings(v, pos, n):
    """n length-prefixed strings from v[pos:]; returns (list, next pos)."""
    out = []
    for _ in range(n):
        ln = int.from_bytes(v[pos:pos + 4], "big")
        out.append(v[pos + 4:pos + 4 + ln].decode("utf-8", "replace"))
        pos += 4 + ln
    return out, pos


def cmd_store_ids(data_dir):
    # format u8, received_ms u64, state u8, then source, peer, tls_subject,
    # kind, code, trigger, structure, control_id, ... (store.h)
    for v in dump(data_dir, "messages"):
        f, _ = strings(v, 10, 11)
        print("%s %s %s" % (f[0], f[7], f[2] or "-"))
    return 0


def cmd_store_errors(data_dir):
    # format u8, received_ms u64, then source, peer, tls_subject, reason, ack_code
    for v in dump(data_dir, "errors"):
        f, _ = strings(v, 9, 5)
        print("%s %s %s" % (f[0], f[4] or "-", f[3].replace("\n", " ")))
    return 0


def cmd_receive(port, logfile, mode="aa", framedir=None):
    """A subscriber: answers each frame and appends its MSH-10 to logfile
    (one per line, as received). Modes: aa (answer AA), drop3 (close the
    connection without an answer on every third frame received, so the
    sender must retry), ae3 (answer AE on every third frame). With
    framedir, each frame answered AA is also written whole, byte for byte,
    to framedir/frame-<n>.hl7 (n from 1, in order)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(16)
    print("listening", flush=True)
    n = kept = 0
    with open(logfile, "ab", buffering=0) as log:
        while True:
            s, _ = ls.accept()
            try:
                while True:
                    frame = read_frame(s, time.monotonic() + 60)
                    if frame is None:
                        break
                    n += 1
                    f = frame.split(b"\r")[0].split(b"|")
                    ctrl = f[9] if len(f) > 9 else b""
                    if mode == "drop3" and n % 3 == 0:
                        break
                    if mode == "ae3" and n % 3 == 0:
                        s.sendall(VT + ack(frame, b"AE") + FS + CR)
                        continue
                    if framedir:
                        kept += 1
                        dst = os.path.join(framedir, "frame-%d.hl7" % kept)
                        with open(dst + ".tmp", "wb") as f:
                            f.write(frame)
                        os.rename(dst + ".tmp", dst)
                    log.write(ctrl + b"\n")
                    s.sendall(VT + ack(frame, b"AA") + FS + CR)
            except ConnectionError:
                pass
            finally:
                s.close()


COMMANDS = {
    "receive": lambda a: cmd_receive(*a),
    "free-port": lambda a: cmd_free_port(a),
    "wait-port": lambda a: cmd_wait_port(*a),
    "frame": lambda a: cmd_frame(*a),
    "raw": lambda a: cmd_raw(*a),
    "garbage": lambda a: cmd_garbage(*a),
    "endless": lambda a: cmd_endless(*a),
    "slow": lambda a: cmd_slow(*a),
    "session": lambda a: cmd_session(*a),
    "serve": lambda a: cmd_serve(*a),
    "store-ids": lambda a: cmd_store_ids(*a),
    "store-errors": lambda a: cmd_store_errors(*a),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        sys.exit(2)
    try:
        sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
    except TypeError as e:
        sys.stderr.write("peer: %s\n%s" % (e, __doc__))
        sys.exit(2)
