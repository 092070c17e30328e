"""itk_peer.py: a downstream ITK receiver for test/integration/itk_dest.sh
and itk_letters.sh, and a reader of what it received.

usage: itk_peer.py COMMAND ARGS...   (python3, standard library only)
  serve PORT DIR [CERT KEY CA]  listen on 127.0.0.1:PORT (https with CERT and
                                KEY, a client certificate signed by CA
                                required); each POST is recorded as
                                DIR/req-<n>.xml (the body) and
                                DIR/req-<n>.headers, then answered as the
                                file DIR/mode says at that moment:
                                  ok      200, SimpleMessageResponse OK
                                  fault   500, a SOAP fault (ErrorCode 2010,
                                          "Patient not registered at this
                                          practice")
                                  503     503 Service Unavailable, HTML
                                  nothing no answer; the connection is held
                                          for 30 s, then closed
                                prints "listening" once ready
  show FILE                     the WS-Addressing header of a recorded
                                request, one "Name=value" a line: MessageID,
                                Action, To, From, and SOAPAction from its
                                .headers file
  envelope FILE                 the DistributionEnvelope of a recorded request
                                (or a bare one), one "Name=value" a line:
                                Service, TrackingId, Sender, Address (one
                                line per address), Payloads (their count)
  payload FILE OUT              write the bytes of the first payload of the
                                DistributionEnvelope in FILE to OUT: base64
                                decoded when its manifest item says
                                base64="true", an XML element serialised on
                                its own (ElementTree), else its text
  same-envelope A B             exit 0 when the DistributionEnvelope in A
                                (a SOAP request or a bare envelope) is the
                                same XML as the one in B (canonical form,
                                C14N 2.0), 1 with the difference otherwise
Every socket has a timeout; nothing waits for ever.
"""
import base64
import http.server
import os
import socket
import ssl
import sys
import threading
import uuid
import xml.etree.ElementTree as ET

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
ITK = "urn:nhs-itk:ns:201005"

OK = ('<?xml version="1.0" encoding="UTF-8"?>\n'
      '<soap:Envelope xmlns:soap="%s" xmlns:wsa="%s" xmlns:itk="%s">'
      '<soap:Header><wsa:MessageID>uuid:%s</wsa:MessageID>'
      '<wsa:Action>%sResponse</wsa:Action>%s</soap:Header>'
      '<soap:Body><itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse></soap:Body>'
      '</soap:Envelope>')

FAULT = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         '<soap:Envelope xmlns:soap="%s" xmlns:wsa="%s">'
         '<soap:Header><wsa:MessageID>uuid:%s</wsa:MessageID>'
         '<wsa:Action>http://www.w3.org/2005/08/addressing/soap/fault</wsa:Action>%s'
         '</soap:Header><soap:Body><soap:Fault><faultcode>soap:Client</faultcode>'
         '<faultstring>A client related error has occurred, see detail element for '
         'further information</faultstring><detail>'
         '<itk:ToolkitErrorInfo xmlns:itk="%s"><itk:ErrorID>%s</itk:ErrorID>'
         '<itk:ErrorCode codeSystem="2.16.840.1.113883.2.1.3.2.4.17.268">2010</itk:ErrorCode>'
         '<itk:ErrorText>Patient not registered at this practice</itk:ErrorText>'
         '<itk:ErrorDiagnosticText>NHS number not known here</itk:ErrorDiagnosticText>'
         '</itk:ToolkitErrorInfo></detail></soap:Fault></soap:Body></soap:Envelope>')


