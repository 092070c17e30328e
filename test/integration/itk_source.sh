#!/bin/sh
# itk_source.sh: the itk source (ITK 2 SOAP requests over HTTPS) against
# the real hl7brokerd, with curl and certificates made here by openssl:
# the discharge summary sample is answered SimpleMessageResponse OK after
# its commit, stored as kind itk (searchable by NHS number and tracking
# id) and routed to a file destination; sent again it is answered the same
# and not stored twice; the manifest mismatch sample gets a SOAP fault
# naming it and lands in the error store; XML attacks (entity expansion,
# external entity, a 50 MB body, 100,000-deep nesting) get faults and the
# broker serves on; content types, path, method; mutual TLS (allowed
# subject, another, none); clients that go before their answer; the
# infrastructure acknowledgement routed by itk.service; SIGTERM.
# Prints "PASS itk-source: ..." / "FAIL itk-source: ...".
suite=itk-source
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
TOKEN=0123456789abcdef0123456789abcdef
if ! command -v curl >/dev/null 2>&1; then
    echo "FAIL $suite: curl is not installed (make deps)"
    exit 1
fi
ITK=$SAMPLES/itk
GOOD=$ITK/discharge_summary_soap.xml
BAD=$ITK/bad_manifest_mismatch.xml
TRACK=7D5B2A90-1C44-4F7B-8D3E-222222222222
INFACK_SERVICE=urn:nhs-itk:services:201005:SendInfrastructureAck-v1-0

pki=$tmp/pki
mkdir -p "$pki"
ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/$1.key" -out "$pki/$1.crt" -days 2 -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
cert() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" &&
    printf 'basicConstraints=CA:FALSE\n%s\n' "$4" >"$pki/$1.ext" &&
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$3.crt" -CAkey "$pki/$3.key" \
        -CAcreateserial -out "$pki/$1.crt" -days 2 -extfile "$pki/$1.ext"
}
if ! { ca ca "/CN=hl7broker test CA" &&
       cert server "/CN=localhost" ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth" &&
       cert good "/O=Barts Health/CN=epr.barts.example" ca "extendedKeyUsage=clientAuth" &&
       cert wrong "/O=Barts Health/CN=someone.else.example" ca "extendedKeyUsage=clientAuth"
     } >"$tmp/openssl.log" 2>&1; then
    fail "openssl makes the certificates" "$tmp/openssl.log"
    exit 1
fi

ports 2
conf=$tmp/broker.conf
log=$tmp/broker.log
data=$tmp/data
letters=$tmp/letters
acks=$tmp/acks
tokens=$tmp/admin.token
mkdir -p "$letters" "$acks"
printf '# admin tokens\nops-alice %s\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"
SUBJECT="CN=epr.barts.example,O=Barts Health"

