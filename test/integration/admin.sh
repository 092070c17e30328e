#!/bin/sh
# admin.sh: the admin HTTP server against the real daemon: the token file
# checks at start, /healthz, /readyz (200, and 503 with the reason when a
# source is not listening), bearer tokens on /api/v1 (401 without or with
# a wrong one, 200 with the right one, tokens reloaded on SIGHUP), the
# JSON API, and /metrics read by a strict parser (lib/promparse.py; also
# promtool when installed), its figures moving as messages come in and
# the queue depth read from the store across a restart.
# Prints "PASS admin: ..." / "FAIL admin: ...".
suite=admin
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
PROM="$PY test/integration/lib/promparse.py"
TOKEN=0123456789abcdef0123456789abcdef
TOKEN2=ffffeeeeddddccccbbbbaaaa99998888

ports 3
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
tokens=$tmp/admin.token
base="http://127.0.0.1:$P2"

write_admin_conf() {
    cat >"$conf" <<EOF
broker = { data_dir = "$data"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
sources = ( $(mllp_source pas "$P1") $1 );
destinations = (
  { name = "files"; type = "file"; directory = "$tmp/out"; },
  { name = "held"; type = "file"; directory = "$tmp/held"; paused = true; }
);
routes = ( { name = "all"; from = [ "pas" ]; to = [ "files", "held" ]; } );
EOF
}
write_admin_conf ""

# get PATH [TOKEN]: GET, status in $code, body in $tmp/body
get() {
    code=$($HTTP GET "$base$1" "$tmp/body" $2 2>"$tmp/http.err") || code=none
}
# metric NAME [k=v...]: a sample's value from a fresh /metrics
metric() {
    $HTTP GET "$base/metrics" "$tmp/m" >/dev/null 2>&1
    $PROM value "$tmp/m" "$@"
}

# ---------------------------------------------------------- token file checks
printf 'ops %s\n' "$TOKEN" >"$tokens"
chmod 644 "$tokens"
"$BROKERD" -c "$conf" >"$tmp/start.out" 2>&1 &
p=$!
track $p
wait_pid $p 10
if [ "$rc" -eq 1 ] && grep -q "msg=\"cannot start: the admin API did not start\".*$tokens: the token file can be used by its group or other users (mode 0644): make it private with chmod 600" "$tmp/start.out"; then
    pass "a group/world-readable token file: refuses to start, naming the file and the fix"
else fail "a world-readable token file: refused (exit $rc)" "$tmp/start.out"; fi

printf '# tokens\nops %s\nbroken\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"
"$BROKERD" -c "$conf" >"$tmp/start.out" 2>&1 &
p=$!
track $p
wait_pid $p 10
if [ "$rc" -eq 1 ] && grep -q "$tokens:3: no token after the name broken" "$tmp/start.out" &&
   ! grep -q "$TOKEN" "$tmp/start.out"; then
    pass "a malformed token file: refuses to start, naming the line (token not logged)"
else fail "a malformed token file: refused naming the line (exit $rc)" "$tmp/start.out"; fi

printf '# admin tokens\n\nops %s\n' "$TOKEN" >"$tokens"
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts with the admin API" "$log"
    exit 1
fi
grep -q "component=admin msg=listening listen=127.0.0.1:$P2 tls=off tokens=1" "$log"
check "logs the admin listener with its token count" $? "$log"

# ---------------------------------------------------------- health
get /healthz
[ "$code" = 200 ] && [ "$(cat "$tmp/body")" = ok ]
check "/healthz: 200 ok" $? "$tmp/body"
get /readyz
[ "$code" = 200 ] && [ "$(cat "$tmp/body")" = ready ]
check "/readyz: 200 ready (store writable, every source listening)" $? "$tmp/body"

# ---------------------------------------------------------- tokens
get /api/v1/stats
ok=0
[ "$code" = 401 ] && grep -q '^WWW-Authenticate: Bearer realm="hl7broker"$' "$tmp/body.headers" &&
    $PY -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; sys.exit(0 if e["status"]==401 and e["code"]=="unauthorized" else 1)' "$tmp/body" && ok=1
[ $ok -eq 1 ]
check "/api/v1/stats without a token: 401, WWW-Authenticate, JSON error" $? "$tmp/body"
get /api/v1/stats wrong-token-wrong-token-wrong
[ "$code" = 401 ] && grep -q 'error="invalid_token"' "$tmp/body.headers"
check "/api/v1/stats with a wrong token: 401 invalid_token" $? "$tmp/body.headers"
get /api/v1/stats -
[ "$code" = 401 ]
check "/api/v1/stats with Basic credentials: 401" $? "$tmp/body"
grep -q 'component=admin msg="request refused" peer=127.0.0.1:[0-9]* method=GET path=/api/v1/stats reason="wrong bearer token"' "$log"
check "refusals are logged (peer, path, reason)" $? "$log"
[ "$(metric hl7broker_admin_auth_failures_total reason=missing)" = 1 ] &&
    [ "$(metric hl7broker_admin_auth_failures_total reason=invalid)" = 2 ]
check "refusals are counted (missing 1, invalid 2)" $? "$tmp/m"
get /api/v1/stats "$TOKEN"
[ "$code" = 200 ] && $PY -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert [x["name"] for x in s["sources"]] == ["pas"], s["sources"]
assert [x["name"] for x in s["destinations"]] == ["files", "held"]
assert s["store"]["map_bytes"] > 0 and s["process"]["open_fds"] > 0
' "$tmp/body" 2>"$tmp/py.err"
check "/api/v1/stats with the right token: 200 and the figures" $? "$tmp/body"

# ---------------------------------------------------------- the router
get /nowhere "$TOKEN"
[ "$code" = 404 ]
check "an unknown path: 404" $? "$tmp/body"
code=$($HTTP POST "$base/healthz" "$tmp/body" 2>/dev/null)
[ "$code" = 405 ] && grep -q '^Allow: GET$' "$tmp/body.headers"
check "a wrong method: 405 with Allow" $? "$tmp/body.headers"
get "/api/v1/sources?bogus=1" "$TOKEN"
[ "$code" = 400 ] && grep -q 'unknown query parameter bogus' "$tmp/body"
check "an unknown query parameter: 400 naming it" $? "$tmp/body"
get "/api/v1/destinations?limit=0" "$TOKEN"
[ "$code" = 400 ] && grep -q 'limit must be a whole number from 1 to 1000' "$tmp/body"
check "limit=0: 400" $? "$tmp/body"
get "/api/v1/destinations?limit=1&offset=1" "$TOKEN"
[ "$code" = 200 ] && $PY -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert [d["name"] for d in s["destinations"]] == ["held"], s
assert s["paging"] == {"offset": 1, "limit": 1, "total": 2, "next_offset": None}, s["paging"]
' "$tmp/body" 2>"$tmp/py.err"
check "paging: limit=1&offset=1 gives the second destination" $? "$tmp/py.err"
get /api/v1/destinations/no%20such "$TOKEN"
[ "$code" = 404 ] && grep -q 'no destination is named no such' "$tmp/body"
check "/api/v1/destinations/NAME of no destination: 404 (name URL-decoded)" $? "$tmp/body"

# ---------------------------------------------------------- /metrics, strict
get /metrics
cp "$tmp/body" "$tmp/metrics0"
[ "$code" = 200 ] && grep -q '^Content-Type: text/plain; version=0.0.4' "$tmp/body.headers" &&
    $PROM check "$tmp/metrics0" >"$tmp/prom.out" 2>&1
check "/metrics: 0.0.4 text that the strict parser accepts" $? "$tmp/prom.out"
if command -v promtool >/dev/null 2>&1; then
    promtool check metrics <"$tmp/metrics0" >"$tmp/promtool.out" 2>&1
    check "/metrics: promtool check metrics" $? "$tmp/promtool.out"
fi

# ---------------------------------------------------------- figures move
msg=$SAMPLES/adt_a01.hl7
"$LOAD" --port "$P1" --connections 2 --messages 20 --id-prefix ADM --quiet >"$tmp/load" 2>&1
"$HL7CTL" send --port "$P1" --raw "$SAMPLES/bad/no_msh.hl7" >"$tmp/bad.out" 2>&1
"$HL7CTL" send --port "$P1" "$msg" "$msg" >"$tmp/dup.out" 2>&1
n=0
while [ "$n" -lt 100 ] && [ "$(metric hl7broker_destination_delivered_total destination=files)" != 21 ]; do
    sleep 0.1
    n=$((n + 1))
done
get /metrics
cp "$tmp/body" "$tmp/metrics1"
$PROM check "$tmp/metrics1" >"$tmp/prom.out" 2>&1
check "/metrics after traffic: still strictly valid" $? "$tmp/prom.out"
v() { $PROM value "$tmp/metrics1" "$@"; }
ok=1
[ "$(v hl7broker_source_messages_received_total source=pas)" = 23 ] || ok=0
[ "$(v hl7broker_source_messages_accepted_total source=pas)" = 21 ] || ok=0
[ "$(v hl7broker_source_messages_duplicate_total source=pas)" = 1 ] || ok=0
[ "$(v hl7broker_source_messages_refused_total source=pas reason=not_hl7)" = 1 ] || ok=0
[ "$(v hl7broker_ingest_latency_seconds_count source=pas)" = 23 ] || ok=0
[ "$(v hl7broker_source_connections_total source=pas)" -ge 4 ] || ok=0
[ "$(v hl7broker_source_bytes_received_total source=pas)" -gt 1000 ] || ok=0
if [ $ok -eq 1 ]; then pass "source figures: 23 received = 21 accepted + 1 duplicate + 1 refused (not_hl7); 23 latencies"
else fail "source figures after 20 + 1 bad + 2 same" "$tmp/metrics1"; fi
ok=1
[ "$(v hl7broker_destination_delivered_total destination=files)" = 21 ] || ok=0
[ "$(v hl7broker_delivery_latency_seconds_count destination=files)" = 21 ] || ok=0
[ "$(v hl7broker_destination_queue_depth destination=files)" = 0 ] || ok=0
[ "$(v hl7broker_destination_queue_depth destination=held)" = 21 ] || ok=0
[ "$(v hl7broker_destination_paused destination=held)" = 1 ] || ok=0
age=$(v hl7broker_destination_oldest_age_seconds destination=held)
$PY -c "import sys; sys.exit(0 if 0 <= float('$age') < 60 else 1)" || ok=0
[ "$(v hl7broker_ingest_commits_total)" -ge 1 ] || ok=0
[ "$(v hl7broker_store_pages_used)" -gt 0 ] || ok=0
[ "$(v process_open_fds)" -gt 0 ] || ok=0
if [ $ok -eq 1 ]; then pass "destination figures: 21 delivered to files, 21 queued for the paused one, its oldest age, store and process"
else fail "destination figures" "$tmp/metrics1"; fi

# ---------------------------------------------------------- reload: tokens, counters, readiness
printf 'ops2 %s\n' "$TOKEN2" >"$tokens"
# something else holds P3 (for at most 60 s), so the new source cannot listen
$PY -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("listening", flush=True); time.sleep(60)' "$P3" >"$tmp/hold.out" 2>&1 &
hp=$!
track $hp
wait_for "$tmp/hold.out" 1 '^listening' 10
write_admin_conf ", $(mllp_source busy "$P3")"
from=$(($(lines "$log") + 1))
kill -HUP "$dpid"
wait_for "$log" "$from" 'msg="tokens reloaded"' 10
get /api/v1/stats "$TOKEN"
c1=$code
get /api/v1/stats "$TOKEN2"
[ "$c1" = 401 ] && [ "$code" = 200 ]
check "SIGHUP reloads the token file: the old token 401, the new one 200" $? "$log"
[ "$(metric hl7broker_destination_delivered_total destination=files)" = 21 ]
check "delivery counters survive a reload (the engine restarts)" $? "$tmp/m"
get /readyz
[ "$code" = 503 ] && grep -q "not ready: source busy is not listening" "$tmp/body"
check "/readyz: 503 naming the source that is not listening" $? "$tmp/body"
kill "$hp" 2>/dev/null

# ---------------------------------------------------------- restart: the store's figures stay
write_admin_conf ""
stop "$dpid" TERM 10
if start_daemon "$conf" "$log" "$P1" "$P2"; then
    ok=1
    [ "$(metric hl7broker_destination_queue_depth destination=held)" = 21 ] || ok=0
    [ "$(metric hl7broker_destination_delivered_total destination=files)" = 0 ] || ok=0
    $PROM check "$tmp/m" >"$tmp/prom.out" 2>&1 || ok=0
    if [ $ok -eq 1 ]; then pass "after a restart: queue depth from the store (21), counters since start (0)"
    else fail "after a restart: queue depth kept, counters reset" "$tmp/m"; fi
else
    fail "restarts" "$log"
fi
stop "$dpid" TERM 10
check "stops cleanly (exit 0)" "$rc" "$log"

# ---------------------------------------------------------- TLS
sed -i "s|token_file = \"$tokens\";|token_file = \"$tokens\"; tls = { cert = \"conf/tls/example-broker.pem\"; key = \"conf/tls/example-broker.key\"; };|" "$conf"
if start_daemon "$conf" "$log" "$P1" "$P2"; then
    c1=$($HTTP GET "https://127.0.0.1:$P2/healthz" "$tmp/body" 2>/dev/null)
    c2=$($HTTP GET "https://127.0.0.1:$P2/api/v1/stats" "$tmp/body2" "$TOKEN2" 2>/dev/null)
    c3=$($HTTP GET "http://127.0.0.1:$P2/healthz" "$tmp/body3" 2>/dev/null) || c3=none
    [ "$c1" = 200 ] && [ "$c2" = 200 ] && [ "$c3" = none ]
    check "broker.admin.tls: HTTPS answers (200, token checked), plain HTTP gets nothing" $? "$log"
    # hl7ctl over https: verified against the example CA; refused without it
    "$HL7CTL" stats --url "https://127.0.0.1:$P2" --token "$TOKEN2" \
        --ca conf/tls/example-ca.pem >"$tmp/ctl-tls.out" 2>&1
    r1=$?
    "$HL7CTL" stats --url "https://127.0.0.1:$P2" --token "$TOKEN2" >"$tmp/ctl-tls2.out" 2>&1
    r2=$?
    [ "$r1" -eq 0 ] && grep -q "held" "$tmp/ctl-tls.out" && [ "$r2" -ne 0 ]
    check "hl7ctl stats over https: verified with --ca (exit 0), refused without the CA (exit $r2)" $? "$tmp/ctl-tls.out"
    stop "$dpid" TERM 10
else
    fail "starts with broker.admin.tls" "$log"
fi
