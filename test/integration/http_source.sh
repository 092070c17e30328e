#!/bin/sh
# http_source.sh: the http source (HL7 v2 POSTed over HTTP and HTTPS)
# against the real hl7brokerd, with curl and python3's http.client: a good
# message gets 200 and its AA, is stored and routed to a file destination;
# bad ones get 200 and their AR; wrong method, path and content type, and
# an oversize body, are refused with 405, 404, 415 and 413; mutual TLS with
# certificates made here by openssl (allowed subject, wrong subject, none);
# clients that go before their answer; many concurrent posts; a reload
# that removes the source under load; SIGTERM.
# Prints "PASS http-source: ..." / "FAIL http-source: ...".
suite=http-source
. test/integration/lib/ingest.sh

HTTP_PEER="$PY test/integration/lib/http_peer.py"
if ! command -v curl >/dev/null 2>&1; then
    echo "FAIL $suite: curl is not installed (make deps)"
    exit 1
fi

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
       cert good "/O=Barts Health/CN=pas.rlh.example" ca "extendedKeyUsage=clientAuth" &&
       cert wrong "/O=Barts Health/CN=someone.else.example" ca "extendedKeyUsage=clientAuth"
     } >"$tmp/openssl.log" 2>&1; then
    fail "openssl makes the certificates" "$tmp/openssl.log"
    exit 1
fi

ports 3
conf=$tmp/broker.conf
log=$tmp/broker.log
data=$tmp/data
out=$tmp/out
mkdir -p "$out"
sources='{ name = "web"; type = "http"; listen = "127.0.0.1:'$P1'"; path = "/hl7/v2";
      max_message_bytes = 4096; idle_timeout_ms = 5000; },
    { name = "web-tls"; type = "http"; listen = "127.0.0.1:'$P2'";
      tls = { cert = "'$pki/server.crt'"; key = "'$pki/server.key'"; ca = "'$pki/ca.crt'";
              require_client_cert = true;
              allowed_subjects = [ "CN=pas.rlh.example,O=Barts Health" ]; }; },
    { name = "web-few"; type = "http"; listen = "127.0.0.1:'$P3'"; max_connections = 2; }'
cat >"$conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
sources = ( $sources );
destinations = ( { name = "files"; type = "file"; directory = "$out"; } );
routes = ( { name = "all"; from = [ "web", "web-tls" ]; to = [ "files" ]; } );
EOF
if ! start_daemon "$conf" "$log" "$P1" "$P2" "$P3"; then
    fail "hl7brokerd starts with three http sources" "$log"
    exit 1
fi
pass "hl7brokerd starts with three http sources"

url=http://127.0.0.1:$P1/hl7/v2
ER7="Content-Type: application/hl7-v2+er7"
# post NAME FILE URL [CURL ARGS...]: POST FILE; status in $status, headers
# in $tmp/h, body in $tmp/b.
post() {
    name=$1 file=$2 u=$3
    shift 3
    status=$(curl -s -m 10 -o "$tmp/b" -D "$tmp/h" -w '%{http_code}' "$@" \
        --data-binary "@$file" "$u" 2>"$tmp/curl.err")
}
# msa FILE: "MSA-1 MSA-2" of the ACK in FILE (CR separated)
msa() { tr '\r' '\n' <"$1" >"$1.lines"; ack_fields "$1.lines"; }

# --- a good message: 200, AA, stored and routed
good=$SAMPLES/v27_truncation.hl7
id=$(control_id "$good")
post good "$good" "$url" -H "$ER7"
if [ "$status" = 200 ] && [ "$(msa "$tmp/b")" = "AA $id" ] &&
   grep -qi '^content-type: application/hl7-v2+er7' "$tmp/h"; then
    pass "a good message: 200 with AA $id (application/hl7-v2+er7)"
else
    fail "a good message: 200 with AA $id (got $status, $(msa "$tmp/b"))" "$tmp/b"