# write_conf EXTRA_ROUTES: one itk source under mutual TLS, letters to a
# file destination
write_conf() {
    cat >"$conf" <<EOF
broker = { data_dir = "$data"; ods_code = "X26"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
sources = (
  { name = "itk"; type = "itk"; listen = "127.0.0.1:$P1"; path = "/itk";
    max_message_bytes = 1048576; idle_timeout_ms = 10000;
    allow = [ "127.0.0.0/8" ];
    tls = { cert = "$pki/server.crt"; key = "$pki/server.key"; ca = "$pki/ca.crt";
            require_client_cert = true; allowed_subjects = [ "$SUBJECT" ]; }; } );
destinations = (
  { name = "letters"; type = "file"; directory = "$letters"; },
  { name = "acks"; type = "file"; directory = "$acks"; } );
routes = ( { name = "letters"; from = [ "itk" ]; to = [ "letters" ]; } $1 );
EOF
}
write_conf ""
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts with an itk source under mutual TLS" "$log"
    exit 1
fi
pass "hl7brokerd starts with an itk source under mutual TLS"

url=https://127.0.0.1:$P1/itk
XML="Content-Type: text/xml; charset=utf-8"
ACTION="SOAPAction: urn:nhs-itk:services:201005:SendCDADocument-v2-0"
CLIENT="--cacert $pki/ca.crt --cert $pki/good.crt --key $pki/good.key"
# post FILE URL [CURL ARGS...]: POST FILE as the allowed client; status
# in $status, headers in $tmp/h, body in $tmp/b.
post() {
    file=$1 u=$2
    shift 2
    # shellcheck disable=SC2086
    status=$(curl -s -m 60 -o "$tmp/b" -D "$tmp/h" -w '%{http_code}' $CLIENT "$@" \
        --data-binary "@$file" "$u" 2>"$tmp/curl.err")
}
# api PATH: GET from the admin API; status in $code, body in $tmp/api
api() { code=$($HTTP GET "http://127.0.0.1:$P2$1" "$tmp/api" "$TOKEN" 2>"$tmp/http.err") || code=none; }
js() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/api" "$1" 2>>"$tmp/py.err"; }
# with_track FILE ID: the good sample with another tracking id
with_track() { sed "s/trackingid=\"$TRACK\"/trackingid=\"$2\"/" "$GOOD" >"$1"; }
stored() { $PEER store-ids "$data" | grep -c " $1 " || true; }
errors() { $PEER store-errors "$data" | wc -l | tr -d ' '; }
is_ok() { grep -q 'SimpleMessageResponse' "$tmp/b" && grep -q '>OK<' "$tmp/b"; }
is_fault() { grep -q 'Fault' "$tmp/b" && grep -q "$1" "$tmp/b"; }
soap_type() { grep -qi '^content-type: text/xml; charset=utf-8' "$tmp/h"; }
alive() { ! gone "$dpid"; }

# --- the good sample: 200 OK after its commit, stored, searchable, routed
post "$GOOD" "$url" -H "$XML" -H "$ACTION"
n_now=$(stored "$TRACK")
[ "$status" = 200 ] && is_ok && soap_type
check "the discharge summary: 200 SimpleMessageResponse OK (text/xml; charset=utf-8)" $? "$tmp/b"
cp "$tmp/b" "$tmp/first_answer"
[ "$n_now" = 1 ]
check "it is in the store when the answer comes (answered after the commit)" $? "$log"
$PEER store-ids "$data" | grep -q "^itk $TRACK $SUBJECT\$"
check "stored from source itk, control id = tracking id, the client subject kept" $? "$log"
export HL7BROKER_URL="http://127.0.0.1:$P2" HL7BROKER_TOKEN="$TOKEN"
api "/api/v1/messages?control_id=$TRACK"
[ "$code" = 200 ] && js 'j["total"] == 1 and j["items"][0]["source"] == "itk" and j["items"][0]["nhs_number"] == "9990000018"'
check "the admin API finds it by tracking id, with NHS number 9990000018" $? "$tmp/api"
msg_id=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["id"])' "$tmp/api" 2>/dev/null)
api "/api/v1/messages?nhs_number=9990000018"
[ "$code" = 200 ] && js 'any(x["control_id"] == "'"$TRACK"'" for x in j["items"])'
check "the admin API finds it by NHS number" $? "$tmp/api"
api "/api/v1/messages/${msg_id:-0}"
[ "$code" = 200 ] && js 'j["kind"] == "itk" and j["itk"]["tracking_id"] == "7D5B2A90-1C44-4F7B-8D3E-222222222222" and "DistributionEnvelope" in json.dumps(j)'
check "shown whole (the envelope kept), kind itk" $? "$tmp/api"
"$HL7CTL" search --nhs 9990000018 >"$tmp/ctl.out" 2>&1 && grep -q "$TRACK" "$tmp/ctl.out"
check "hl7ctl search --nhs 9990000018 lists it" $? "$tmp/ctl.out"
n=0
while [ $n -lt 50 ] && ! grep -lq "$TRACK" "$letters"/* 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
f=$(grep -l "$TRACK" "$letters"/* 2>/dev/null | head -n 1)
[ -n "$f" ] && grep -q 'DistributionEnvelope' "$f" && grep -q '9990000018' "$f"
check "routed: the envelope is written whole by the file destination" $? "$log"

# --- the same request again: the same answer, stored once
post "$GOOD" "$url" -H "$XML" -H "$ACTION"
[ "$status" = 200 ] && is_ok && [ "$(stored "$TRACK")" = 1 ]
check "the same request again: 200 OK again, not stored twice" $? "$tmp/b"

# --- the lenient content types
with_track "$tmp/t1.xml" 7D5B2A90-1C44-4F7B-8D3E-2222222222A1
post "$tmp/t1.xml" "$url" -H "Content-Type: text/xml"
[ "$status" = 200 ] && is_ok
check "text/xml without a charset: 200 OK" $? "$tmp/b"
with_track "$tmp/t2.xml" 7D5B2A90-1C44-4F7B-8D3E-2222222222A2
post "$tmp/t2.xml" "$url" -H 'Content-Type: application/soap+xml; charset=UTF-8; action="x"'
[ "$status" = 200 ] && is_ok
check "application/soap+xml with parameters: 200 OK" $? "$tmp/b"

# --- the manifest mismatch: 500 with a fault naming it, in the error store
e0=$(errors)
post "$BAD" "$url" -H "$XML"
[ "$status" = 500 ] && grep -q 'Fault' "$tmp/b" && grep -Eiq 'manifest|payload' "$tmp/b" && soap_type
check "the manifest/payload mismatch: 500 SOAP fault naming it" $? "$tmp/b"
[ "$(errors)" -gt "$e0" ] && $PEER store-errors "$data" | grep -q '^itk ' &&
    [ "$(stored 7D5B2A90-1C44-4F7B-8D3E-666666666666)" = 0 ]
check "it is in the error store, not the message store" $? "$log"

# --- XML attacks: a fault each, nothing stored, the broker serves on
n0=$($PEER store-ids "$data" | wc -l)
cat >"$tmp/lol.xml" <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&lol9;</soap:Body></soap:Envelope>
EOF
post "$tmp/lol.xml" "$url" -H "$XML"
[ "$status" = 500 ] && is_fault 1002 && alive
check "billion laughs (entity expansion): 500 fault 1002, the broker serves on" $? "$tmp/b"
cat >"$tmp/xxe.xml" <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE soap:Envelope [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x>&xxe;</x></soap:Body></soap:Envelope>
EOF
post "$tmp/xxe.xml" "$url" -H "$XML"
[ "$status" = 500 ] && grep -q 'Fault' "$tmp/b" && ! grep -q 'root:' "$tmp/b" && alive
check "external entity (file:///etc/passwd): 500 fault, nothing of the file in it" $? "$tmp/b"
$PY - "$tmp/deep.xml" <<'EOF'
import sys
n = 100000
with open(sys.argv[1], "w") as f:
    f.write('<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>')
    f.write("<a>" * n + "</a>" * n)
    f.write("</soap:Body></soap:Envelope>")
EOF
post "$tmp/deep.xml" "$url" -H "$XML"
[ "$status" = 500 ] && is_fault 1003 && alive
check "100,000-deep nesting: 500 fault 1003, the broker serves on" $? "$tmp/b"
$PY - "$tmp/big.xml" "$GOOD" <<'EOF'
import sys
good = open(sys.argv[2], "rb").read()
cut = good.index(b"<itk:payloads")
with open(sys.argv[1], "wb") as f:
    f.write(good[:cut] + b"<!-- ")
    chunk = b"x" * (1 << 20)
    for _ in range(50):
        f.write(chunk)
    f.write(b" -->" + good[cut:])
EOF
e0=$(errors)
post "$tmp/big.xml" "$url" -H "$XML"
[ "$status" = 500 ] && is_fault 1001 && grep -q 'max_message_bytes' "$tmp/b"
check "a 50 MB body (over max_message_bytes 1 MiB): 500 fault 1001" $? "$tmp/b"
[ "$(errors)" -gt "$e0" ] && [ "$($PEER store-ids "$data" | wc -l)" = "$n0" ] && alive
check "nothing of the attacks is stored (the 50 MB body in the error store, cut)" $? "$log"
post "$tmp/t1.xml" "$url" -H "$XML"
[ "$status" = 200 ] && is_ok
check "the next request is answered as usual" $? "$tmp/b"

# --- HTTP-level refusals
post "$GOOD" "$url" -H "Content-Type: application/json"
[ "$status" = 415 ] && grep -q 'Fault' "$tmp/b" && soap_type
check "Content-Type application/json: 415 with a SOAP fault" $? "$tmp/b"
post "$GOOD" "$url" -H "Content-Type:"
[ "$status" = 415 ] && grep -q 'Fault' "$tmp/b"
check "no Content-Type: 415 with a SOAP fault" $? "$tmp/b"
post "$GOOD" "https://127.0.0.1:$P1/other" -H "$XML"
[ "$status" = 404 ] && grep -q '/itk' "$tmp/b"
check "another path: 404 naming the path" $? "$tmp/b"
post "$GOOD" "$url" -X PUT -H "$XML"
[ "$status" = 405 ] && grep -qi '^allow: POST' "$tmp/h"
check "PUT: 405 with Allow: POST" $? "$tmp/h"

# --- mutual TLS
status=$(curl -s -m 10 -o "$tmp/b" -w '%{http_code}' --cacert "$pki/ca.crt" \
    --cert "$pki/wrong.crt" --key "$pki/wrong.key" -H "$XML" --data-binary "@$GOOD" "$url" 2>"$tmp/curl.err")
[ "$status" = 403 ]
check "a client certificate whose subject is not allowed: 403" $? "$tmp/b"
status=$(curl -s -m 10 -o "$tmp/b" -w '%{http_code}' --cacert "$pki/ca.crt" \
    -H "$XML" --data-binary "@$GOOD" "$url" 2>"$tmp/curl.err")
[ "$status" = 000 ]
check "no client certificate: the handshake is refused" $? "$tmp/curl.err"
status=$(curl -s -m 10 -o "$tmp/b" -w '%{http_code}' -H "$XML" --data-binary "@$GOOD" \
    "http://127.0.0.1:$P1/itk" 2>"$tmp/curl.err")
[ "$status" = 000 ] || [ "$status" = 400 ]
check "plain HTTP on the TLS port: no answer ($status)" $? "$tmp/curl.err"

# --- clients that go before their answer (TLS, 60 of them, three ways)
$PY - "$P1" "$GOOD" "$pki" >"$tmp/vanish" 2>&1 <<'EOF'
import socket, ssl, struct, sys, time
port, good, pki = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
ctx.load_cert_chain(pki + "/good.crt", pki + "/good.key")
sent = 0
for i in range(60):
    body = good.replace(b"8D3E-222222222222", b"8D3E-%012X" % (0xB00000 + i))
    head = (b"POST /itk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        mode = i % 3
        s.sendall(head + (body[: len(body) // 2] if mode == 2 else body))
        if mode == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sent += 1
        s.close()
    except OSError as e:
        print("error", e)
    finally:
        raw.close()
print("sent=%d" % sent)
EOF
sleep 0.5
post "$tmp/t2.xml" "$url" -H "$XML"
[ "$status" = 200 ] && is_ok && alive && grep -q 'sent=60' "$tmp/vanish"
check "60 TLS clients that go before their answer (reset, close, half a body): the broker serves on" $? "$tmp/vanish"

# --- the infrastructure acknowledgement, routed by itk.service
# NEEDS the itk.* metadata paths in route filters (the lead's routing
# work): without them the reload below is refused and this case fails.
before_acks=$(ls "$acks" | wc -l)
write_conf ", { name = \"infacks\"; from = [ \"itk\" ]; when = \"itk.service = '$INFACK_SERVICE'\"; to = [ \"acks\" ]; }"
mark=$(lines "$log")
kill -HUP "$dpid"
if wait_for "$log" "$mark" 'msg="config reloaded"|reload refused' 10 &&
   tail -n "+$mark" "$log" | grep -q 'msg="config reloaded"'; then
    pass "reload with a route when itk.service = the infrastructure ack service"
    with_track "$tmp/t3.xml" 7D5B2A90-1C44-4F7B-8D3E-2222222222A3
    post "$tmp/t3.xml" "$url" -H "$XML"
    n=0
    while [ $n -lt 50 ] && ! grep -lq 'InfrastructureResponse' "$acks"/* 2>/dev/null; do
        sleep 0.1; n=$((n + 1))
    done
    f=$(grep -l '2222222222A3' "$acks"/* 2>/dev/null | head -n 1)
    [ "$status" = 200 ] && [ -n "$f" ] && grep -q 'InfrastructureResponse' "$f" &&
        grep -q 'X26' "$f" && [ "$(ls "$acks" | wc -l)" -gt "$before_acks" ]
    check "infackrequested: an InfrastructureResponse (reported by X26, about the request) is stored and routed" $? "$log"
    [ -z "$(grep -L 'InfrastructureResponse' "$acks"/* 2>/dev/null)" ]
    check "only infrastructure acks reach the acks destination (the letters do not)" $? "$log"
else
    fail "reload with a route when itk.service = ... (NEEDS the itk.* route paths from main)" "$log"
fi

# --- SIGTERM
stop "$dpid" TERM 15
[ "$rc" -eq 0 ]
check "SIGTERM: exit 0" $? "$log"
if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error' "$log"; then
    fail "no sanitizer report" "$log"
elif [ "$sanitized" -eq 1 ]; then
    pass "no sanitizer report"
fi
