#!/bin/sh
# ingest_hostile.sh: hostile and broken peers cannot starve a normal
# sender or grow hl7brokerd's memory. While 1,000 connections sit idle and
# other peers send random bytes, a frame that never ends, a frame one byte
# a second, a frame that stalls and an oversize message, a normal client
# keeps getting its ACKs within its usual latency, and the daemon's RSS
# (VmRSS) stays bounded. Then the per-source limits: max_connections,
# idle_timeout_ms and the allow list.
# Prints "PASS ingest-hostile: ..." / "FAIL ingest-hostile: ...".
suite=ingest-hostile
. test/integration/lib/ingest.sh

# 1,000 idle connections need ~1,000 descriptors in the daemon and in the
# load generator (which raises its own soft limit to the hard one).
IDLE=1000
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null
fds=$(ulimit -n)
if [ "$fds" != unlimited ] && [ "$fds" -lt $((IDLE + 100)) ]; then
    IDLE=$((fds - 100))
    echo "# ulimit -n is $fds: $IDLE idle connections instead of 1000"
fi

ports 3
conf=$tmp/broker.conf
log=$tmp/broker.log
data=$tmp/data
write_conf "$conf" "$data" \
    "$(mllp_source hostile "$P1" "max_connections = $((IDLE + 100)); idle_timeout_ms = 0;
        max_message_bytes = 1048576; frame_timeout_ms = 2000;"),
     $(mllp_source tight "$P2" "max_connections = 3; idle_timeout_ms = 1000;"),
     $(mllp_source walled "$P3" "allow = [ \"10.0.0.0/8\", \"::1/128\" ];")"
if ! start_daemon "$conf" "$log" "$P1" "$P2" "$P3"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi
msg=$SAMPLES/adt_a01.hl7

# ------------------------------------------------- the usual latency, alone

"$LOAD" --port "$P1" --connections 1 --messages 300 --id-prefix B >"$tmp/base" 2>&1
base_p50=$(result "$tmp/base" p50_ms)
base_p99=$(result "$tmp/base" p99_ms)
if [ "$(result "$tmp/base" accepted)" = 300 ]; then
    pass "alone: 300 messages on one connection, p50 $base_p50 ms, p99 $base_p99 ms"
else fail "alone: 300 messages on one connection" "$tmp/base"; fi
rss0=$(rss_kb "$dpid")

# --------------------------------------------- 1,000 idle, and the hostiles

# The normal client, for 8 s, with $IDLE idle connections held open.
"$LOAD" --port "$P1" --idle "$IDLE" --connections 1 --seconds 8 --id-prefix N \
    >"$tmp/normal" 2>"$tmp/normal.err" &
npid=$!
track $npid
if wait_for "$tmp/normal.err" 1 "^idle: $IDLE open" 20; then
    sleep 0.5
    rss_idle=$(rss_kb "$dpid")
    cost=$(( (rss_idle - rss0) / 1024 ))
    if [ $sanitized -eq 1 ] || [ $((rss_idle - rss0)) -lt 51200 ]; then
        pass "$IDLE idle connections cost $cost MB of RSS (VmRSS $((rss0 / 1024)) -> $((rss_idle / 1024)) MB; under 50 MB)"
    else fail "$IDLE idle connections cost $cost MB of RSS (want under 50 MB)"; fi
else
    fail "$IDLE idle connections opened" "$tmp/normal.err"
fi

# A message over max_message_bytes (1 MiB): 2 MiB of NTE.
{
    tr -d '\n' <"$msg"
    printf 'NTE|1||'
    head -c 2097152 /dev/zero | tr '\0' 'x'
    printf '\r'
} >"$tmp/big.hl7"

$PEER garbage "$P1" 1000000 3 >"$tmp/garbage" 2>&1 &
h1=$!
$PEER endless "$P1" 500000000 8 >"$tmp/endless" 2>&1 &
h2=$!
$PEER slow "$P1" "$msg" 1.0 8 >"$tmp/slow" 2>&1 &
h3=$!
$PEER slow "$P1" "$msg" 30 8 >"$tmp/stalled" 2>&1 &
h4=$!
"$HL7CTL" send --raw --port "$P1" "$tmp/big.hl7" >"$tmp/big" 2>&1 &
h5=$!
track "$h1 $h2 $h3 $h4 $h5"

