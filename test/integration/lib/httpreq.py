#!/usr/bin/env python3
"""httpreq.py: one HTTP request for the admin tests, on 127.0.0.1 only.

  httpreq.py METHOD URL BODY_FILE [TOKEN]

Prints the status code on stdout; the body goes to BODY_FILE and the
response headers to BODY_FILE.headers (one "Name: value" per line).
TOKEN, when given, is sent as "Authorization: Bearer TOKEN" (a token of
"-" sends an Authorization header with another scheme). Exit 0 whenever a
response came back (any status), 1 when none did within 10 seconds.
"""
import ssl
import sys
import urllib.error
import urllib.request


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    method, url, out = argv[1], argv[2], argv[3]
    if not url.startswith('http://127.0.0.1:') and not url.startswith('https://127.0.0.1:'):
        sys.stderr.write('httpreq.py: loopback URLs only\n')
        return 2
    req = urllib.request.Request(url, method=method, data=b'' if method in ('POST', 'PUT') else None)
    if len(argv) > 4:
        req.add_header('Authorization', 'Basic dXNlcjpwYXNz' if argv[4] == '-' else 'Bearer ' + argv[4])
    try:
        # https: the test's own self-signed certificate, on loopback only
        ctx = ssl._create_unverified_context() if url.startswith('https:') else None
        resp = urllib.request.urlopen(req, timeout=10, context=ctx)
    except urllib.error.HTTPError as e:
        resp = e
    except Exception as e:   # no response at all
        sys.stderr.write('httpreq.py: %s\n' % e)
        return 1
    body = resp.read()
    with open(out, 'wb') as f:
        f.write(body)
    with open(out + '.headers', 'w') as f:
        for k, v in resp.headers.items():
            f.write('%s: %s\n' % (k, v))
    print(resp.status if hasattr(resp, 'status') else resp.code)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
