#!/bin/sh
# ingest_tls.sh: MLLP over TLS against the real hl7brokerd, with
# certificates made here by openssl (a throwaway CA, a server certificate
# for 127.0.0.1 and localhost, client certificates with the allowed subject,
# a wrong subject, and from another CA). A plain TCP client on a TLS port,
# a client without a certificate where one is required, a wrong subject
# and a foreign CA are refused; the right client gets its ACK, and the
# store records its certificate subject.
# Prints "PASS ingest-tls: ..." / "FAIL ingest-tls: ...".
suite=ingest-tls
. test/integration/lib/ingest.sh

pki=$tmp/pki
mkdir -p "$pki"
# cert NAME SUBJECT ISSUER EXT: an EC key and a certificate signed by
# ISSUER (a CA made with "ca"), with extensions EXT.
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
if { ca ca "/CN=hl7broker test CA" &&
     ca rogue-ca "/CN=rogue CA" &&
     cert server "/CN=localhost" ca \
        "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth" &&
     cert good "/O=Barts Health/CN=pas.rlh.example" ca "extendedKeyUsage=clientAuth" &&
     cert wrong "/O=Barts Health/CN=someone.else.example" ca "extendedKeyUsage=clientAuth" &&
     cert rogue "/O=Barts Health/CN=pas.rlh.example" rogue-ca "extendedKeyUsage=clientAuth"
   } >"$tmp/openssl.log" 2>&1; then
    pass "openssl makes a CA, a server certificate and three client certificates"
else
    fail "openssl makes the certificates" "$tmp/openssl.log"
    exit 1
fi

ports 2
conf=$tmp/broker.conf
log=$tmp/broker.log
data=$tmp/data
mutual="tls = { cert = \"$pki/server.crt\"; key = \"$pki/server.key\"; ca = \"$pki/ca.crt\";
                require_client_cert = true;
                allowed_subjects = [ \"CN=pas.rlh.example,O=Barts Health\" ]; };"
server_only="tls = { cert = \"$pki/server.crt\"; key = \"$pki/server.key\"; };"
write_conf "$conf" "$data" "$(mllp_source tls-mutual "$P1" "$mutual"),
    $(mllp_source tls-server "$P2" "$server_only")"
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts with two TLS sources" "$log"
    exit 1
fi
pass "hl7brokerd starts with two TLS sources"

msg=$SAMPLES/adt_a01.hl7
good="--tls --ca $pki/ca.crt --cert $pki/good.crt --key $pki/good.key"

# send NAME WANT_EXIT ARGS...: hl7ctl send -q with ARGS; its exit status
# must be WANT_EXIT (0 accepted, 3 no ACK).
send() {
    name=$1 want=$2
    shift 2
    "$HL7CTL" send -q --timeout-ms 5000 "$@" >"$tmp/out" 2>&1
    got=$?
    if [ $got -eq "$want" ]; then pass "$name"
    else fail "$name (exit $got, want $want)" "$tmp/out"; fi
}

# shellcheck disable=SC2086
send "mutual TLS, allowed subject: CA" 0 $good --port "$P1" "$msg"
grep -q '^CA RLH000000123$' "$tmp/out" || fail "mutual TLS: the ACK is CA RLH000000123" "$tmp/out"
# shellcheck disable=SC2086
send "mutual TLS, server verified by name (localhost): accepted" 0 $good \
    --server-name localhost --port "$P1" "$SAMPLES/adt_a03.hl7"

send "plain TCP on a TLS port: refused, no ACK" 3 --port "$P1" "$msg"
send "mutual TLS without a client certificate: refused" 3 \
    --tls --ca "$pki/ca.crt" --port "$P1" "$msg"
send "mutual TLS, a subject not in allowed_subjects: refused" 3 \
    --tls --ca "$pki/ca.crt" --cert "$pki/wrong.crt" --key "$pki/wrong.key" --port "$P1" "$msg"
send "mutual TLS, the right subject from another CA: refused" 3 \
    --tls --ca "$pki/ca.crt" --cert "$pki/rogue.crt" --key "$pki/rogue.key" --port "$P1" "$msg"
send "the client refuses a server its CA did not sign" 3 \
    --tls --ca "$pki/rogue-ca.crt" --cert "$pki/good.crt" --key "$pki/good.key" --port "$P1" "$msg"
# shellcheck disable=SC2086
send "the client refuses a server certificate for another name" 3 $good \
    --server-name hie.example --port "$P1" "$msg"

send "server-only TLS: a client without a certificate gets CA" 0 \
    --tls --ca "$pki/ca.crt" --port "$P2" "$SAMPLES/oru_r01.hl7"
send "server-only TLS: plain TCP refused" 3 --port "$P2" "$msg"

# Many TLS connections at once, each message acknowledged.
# shellcheck disable=SC2086
"$LOAD" $good --port "$P1" --connections 8 --messages 400 --id-prefix T >"$tmp/load" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(result "$tmp/load" accepted)" = 400 ]; then
    pass "8 mutual-TLS connections, 400 messages: all accepted ($(result "$tmp/load" msgs_per_s) msg/s)"
else fail "8 mutual-TLS connections, 400 messages (exit $rc)" "$tmp/load"; fi

if ! gone "$dpid"; then pass "the daemon is still up"
else fail "the daemon is still up" "$log"; fi
stop "$dpid" TERM 10

# The store keeps who sent each message: the client certificate subject.
$PEER store-ids "$data" >"$tmp/stored" 2>&1
if grep -q '^tls-mutual RLH000000123 CN=pas.rlh.example,O=Barts Health$' "$tmp/stored" &&
   grep -q '^tls-server UCLH-LAB-55501 -$' "$tmp/stored" &&
   [ "$(grep -c '^tls-mutual RLH000000123 ' "$tmp/stored")" -eq 1 ]; then
    pass "the store records the client certificate subject (and none for server-only TLS)"
else fail "the store records the client certificate subject" "$tmp/stored"; fi