# VmRSS every 0.2 s while they run
rss_max=$rss_idle
while ! gone "$npid"; do
    r=$(rss_kb "$dpid")
    [ -n "$r" ] && [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 0.2
done
for p in $h1 $h2 $h3 $h4; do wait_pid "$p" 15; done
wait_pid $h5 15
big_rc=$rc
wait_pid $npid 15

acks=$(result "$tmp/normal" acks)
p50=$(result "$tmp/normal" p50_ms)
p99=$(result "$tmp/normal" p99_ms)
maxl=$(result "$tmp/normal" max_ms)
# "its usual latency": p99 within 4x of its p99 alone, or 50 ms more
limit=$(awk -v b="$base_p99" 'BEGIN { l = 4 * b; if (l < b + 50) l = b + 50; print l }')
[ $sanitized -eq 1 ] && limit=$(awk -v l="$limit" 'BEGIN { print l * 4 }')
if [ "$(result "$tmp/normal" failed_connections)" = 0 ] &&
   [ "$(result "$tmp/normal" accepted)" = "$acks" ] && [ "${acks:-0}" -gt 0 ] &&
   awk -v p="$p99" -v l="$limit" 'BEGIN { exit !(p <= l) }'; then
    pass "meanwhile a normal client: $acks ACKs, p50 $p50 ms, p99 $p99 ms, max $maxl ms (limit $limit ms)"
else fail "meanwhile a normal client: p99 $p99 ms (limit $limit ms)" "$tmp/normal"; fi

if [ "$(result "$tmp/normal" idle_open)" = "$IDLE" ]; then
    pass "the $IDLE idle connections stay open (idle_timeout_ms = 0)"
else fail "the idle connections stay open: $(result "$tmp/normal" idle_open) of $IDLE" "$tmp/normal"; fi

grep -q '^reply=0 ' "$tmp/garbage"
check "1 MB of random bytes: no reply ($(cat "$tmp/garbage"))" $? "$tmp/garbage"

# the frame that never ends: cut by frame_timeout_ms (2 s) at the latest
if grep -Eq '^reply=[0-9]+ closed=yes after=[0-5]\.' "$tmp/endless"; then
    pass "a frame that never ends is cut off ($(cat "$tmp/endless"))"
else fail "a frame that never ends is cut off" "$tmp/endless"; fi

if grep -Eq '^reply=[0-9]+ closed=yes after=[0-5]\.' "$tmp/slow"; then
    pass "a frame sent one byte a second is cut off ($(cat "$tmp/slow"))"
else fail "a frame sent one byte a second is cut off" "$tmp/slow"; fi

if grep -Eq '^reply=[0-9]+ closed=yes after=[0-5]\.' "$tmp/stalled"; then
    pass "a frame that stalls is cut off ($(cat "$tmp/stalled"))"
else fail "a frame that stalls is cut off" "$tmp/stalled"; fi

if [ "$big_rc" -eq 1 ] && grep -q '^MSA|AR|' "$tmp/big"; then
    pass "a 2 MiB message over max_message_bytes: AR"
else fail "a 2 MiB message over max_message_bytes: AR (exit $big_rc)" "$tmp/big"; fi

grow=$(( (rss_max - rss0) / 1024 ))
if [ $sanitized -eq 1 ] || [ $((rss_max - rss0)) -lt 51200 ]; then
    pass "VmRSS stays bounded throughout: at most $((rss_max / 1024)) MB, $grow MB over the start"
else fail "VmRSS stays bounded: grew $grow MB (to $((rss_max / 1024)) MB; want under 50 MB)"; fi

# ------------------------------------------------------ per-source limits

# max_connections = 3: three idle connections fill it, a fourth is refused.
"$LOAD" --port "$P2" --idle 3 --connections 1 --messages 1 --timeout-ms 3000 >"$tmp/tight" 2>&1
if [ "$(result "$tmp/tight" failed_connections)" = 1 ]; then
    pass "max_connections = 3: a fourth connection is refused"
else fail "max_connections = 3: a fourth connection is refused" "$tmp/tight"; fi

# idle_timeout_ms = 1000: idle connections are closed, a busy one is not.
"$LOAD" --port "$P2" --idle 2 --connections 1 --seconds 2.5 >"$tmp/timeout" 2>&1
if [ "$(result "$tmp/timeout" idle_open)" = 0 ] &&
   [ "$(result "$tmp/timeout" failed_connections)" = 0 ]; then
    pass "idle_timeout_ms = 1000: idle connections closed, the busy one kept"
else fail "idle_timeout_ms = 1000: idle connections closed, the busy one kept" "$tmp/timeout"; fi

# allow: a peer outside the list is refused
"$HL7CTL" send -q --port "$P3" "$msg" >"$tmp/walled" 2>&1
rc=$?
[ $rc -eq 3 ]
check "allow = [ 10.0.0.0/8 ]: 127.0.0.1 is refused" $? "$tmp/walled"

if ! gone "$dpid" && "$HL7CTL" send -q --port "$P1" "$SAMPLES/oru_r01.hl7" >"$tmp/out" 2>&1; then
    pass "the daemon is still up and accepting"
else fail "the daemon is still up and accepting" "$log"; fi
stop "$dpid" TERM 10
