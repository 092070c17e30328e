"""python_bench.py: the comparison side of `make bench`. Times python-hl7
(Debian python3-hl7) parsing the same files the C benchmark reads, from
bytes as they arrive, and prints one machine-readable "PY" line per file.

Run with /usr/bin/python3: python3-hl7 is a Debian package.
usage: python_bench.py SECONDS FILE...
"""
import os
import sys
import time

try:
    import hl7
except ImportError:
    sys.stderr.write("python_bench: python3-hl7 is not installed "
                     "(apt-get install python3-hl7)\n")
    sys.exit(1)


def parser_for(data):
    """hl7.parse for a message; a FHS/BHS batch needs the file parser."""
    head = data.lstrip()[:3]
    if head == b"FHS":
        return hl7.parse_file
    if head == b"BHS":
        return hl7.parse_batch
    return hl7.parse


def measure(fn, data, secs):
    """Calls per second of fn(data), run for at least secs."""
    n, batch = 0, 1
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            fn(data)
        n += batch
        el = time.perf_counter() - t0
        if el >= secs:
            return n / el
        if el < secs / 8:
            batch *= 2


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    secs = float(sys.argv[1])
    if hasattr(os, "sched_setaffinity"):
        try:   # one core, as the C side
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        except OSError:
            pass
    print("PY version=%s python=%s" % (
        getattr(hl7, "__version__", "?"), sys.version.split()[0]))
    for path in sys.argv[2:]:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        fn = parser_for(data)
        try:
            fn(data)
        except Exception as e:   # report, keep going: one bad file is a row
            print("PY name=%s bytes=%d error=%s" % (
                name, len(data), type(e).__name__))
            continue
        rate = measure(fn, data, secs)
        print("PY name=%s bytes=%d mbps=%.2f msgs=%.0f" % (
            name, len(data), rate * len(data) / 1e6, rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