fi
n=0
while [ $n -lt 50 ] && ! ls "$out" | grep -q -- "-$id.hl7\$"; do sleep 0.1; n=$((n + 1)); done
if $PEER store-ids "$data" | grep -q "^web $id -\$" && ls "$out" | grep -q -- "-$id.hl7\$"; then
    pass "it is stored (source web) and routed to the file destination"
else
    fail "it is stored (source web) and routed to the file destination" "$log"
fi

# enhanced mode: CA; and the lenient content types
post enhanced "$SAMPLES/adt_a01.hl7" "$url" \
    -H "Content-Type: x-application/hl7-v2+er7; charset=UTF-8"
[ "$status" = 200 ] && [ "$(msa "$tmp/b")" = "CA RLH000000123" ]
check "x-application/hl7-v2+er7 with a charset: 200 with CA" $? "$tmp/b"
post textplain "$SAMPLES/adt_a03.hl7" "$url" -H "Content-Type: text/plain; charset=utf-8"
[ "$status" = 200 ] && msa "$tmp/b" | grep -q '^CA '
check "text/plain; charset=utf-8: 200 with CA" $? "$tmp/b"

# --- bad messages: 200 with their AR/AE
for f in missing_type unknown_version no_msh binary_garbage; do
    post bad "$SAMPLES/bad/$f.hl7" "$url" -H "$ER7"
    code=$(msa "$tmp/b" | cut -d' ' -f1)
    case "$status $code" in
    "200 AR" | "200 AE" | "200 CR" | "200 CE") pass "bad/$f.hl7: 200 with $code" ;;
    *) fail "bad/$f.hl7: 200 with AR/AE (got $status, $code)" "$tmp/b" ;;
    esac
done

# --- HTTP-level refusals
post method "$good" "$url" -X PUT -H "$ER7"
[ "$status" = 405 ] && grep -qi '^allow: POST' "$tmp/h"
check "PUT: 405 with Allow: POST" $? "$tmp/h"
status=$(curl -s -m 10 -o "$tmp/b" -D "$tmp/h" -w '%{http_code}' "$url")
[ "$status" = 405 ]
check "GET: 405" $? "$tmp/h"
post path "$good" "http://127.0.0.1:$P1/other" -H "$ER7"
[ "$status" = 404 ] && grep -q '/hl7/v2' "$tmp/b"
check "another path: 404 naming the path" $? "$tmp/b"
post type "$good" "$url" -H "Content-Type: application/json"
[ "$status" = 415 ]
check "Content-Type application/json: 415" $? "$tmp/b"
post notype "$good" "$url" -H "Content-Type:"
[ "$status" = 415 ]
check "no Content-Type: 415" $? "$tmp/b"

# --- oversize: 413, never stored
big=$tmp/big.hl7
{ tr -d '\n' <"$good" | tr -d '\r'; printf '\rNTE|1||'; head -c 6000 /dev/zero | tr '\0' 'x'; printf '\r'; } >"$big"
before=$($PEER store-ids "$data" | wc -l)
post big "$big" "$url" -H "$ER7"
after=$($PEER store-ids "$data" | wc -l)
[ "$status" = 413 ] && [ "$before" = "$after" ]
check "a body over max_message_bytes (6 KiB > 4096): 413, nothing stored" $? "$tmp/b"
post afterbig "$good" "$url" -H "$ER7"
[ "$status" = 200 ]
check "the next request is answered as usual" $? "$tmp/b"

# --- TLS
tls="--cacert $pki/ca.crt"
# shellcheck disable=SC2086
post tls "$SAMPLES/oru_r01.hl7" "https://127.0.0.1:$P2/" -H "$ER7" $tls \
    --cert "$pki/good.crt" --key "$pki/good.key"
tid=$(control_id "$SAMPLES/oru_r01.hl7")
[ "$status" = 200 ] && [ "$(msa "$tmp/b")" = "CA $tid" ] &&
    $PEER store-ids "$data" | grep -q "^web-tls $tid CN=pas.rlh.example,O=Barts Health\$"
