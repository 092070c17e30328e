#!/bin/sh
# ingest_dup.sh: a message sent again (same source, MSH-3, MSH-4, MSH-10)
# gets the very ACK the first one got, byte for byte, and is stored once:
# on the same connection, on another one, in the same group commit, and
# after a restart. The same message from another source is a message of
# its own. Prints "PASS ingest-dup: ..." / "FAIL ingest-dup: ...".
suite=ingest-dup
. test/integration/lib/ingest.sh

ports 2
conf=$tmp/broker.conf
log=$tmp/broker.log
data=$tmp/data
write_conf "$conf" "$data" "$(mllp_source dup-a "$P1"), $(mllp_source dup-b "$P2")"
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi

msg=$SAMPLES/adt_a01.hl7
id=$(control_id "$msg")
$PEER frame "$P1" "$msg" "$tmp/ack1" && $PEER frame "$P1" "$msg" "$tmp/ack2"
rc=$?
if [ $rc -eq 0 ] && [ -s "$tmp/ack1" ] && cmp -s "$tmp/ack1" "$tmp/ack2" &&
   grep -q "MSA|CA|$id" "$tmp/ack1"; then
    pass "sent twice: the second ACK is byte-identical to the first (CA)"
else
    { od -c "$tmp/ack1"; od -c "$tmp/ack2"; } >"$tmp/out" 2>&1
    fail "sent twice: byte-identical ACKs" "$tmp/out"
fi

# three times in one hl7ctl run: back to back on one connection, each
# ACK the one the first send got (hl7ctl prints a segment per line)
"$HL7CTL" send --port "$P1" "$msg" "$msg" "$msg" >"$tmp/out" 2>&1
rc=$?
tr '\r' '\n' <"$tmp/ack1" | grep -v '^$' >"$tmp/ack1.lines"
grep -v '^$' "$tmp/out" >"$tmp/got.lines"
cat "$tmp/ack1.lines" "$tmp/ack1.lines" "$tmp/ack1.lines" >"$tmp/want.lines"
cmp -s "$tmp/got.lines" "$tmp/want.lines" && [ $rc -eq 0 ]
check "three times on one connection: the first ACK each time" $? "$tmp/out"

# A new message and its duplicate in the same group commit: 16 copies of a
# fresh message sent at once over 16 connections.
sed 's/|RLH000000123|/|DUP-SAME-BATCH|/' "$msg" >"$tmp/fresh.hl7"
i=0 burst=""
while [ $i -lt 16 ]; do
    $PEER frame "$P1" "$tmp/fresh.hl7" "$tmp/burst.$i" &
    burst="$burst $!"
    i=$((i + 1))
done
for p in $burst; do wait_pid "$p" 15; done
distinct=$(cat "$tmp"/burst.* | tr '\r' '\n' | grep '^MSH' | sort -u | wc -l | tr -d ' ')
got=$(ls "$tmp"/burst.* | wc -l | tr -d ' ')
if [ "$got" -eq 16 ] && [ "$distinct" -eq 1 ]; then
    pass "16 copies at once on 16 connections: one ACK, 16 times"
else fail "16 copies at once: want 16 identical ACKs, got $got with $distinct distinct headers"; fi

# after a restart the stored ACK is still the answer
if stop "$dpid" TERM 10 && start_daemon "$conf" "$log" "$P1" "$P2" &&
   $PEER frame "$P1" "$msg" "$tmp/ack3" && cmp -s "$tmp/ack1" "$tmp/ack3"; then
    pass "after a restart: the same ACK again"
else fail "after a restart: the same ACK again" "$log"; fi

# From another source the same bytes are a new message, with a new ACK.
$PEER frame "$P2" "$msg" "$tmp/ack4"
if grep -q "MSA|CA|$id" "$tmp/ack4" && ! cmp -s "$tmp/ack1" "$tmp/ack4"; then
    pass "the same message from another source: accepted with its own ACK"
else fail "the same message from another source" "$tmp/ack4"; fi

$PEER store-ids "$data" >"$tmp/stored"
n_a=$(grep -c "^dup-a $id " "$tmp/stored")
n_b=$(grep -c "^dup-b $id " "$tmp/stored")
n_f=$(grep -c "^dup-a DUP-SAME-BATCH " "$tmp/stored")
if [ "$n_a" -eq 1 ] && [ "$n_b" -eq 1 ] && [ "$n_f" -eq 1 ]; then
    pass "stored once per source (read with mdb_dump)"
else fail "stored once per source: dup-a $n_a, dup-b $n_b, same-batch $n_f (want 1 each)" "$tmp/stored"; fi

stop "$dpid" TERM 10
