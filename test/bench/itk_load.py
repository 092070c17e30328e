#!/usr/bin/env python3
"""itk_load.py: ITK letters POSTed over HTTPS (mutual TLS, keep-alive) by
concurrent senders, each waiting for its answer before the next. Every
letter is the sample with a tracking id of its own, so none is a
duplicate. Prints one RESULT line: letters/s answered OK and the answer
latency p50/p99 in ms.

usage: itk_load.py HOST PORT SAMPLE CA CERT KEY LETTERS SENDERS
"""
import http.client
import ssl
import sys
import threading
import time

host, port, sample, ca, cert, key = sys.argv[1:7]
letters, senders = int(sys.argv[7]), int(sys.argv[8])
body = open(sample, 'rb').read()
TRACKING = b'7D5B2A90-1C44-4F7B-8D3E-222222222222'
assert TRACKING in body

ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.check_hostname = False

lat, bad = [], []
lock = threading.Lock()


def sender(k):
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    mine = []
    for i in range(k, letters, senders):
        tid = b'%08X-0000-4000-8000-%012X' % (k, i)
        req = body.replace(TRACKING, tid)
        t0 = time.monotonic()
        conn.request('POST', '/itk', req, {'Content-Type': 'text/xml; charset=utf-8'})
        r = conn.getresponse()
        answer = r.read()
        mine.append(time.monotonic() - t0)
        if r.status != 200 or b'SimpleMessageResponse' not in answer:
            with lock:
                bad.append((r.status, answer[:200]))
    conn.close()
    with lock:
        lat.extend(mine)


t0 = time.monotonic()
threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.monotonic() - t0
if bad:
    print('itk_load: %d letters not answered OK, first: %r' % (len(bad), bad[0]), file=sys.stderr)
    sys.exit(1)
lat.sort()
print('RESULT letters=%d senders=%d secs=%.2f letters_per_s=%.0f p50_ms=%.2f p99_ms=%.2f' % (
    len(lat), senders, secs, len(lat) / secs, lat[len(lat) // 2] * 1000,
    lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000))
