#!/bin/sh
# delivery.sh: messages in over MLLP, routed, and delivered to an MLLP
# subscriber (test/integration/lib/peer.py receive) and a file
# destination: in order, across a subscriber that drops connections or
# answers AE, across its absence, and across kill -9 of the broker (every
# accepted message delivered at least once, in order, nothing lost); the
# file destination never shows a partial file.
suite=delivery
. test/integration/lib/ingest.sh

ports 2
data=$tmp/data
out=$tmp/out
cat >"$tmp/broker.conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
sources = ( $(mllp_source pas "$P1") );
destinations = (
  { name = "hie"; type = "mllp"; connect = "127.0.0.1:$P2"; ack_timeout_ms = 2000;
    retry = { initial_ms = 20; max_ms = 200; max_attempts = 0; }; },
  { name = "files"; type = "file"; directory = "$out"; }
);
routes = ( { name = "all"; from = [ "pas" ]; to = [ "hie", "files" ]; } );
EOF

# receive MODE: the subscriber on P2 (pid in $rpid), logging to $tmp/received
receive() {
    : >"$tmp/recv.out"
    $PEER receive "$P2" "$tmp/received" "$1" >"$tmp/recv.out" 2>&1 &
    rpid=$!
    track $rpid
    wait_for "$tmp/recv.out" 1 '^listening' 10
}

# send N PREFIX: N messages on one connection, in order; the ids acked go
# to $tmp/acked (appended)
send() {
    "$LOAD" --port "$P1" --connections 1 --messages "$1" --id-prefix "$2" \
        --acked-file "$tmp/acked.part" --quiet >"$tmp/load" 2>&1
    cat "$tmp/acked.part" >>"$tmp/acked"
}

# delivered_in_order: every acked id reached the subscriber, the first
# arrivals in the order they were accepted (repeats allowed: at least once).
# A message committed but killed before its ACK went out is delivered too
# (the sender, having no ACK, would send it again); such ids are not in
# $tmp/acked and are left out of the comparison.
delivered_in_order() {
    awk '!seen[$0]++' "$tmp/received" |
        awk 'NR == FNR { acked[$0] = 1; next } $0 in acked' "$tmp/acked" - >"$tmp/first"
    cmp -s "$tmp/first" "$tmp/acked"
}

# wait_delivered SECONDS: until every acked id reached the subscriber
wait_delivered() {
    n=0
    while [ "$n" -lt $(($1 * 10)) ]; do
        [ "$(awk 'NR == FNR { acked[$0] = 1; next } ($0 in acked) && !seen[$0]++' "$tmp/acked" "$tmp/received" | wc -l)" -ge "$(lines "$tmp/acked")" ] && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

: >"$tmp/acked"
: >"$tmp/received"
receive aa
start_daemon "$tmp/broker.conf" "$tmp/log" "$P1" || { fail "the broker did not start" "$tmp/log"; exit 1; }

send 40 A
wait_delivered 10 && delivered_in_order
check "40 messages delivered to the MLLP subscriber in the order accepted" $? "$tmp/received"

n=0
while [ "$n" -lt 50 ] && [ "$(ls "$out" | grep -c '\.hl7$')" -lt 40 ]; do sleep 0.1; n=$((n + 1)); done
files=$(ls "$out" | grep -c '\.hl7$')
partial=$(ls -A "$out" | grep -c '^\.tmp-')
ok=1
[ "$files" -eq 40 ] && [ "$partial" -eq 0 ] || ok=0
for f in "$out"/*.hl7; do
    "$HL7CTL" parse "$f" >/dev/null 2>&1 || { ok=0; echo "# $f does not parse"; }
done
[ $ok -eq 1 ]
check "the file destination wrote 40 whole files, no temporary ones left ($files, $partial)" $?

# a subscriber that drops every third connection, then one that answers AE
for mode in drop3 ae3; do
    kill "$rpid" 2>/dev/null
    wait "$rpid" 2>/dev/null
    receive "$mode"
    send 30 "$(echo $mode | tr a-z A-Z)"
    wait_delivered 20 && delivered_in_order
    check "subscriber '$mode': retried, every message delivered, order kept" $? "$tmp/received"
done

# the subscriber away: messages queue; back: delivered in order
kill "$rpid" 2>/dev/null
wait "$rpid" 2>/dev/null
send 20 AWAY
sleep 0.5
receive aa
wait_delivered 20 && delivered_in_order
check "subscriber away then back: the queue drains in order" $? "$tmp/received"

# kill -9 while delivering, restart: nothing lost, order kept
before=$(lines "$tmp/received")
send 400 CRASH &
lpid=$!
sleep 0.25
kill -KILL "$dpid"
wait "$dpid" 2>/dev/null
wait "$lpid" 2>/dev/null
echo "# at the kill: $(($(lines "$tmp/received") - before)) delivered of $(grep -c CRASH "$tmp/acked") accepted"
start_daemon "$tmp/broker.conf" "$tmp/log2" "$P1" || { fail "the broker did not restart" "$tmp/log2"; exit 1; }
wait_delivered 20 && delivered_in_order
check "kill -9 during delivery, restart: every accepted message delivered at least once, in order" $? "$tmp/received"

stop "$dpid" TERM 10
[ "$rc" -eq 0 ]
check "SIGTERM: exit 0" $?