check "mutual TLS, allowed subject: 200 with CA, the subject stored" $? "$tmp/curl.err"
# shellcheck disable=SC2086
post tlswrong "$SAMPLES/oru_r01.hl7" "https://127.0.0.1:$P2/" -H "$ER7" $tls \
    --cert "$pki/wrong.crt" --key "$pki/wrong.key"
[ "$status" = 403 ]
check "mutual TLS, a subject not allowed: 403" $? "$tmp/b"
# shellcheck disable=SC2086
post tlsnone "$SAMPLES/oru_r01.hl7" "https://127.0.0.1:$P2/" -H "$ER7" $tls
[ "$status" = 000 ]
check "TLS without a client certificate: the handshake is refused" $? "$tmp/curl.err"
post plain "$SAMPLES/oru_r01.hl7" "http://127.0.0.1:$P2/" -H "$ER7"
[ "$status" = 000 ] || [ "$status" = 400 ]
check "plain HTTP on the TLS port: no answer ($status)" $? "$tmp/curl.err"

# --- max_connections: two idle connections held, a third is closed
$PY - "$P3" >"$tmp/few" 2>&1 <<'EOF'
import socket, sys, time
p = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", p), timeout=5) for _ in range(2)]
time.sleep(0.3)
s = socket.create_connection(("127.0.0.1", p), timeout=5)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
third = s.recv(100)
for h in held: h.close()
time.sleep(0.3)
s = socket.create_connection(("127.0.0.1", p), timeout=5)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
later = s.recv(100)
print("third=%r later=%r" % (third, later[:12]))
sys.exit(0 if third == b"" and later.startswith(b"HTTP/1.1 405") else 1)
EOF
check "max_connections = 2: a third connection is closed; once they go, one is served" $? "$tmp/few"

# --- clients that go before their answer
for mode in rst close partial; do
    $HTTP_PEER vanish "$P1" /hl7/v2 "$good" 100 "$mode" >"$tmp/vanish" 2>&1
    post alive "$SAMPLES/adt_a03.hl7" "$url" -H "$ER7"
    [ "$status" = 200 ] && ! gone "$dpid"
    check "100 clients that go before the answer ($mode): the broker serves on" $? "$tmp/vanish"
done

# --- many concurrent posts
$HTTP_PEER many "$P1" /hl7/v2 "$good" 600 24 "$tmp/acked" >"$tmp/many" 2>&1
rc=$?
check "600 posts from 24 keep-alive connections at once: 200 and AA each ($(head -n1 "$tmp/many"))" $rc "$tmp/many"
if store_check "$data" "$tmp/acked"; then
    pass "every acknowledged message is in the store, none twice"
else
    fail "every acknowledged message is in the store (missing $missing, dups $dups)" "$tmp/missing"
fi

# --- a reload that removes the sources while posts are in flight
$HTTP_PEER many "$P1" /hl7/v2 "$good" 3000 16 "$tmp/acked2" >"$tmp/many2" 2>&1 &
mpid=$!
track $mpid
$HTTP_PEER vanish "$P1" /hl7/v2 "$good" 300 rst >/dev/null 2>&1 &
vpid=$!
track $vpid
sleep 0.5
cat >"$conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
sources = ( { name = "web-tls"; type = "http"; listen = "127.0.0.1:$P2";
      tls = { cert = "$pki/server.crt"; key = "$pki/server.key"; }; } );
EOF
mark=$(lines "$log")
kill -HUP "$dpid"
wait_for "$log" "$mark" 'msg="source removed: stopping" source=web ' 10
wait_pid $mpid 60
wait_pid $vpid 30
sleep 0.3
# shellcheck disable=SC2086
post tls2 "$SAMPLES/oru_r01.hl7" "https://127.0.0.1:$P2/" -H "$ER7" $tls
[ "$status" = 200 ] && ! gone "$dpid"
check "SIGHUP removes a source under load: the broker lives on and serves the others" $? "$log"
if store_check "$data" "$tmp/acked2"; then
    pass "every message acknowledged before the reload is stored"
else
    fail "every message acknowledged before the reload is stored (missing $missing)" "$tmp/missing"
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
