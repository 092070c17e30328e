#!/bin/sh
# ingest_lifecycle.sh: stopping and reloading hl7brokerd under traffic.
# SIGTERM during load loses no acknowledged message (the store is read
# with mdb_dump afterwards); SIGHUP with a broken file keeps the running
# config and its listener; SIGHUP adding a source opens its port without
# dropping the first source's connections (one opened before the reload
# still gets its ACK after it); SIGHUP removing it closes the port again.
# Prints "PASS ingest-lifecycle: ..." / "FAIL ingest-lifecycle: ...".
suite=ingest-lifecycle
. test/integration/lib/ingest.sh

ports 2
conf=$tmp/broker.conf
good=$tmp/good.conf
data=$tmp/data
write_conf "$good" "$data" "$(mllp_source first "$P1")"
cp "$good" "$conf"
msg=$SAMPLES/adt_a01.hl7

# --------------------------------------------------- SIGTERM during load

log=$tmp/broker.1.log
if ! start_daemon "$conf" "$log" "$P1"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi
"$LOAD" --port "$P1" --connections 16 --seconds 30 --timeout-ms 5000 --id-prefix T \
    --acked-file "$tmp/acked" >"$tmp/load" 2>&1 &
lpid=$!
track $lpid
sleep 1
if stop "$dpid" TERM 10 && [ "$rc" -eq 0 ]; then
    pass "SIGTERM under load of 16 connections: exit 0"
else fail "SIGTERM under load: exit 0 (rc=$rc)" "$log"; fi
wait_pid "$lpid" 15
n=$(lines "$tmp/acked")
if [ "$n" -gt 0 ] && store_check "$data" "$tmp/acked"; then
    pass "SIGTERM lost no acknowledged message: all $n in the store, none twice"
else
    { cat "$tmp/load"; echo "missing:"; head "$tmp/missing"; } >"$tmp/out"
    fail "SIGTERM lost no acknowledged message ($n acknowledged, $missing missing, $dups twice)" "$tmp/out"
fi

# ------------------------------------------------- SIGHUP with a bad file

log=$tmp/broker.2.log
if ! start_daemon "$conf" "$log" "$P1"; then
    fail "hl7brokerd restarts" "$log"
    exit 1
fi
{ sed -e "s|127.0.0.1:$P1|127.0.0.1:$P2|" "$good"; echo 'sources = ( oops'; } >"$conf"
from=$(($(lines "$log") + 1))
kill -HUP "$dpid"
if wait_for "$log" "$from" 'reload refused' 10 &&
   "$HL7CTL" send -q --port "$P1" "$msg" >"$tmp/out" 2>&1 &&
   ! $PEER wait-port "$P2" 0.5; then
    pass "SIGHUP with a broken file: refused, the old source still answers, no new port"
else fail "SIGHUP with a broken file keeps the old config" "$log"; fi

# ------------------------------------- SIGHUP adding a second source

# A connection opened before the reload: one message now, one after.
rm -f "$tmp/go"
$PEER session "$P1" "$SAMPLES/oru_r01.hl7" "$tmp/go" 20 >"$tmp/session" 2>&1 &
spid=$!
track $spid
wait_for "$tmp/session" 1 '^CA ' 10 || fail "the session's first ACK" "$tmp/session"

write_conf "$conf" "$data" "$(mllp_source first "$P1"), $(mllp_source second "$P2")"
from=$(($(lines "$log") + 1))
kill -HUP "$dpid"
if wait_for "$log" "$from" 'config reloaded' 10 && $PEER wait-port "$P2" 5 &&
   "$HL7CTL" send -q --port "$P2" "$SAMPLES/adt_a03.hl7" >"$tmp/out" 2>&1; then
    pass "SIGHUP adding a source: its port opens and accepts"
else fail "SIGHUP adding a source: its port opens and accepts" "$log"; fi

touch "$tmp/go"
wait_pid $spid 15
if [ "$(sed -n 2p "$tmp/session")" = "CA UCLH-LAB-55501-2" ]; then
    pass "a connection opened before the reload still gets its ACK after it"
else fail "a connection opened before the reload still gets its ACK after it" "$tmp/session"; fi

"$HL7CTL" send -q --port "$P1" "$SAMPLES/adt_a08_escapes.hl7" >"$tmp/out" 2>&1
check "the first source still takes new connections" $? "$tmp/out"

# ------------------------------------- SIGHUP removing it again

cp "$good" "$conf"
from=$(($(lines "$log") + 1))
kill -HUP "$dpid"
gone_port=1
if wait_for "$log" "$from" 'config reloaded' 10; then
    n=0
    while [ $n -lt 50 ] && $PEER wait-port "$P2" 0.1; do sleep 0.1; n=$((n + 1)); done
    $PEER wait-port "$P2" 0.1 && gone_port=0
fi
if [ $gone_port -eq 1 ] && "$HL7CTL" send -q --port "$P1" "$SAMPLES/adt_a40_merge.hl7" >"$tmp/out" 2>&1; then
    pass "SIGHUP removing the source closes its port; the first still answers"
else fail "SIGHUP removing the source closes its port" "$log"; fi

if stop "$dpid" TERM 10 && [ "$rc" -eq 0 ]; then pass "SIGTERM: exit 0"
else fail "SIGTERM: exit 0 (rc=$rc)" "$log"; fi

$PEER store-ids "$data" >"$tmp/stored"
if grep -q '^second RLH000000187 ' "$tmp/stored" && grep -q '^first UCLH-LAB-55501-2 ' "$tmp/stored"; then
    pass "messages from both sources are in the store under their source's name"
else fail "messages from both sources are in the store" "$tmp/stored"; fi
