#!/bin/sh
# zmq_source.sh: the zmq source (ROUTER and REP sockets) with the real
# hl7brokerd and a real ZeroMQ client ($BUILD/test/zmq_client): good
# samples answered AA/CA once stored and routed to a file destination, bad
# ones AR with the ERR code, a two-frame request and an oversize one
# refused with AR, a frame beyond ZeroMQ's ceiling dropped without harm,
# REQ and pipelining DEALER clients concurrently, SIGHUP, kill -9 and
# SIGTERM during a load: every message answered AA is in the store.
suite=zmq-source
. test/integration/lib/ingest.sh

CLIENT=$BUILD/test/zmq_client
need "$CLIENT"

ports 2
ROUTER=tcp://127.0.0.1:$P1
REP=tcp://127.0.0.1:$P2
data=$tmp/data
out=$tmp/out
cat >"$tmp/broker.conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
sources = (
  { name = "zrouter"; type = "zmq"; endpoint = "$ROUTER"; mode = "router";
    max_message_bytes = 1024; max_inflight = 32; },
  { name = "zrep"; type = "zmq"; endpoint = "$REP"; mode = "rep"; }
);
destinations = ( { name = "files"; type = "file"; directory = "$out"; } );
routes = ( { name = "all"; from = [ "zrouter", "zrep" ]; to = [ "files" ]; } );
EOF
start_daemon "$tmp/broker.conf" "$tmp/log" "$P1" "$P2" || { fail "the broker starts with two zmq sources" "$tmp/log"; exit 1; }
pass "the broker starts with two zmq sources"

# zsend ENDPOINT FILE...: the answer in $tmp/out, exit status in rc
zsend() {
    ep=$1
    shift
    "$CLIENT" send "$ep" 5000 "$@" >"$tmp/ans" 2>&1
    rc=$?
}

# ----------------------------------------------------------- good samples

: >"$tmp/sample_ids"
for f in "$SAMPLES"/*.hl7; do
    name=${f##*/}
    [ "$name" = batch_oru.hl7 ] && continue
    want=AA
    enhanced "$f" && want=CA
    id=$(control_id "$f")
    echo "$id" >>"$tmp/sample_ids"
    for ep in "$ROUTER" "$REP"; do
        mode=router
        [ "$ep" = "$REP" ] && mode=rep
        zsend "$ep" "$f"
        got=$(ack_fields "$tmp/ans")
        if [ $rc -eq 0 ] && [ "$got" = "$want $id" ]; then pass "$mode $name: $want"
        else fail "$mode $name: want '$want $id', got '$got' (exit $rc)" "$tmp/ans"; fi
    done
done

# stored (from both sources) and routed to the file destination
store_check "$data" "$tmp/sample_ids"
ok=$?
for src in zrouter zrep; do
    [ "$(awk -v s=$src '$1 == s' "$tmp/stored" | wc -l)" -eq "$(lines "$tmp/sample_ids")" ] || ok=1
done
[ $ok -eq 0 ]
check "every sample answered is stored once per source ($stored stored, $missing missing, $dups duplicates)" $? "$tmp/stored"

n=0
want_files=$(($(lines "$tmp/sample_ids") * 2))
while [ "$n" -lt 50 ] && [ "$(ls "$out" 2>/dev/null | grep -c '\.hl7$')" -lt "$want_files" ]; do
    sleep 0.1
    n=$((n + 1))
done
ok=0
while read -r id; do
    [ "$(grep -l -w -F "$id" "$out"/*.hl7 2>/dev/null | wc -l)" -eq 2 ] || { ok=1; echo "# $id not delivered twice"; }
done <"$tmp/sample_ids"
[ $ok -eq 0 ]
check "every sample routed to the file destination from both sources" $?

# the peer recorded: the sender's address, and the routing id for ROUTER
mdb_dump -s messages "$data" 2>/dev/null | grep -q "$(printf '127.0.0.1 id=' | od -An -tx1 | tr -d ' \n')"
check "a ROUTER message's peer is \"127.0.0.1 id=<routing id in hex>\"" $?

