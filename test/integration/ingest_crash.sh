#!/bin/sh
# ingest_crash.sh: an acknowledged message survives any crash. Rounds of:
# 32 connections sending unique messages (mllp_load, each control id
# written to a file the moment its AA/CA arrives), kill -9 of hl7brokerd at
# a random moment, restart on the same store. Then every acknowledged
# control id is in the store, read with mdb_dump rather than through the
# daemon, and no message is stored twice.
# Prints "PASS ingest-crash: ..." / "FAIL ingest-crash: ...".
suite=ingest-crash
. test/integration/lib/ingest.sh

ROUNDS=${CRASH_ROUNDS:-4}
ports 1
conf=$tmp/broker.conf
data=$tmp/data
write_conf "$conf" "$data" "$(mllp_source crash "$P1" "max_connections = 64;")"

# a random delay in 0.30..1.49 s, different each round
delay() {
    ms=$((300 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 1200))
    printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10))
}

r=1
total_acked=0
while [ $r -le "$ROUNDS" ]; do
    log=$tmp/broker.$r.log
    if ! start_daemon "$conf" "$log" "$P1"; then
        fail "round $r: hl7brokerd (re)starts on the crashed store" "$log"
        exit 1
    fi
    "$LOAD" --port "$P1" --connections 32 --seconds 30 --timeout-ms 5000 \
        --id-prefix "C$r" --acked-file "$tmp/acked.$r" >"$tmp/load.$r" 2>&1 &
    lpid=$!
    track $lpid
    d=$(delay)
    sleep "$d"
    kill -KILL "$dpid"
    wait "$dpid" 2>/dev/null
    # the connections see the crash at once; the generator then exits
    wait_pid "$lpid" 15
    n=$(lines "$tmp/acked.$r")
    total_acked=$((total_acked + n))
    if [ "$n" -gt 0 ] && [ "$(result "$tmp/load.$r" failed_connections)" = 32 ]; then
        pass "round $r: $n messages acknowledged, kill -9 after ${d}s, all 32 connections cut"
    else
        fail "round $r: acknowledged $n, kill -9 after ${d}s (want > 0, every connection cut)" "$tmp/load.$r"
    fi
    r=$((r + 1))
done

# A last start: the store opens after the crash, and takes messages.
log=$tmp/broker.last.log
if start_daemon "$conf" "$log" "$P1" &&
   "$HL7CTL" send -q --port "$P1" "$SAMPLES/adt_a01.hl7" >"$tmp/out" 2>&1; then
    pass "hl7brokerd starts on the store after $ROUNDS crashes and accepts"
else fail "hl7brokerd starts on the store after $ROUNDS crashes and accepts" "$log"; fi
stop "$dpid" TERM 10

# shellcheck disable=SC2046
if store_check "$data" $(ls "$tmp"/acked.*); then
    pass "all $total_acked acknowledged messages are in the store ($stored stored), none twice"
else
    { echo "missing (first 10):"; head -n 10 "$tmp/missing"; echo "twice (first 10):"; head -n 10 "$tmp/dups"; } >"$tmp/out"
    fail "acknowledged messages in the store: $missing of $total_acked missing, $dups stored twice" "$tmp/out"
fi