def header_of(body):
    """(MessageID, Action, To, From) of a SOAP request's bytes; None each
    when absent or when the body is not XML."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None, None, None, None
    h = root.find("{%s}Header" % SOAP)
    if h is None:
        return None, None, None, None

    def text(path):
        e = h.find(path)
        return e.text if e is not None else None
    return (text("{%s}MessageID" % WSA), text("{%s}Action" % WSA), text("{%s}To" % WSA),
            text("{%s}From/{%s}Address" % (WSA, WSA)))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        srv = self.server
        n = int(self.headers.get("Content-Length", "0") or 0)
        if n > 50 * 1024 * 1024:
            self.send_error(413)
            return
        body = self.rfile.read(n)
        with srv.lock:
            srv.count += 1
            i = srv.count
        base = os.path.join(srv.dir, "req-%d" % i)
        with open(base + ".headers.tmp", "w") as f:
            f.write("Path: %s\n" % self.path)
            for k, v in self.headers.items():
                f.write("%s: %s\n" % (k, v))
        with open(base + ".xml.tmp", "wb") as f:
            f.write(body)
        os.rename(base + ".headers.tmp", base + ".headers")
        os.rename(base + ".xml.tmp", base + ".xml")
        try:
            mode = open(os.path.join(srv.dir, "mode")).read().strip()
        except OSError:
            mode = "ok"
        mid, action, _, _ = header_of(body)
        rel = "<wsa:RelatesTo>%s</wsa:RelatesTo>" % mid if mid else ""
        if mode == "nothing":
            self.close_connection = True
            try:
                self.connection.settimeout(30)
                self.connection.recv(1)   # until the client gives up (or 30 s)
            except OSError:
                pass
            return
        if mode == "fault":
            status, ctype = 500, "text/xml; charset=utf-8"
            out = FAULT % (SOAP, WSA, str(uuid.uuid4()).upper(), rel, ITK,
                           str(uuid.uuid4()).upper())
        elif mode == "503":
            status, ctype = 503, "text/html"
            out = "<html><body>down for maintenance</body></html>"
        else:
            status, ctype = 200, "text/xml; charset=utf-8"
            out = OK % (SOAP, WSA, ITK, str(uuid.uuid4()).upper(), action or "", rel)
        data = out.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def cmd_serve(port, d, cert=None, key=None, ca=None):
    srv = Server(("127.0.0.1", int(port)), Handler)
    srv.dir, srv.count, srv.lock = d, 0, threading.Lock()
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        if ca:
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("listening", flush=True)
    srv.serve_forever()


def cmd_show(fname):
    body = open(fname, "rb").read()
    mid, action, to, frm = header_of(body)
    print("MessageID=%s" % (mid or ""))
    print("Action=%s" % (action or ""))
    print("To=%s" % (to or ""))
    print("From=%s" % (frm or ""))
    hfile = fname[:-len(".xml")] + ".headers" if fname.endswith(".xml") else None
    sa = ""
    if hfile and os.path.exists(hfile):
        for line in open(hfile):
            k, _, v = line.partition(":")
            if k.strip().lower() == "soapaction":
                sa = v.strip()
    print("SOAPAction=%s" % sa)


def envelope(fname):
    root = ET.fromstring(open(fname, "rb").read())
    if root.tag == "{%s}DistributionEnvelope" % ITK:
        return root
    de = root.find("{%s}Body/{%s}DistributionEnvelope" % (SOAP, ITK))
    if de is None:
        raise SystemExit("%s: no DistributionEnvelope" % fname)
    return de


def cmd_envelope(fname):
    de = envelope(fname)
    h = de.find("{%s}header" % ITK)
    h = h if h is not None else ET.Element("none")
    print("Service=%s" % h.get("service", ""))
    print("TrackingId=%s" % h.get("trackingid", ""))
    s = h.find("{%s}senderAddress" % ITK)
    print("Sender=%s" % (s.get("uri", "") if s is not None else ""))
    for a in h.findall("{%s}addresslist/{%s}address" % (ITK, ITK)):
        print("Address=%s" % a.get("uri", ""))
    print("Payloads=%d" % len(de.findall("{%s}payloads/{%s}payload" % (ITK, ITK))))


def cmd_payload(fname, out):
    de = envelope(fname)
    p = de.find("{%s}payloads/{%s}payload" % (ITK, ITK))
    if p is None:
        raise SystemExit("%s: no payload" % fname)
    item = next((m for m in de.iter("{%s}manifestitem" % ITK) if m.get("id") == p.get("id")), None)
    if item is not None and item.get("base64") == "true":
        data = base64.b64decode("".join((p.text or "").split()), validate=True)
    elif len(p):
        data = ET.tostring(p[0])
    else:
        data = (p.text or "").encode()
    with open(out, "wb") as f:
        f.write(data)
    return 0


def canon(e):
    return ET.canonicalize(ET.tostring(e, encoding="unicode"), strip_text=True)


def cmd_same_envelope(a, b):
    ca, cb = canon(envelope(a)), canon(envelope(b))
    if ca == cb:
        return 0
    i = next((k for k in range(min(len(ca), len(cb))) if ca[k] != cb[k]), min(len(ca), len(cb)))
    print("differ at %d:\n  %s\n  %s" % (i, ca[max(0, i - 60):i + 60], cb[max(0, i - 60):i + 60]))
    return 1


def main(argv):
    socket.setdefaulttimeout(30)
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "serve" and len(args) in (2, 4, 5):
        cmd_serve(*args)
        return 0
    if cmd == "show" and len(args) == 1:
        cmd_show(args[0])
        return 0
    if cmd == "envelope" and len(args) == 1:
        cmd_envelope(args[0])
        return 0
    if cmd == "payload" and len(args) == 2:
        return cmd_payload(*args)
    if cmd == "same-envelope" and len(args) == 2:
        return cmd_same_envelope(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