# ------------------------------------------------------------ bad samples

# bad NAME CODE ERR: both sockets answer CODE with ERR
bad() {
    for ep in "$ROUTER" "$REP"; do
        zsend "$ep" "$SAMPLES/bad/$1"
        got=$(ack_fields "$tmp/ans")
        if [ $rc -eq 0 ] && [ "${got%% *}" = "$2" ] && has_err "$tmp/ans" "$3"; then
            pass "$ep bad/$1: $2 with ERR $3"
        else fail "$ep bad/$1: want $2 with ERR $3, got '$got' (exit $rc)" "$tmp/ans"; fi
    done
}
bad no_msh.hl7 AR 100
bad truncated_msh.hl7 AR 102
bad missing_type.hl7 AR 101
bad unknown_version.hl7 AR 203

zsend "$ROUTER" "$SAMPLES/bad/binary_garbage.hl7"
[ $rc -eq 0 ] && [ "$(ack_fields "$tmp/ans" | cut -d' ' -f1)" = AR ]
check "binary garbage: AR" $? "$tmp/ans"

# -------------------------------------------------- frames and sizes

for ep in "$ROUTER" "$REP"; do
    zsend "$ep" "$SAMPLES/adt_a03.hl7" "$SAMPLES/adt_a01.hl7"
    got=$(ack_fields "$tmp/ans")
    [ $rc -eq 0 ] && [ "$got" = "AR RLH000000187" ] && has_err "$tmp/ans" 207 &&
        grep -q 'came in 2 ZeroMQ frames' "$tmp/ans"
    check "$ep: a request in two frames is refused: AR, ERR 207, the reason" $? "$tmp/ans"
done

# over max_message_bytes (1024) on the router source: AR, never cut
{ cat "$SAMPLES/adt_a01.hl7"; printf 'NTE|1||'; head -c 2500 /dev/zero | tr '\0' x; printf '\r'; } >"$tmp/big.hl7"
zsend "$ROUTER" "$tmp/big.hl7"
got=$(ack_fields "$tmp/ans")
[ $rc -eq 0 ] && [ "$got" = "AR RLH000000123" ] && has_err "$tmp/ans" 207 &&
    grep -q 'max_message_bytes of 1024' "$tmp/ans"
check "a message over max_message_bytes: AR naming the limit" $? "$tmp/ans"
$PEER store-errors "$data" | grep -q '^zrouter AR .*over this source'
check "the oversize refusal is in the error store" $?

# beyond the ceiling (4 x max_message_bytes): ZeroMQ drops the connection
{ cat "$SAMPLES/adt_a01.hl7"; printf 'NTE|1||'; head -c 9000 /dev/zero | tr '\0' x; printf '\r'; } >"$tmp/huge.hl7"
"$CLIENT" send "$ROUTER" 1000 "$tmp/huge.hl7" >"$tmp/ans" 2>&1
r_huge=$?
zsend "$ROUTER" "$SAMPLES/adt_a40_merge.hl7"
[ $r_huge -eq 3 ] && [ $rc -eq 0 ] && ! gone "$dpid" && [ "$(ack_fields "$tmp/ans")" = "CA GSTT-000991" ]
check "beyond 4 x max_message_bytes: no answer, the source takes the next message" $? "$tmp/ans"

# ------------------------------------------------------------ concurrency

: >"$tmp/acked"
"$CLIENT" load "$ROUTER" 8 50 RQ "$tmp/acked" >"$tmp/load1" 2>&1 &
l1=$!
"$CLIENT" load "$ROUTER" 4 30 DL "$tmp/acked" dealer >"$tmp/load2" 2>&1 &
l2=$!
"$CLIENT" load "$REP" 4 20 RP "$tmp/acked" >"$tmp/load3" 2>&1 &
l3=$!
track "$l1"; track "$l2"; track "$l3"
wait_pid "$l1" 40; r1=$rc
wait_pid "$l2" 40; r2=$rc
wait_pid "$l3" 40; r3=$rc
cat "$tmp/load1" "$tmp/load2" "$tmp/load3" >"$tmp/loads"
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ] && [ "$(lines "$tmp/acked")" -eq 600 ]
check "8 REQ clients and 4 pipelining DEALERs on ROUTER, 4 REQ clients on REP at once: 600 AA" $? "$tmp/loads"
store_check "$data" "$tmp/acked"
check "the 600 are stored, none twice ($missing missing, $dups duplicates)" $? "$tmp/missing"

# a DEALER pipelines: many requests of one client in flight at once
grep -q 'RESULT sent=120 acked=120' "$tmp/load2"
check "a DEALER's 30 pipelined requests are all answered, matched by MSA-2" $? "$tmp/load2"

# ------------------------------------------------------ reload, restarts

kill -HUP "$dpid"
wait_for "$tmp/log" 1 'msg="?config (re)?loaded' 10
zsend "$ROUTER" "$SAMPLES/oru_r01.hl7"
[ $rc -eq 0 ] && grep -q '^MSA|' "$tmp/ans" && ! gone "$dpid"
check "SIGHUP: the unchanged sources answer on" $? "$tmp/ans"

# SIGHUP with the router source's settings changed: it restarts on the
# same endpoint and answers
sed 's/max_inflight = 32;/max_inflight = 8;/' "$tmp/broker.conf" >"$tmp/changed.conf"
cp "$tmp/changed.conf" "$tmp/broker.conf"
from=$(($(lines "$tmp/log") + 1))
kill -HUP "$dpid"
wait_for "$tmp/log" "$from" 'source changed: restarting.*source=zrouter' 10 &&
    wait_for "$tmp/log" "$from" 'msg="source started" source=zrouter' 10
zsend "$ROUTER" "$SAMPLES/adt_a03.hl7"
[ $rc -eq 0 ] && [ "$(ack_fields "$tmp/ans")" = "CA RLH000000187" ]
check "SIGHUP with the source changed: restarted on its endpoint, answers" $? "$tmp/log"

# kill -9 in the middle of a load, restart: every AA'd message is stored
: >"$tmp/acked_crash"
"$CLIENT" load "$ROUTER" 8 400 CRASH "$tmp/acked_crash" >"$tmp/load4" 2>&1 &
l4=$!
track "$l4"
sleep 0.3
kill -KILL "$dpid"
wait "$dpid" 2>/dev/null
wait_pid "$l4" 40
echo "# acked before kill -9: $(lines "$tmp/acked_crash")"
start_daemon "$tmp/broker.conf" "$tmp/log2" "$P1" "$P2" || { fail "the broker restarts" "$tmp/log2"; exit 1; }
store_check "$data" "$tmp/acked" "$tmp/acked_crash"
check "kill -9 during a load, restart: every message answered AA is stored ($missing missing, $dups duplicates)" $? "$tmp/missing"

# the same client again: the messages it had no answer for go in now;
# those stored before the kill are duplicates, answered with their ACK
: >"$tmp/acked_again"
"$CLIENT" load "$ROUTER" 8 400 CRASH "$tmp/acked_again" >"$tmp/load5" 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(lines "$tmp/acked_again")" -eq 3200 ]
check "sent again after the restart: all 3200 answered AA (duplicates replayed)" $? "$tmp/load5"
store_check "$data" "$tmp/acked_again"
check "and each stored once ($stored stored, $dups duplicates)" $? "$tmp/dups"

# SIGTERM during a load: exit 0, and what was answered AA is stored
: >"$tmp/acked_term"
"$CLIENT" load "$ROUTER" 8 400 TERM "$tmp/acked_term" >"$tmp/load6" 2>&1 &
l6=$!
track "$l6"
sleep 0.3
stop "$dpid" TERM 15
[ "$rc" -eq 0 ]
check "SIGTERM during a load: exit 0" $? "$tmp/log2"
wait_pid "$l6" 40
store_check "$data" "$tmp/acked_term"
check "SIGTERM: every message answered AA is stored ($(lines "$tmp/acked_term") answered, $missing missing)" $? "$tmp/missing"
