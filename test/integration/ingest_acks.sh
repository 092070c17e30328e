#!/bin/sh
# ingest_acks.sh: every sample in ../shared/samples, sent to the real
# hl7brokerd with python3-hl7's mllp_send and with hl7ctl send, gets the ACK
# DESIGN.md §2 asks for: AA (CA in enhanced mode, MSH-15 or MSH-16 set) for
# the good ones, AR with an ERR segment naming the problem for the bad
# ones, nothing for garbage sent without a frame. Accepted messages are in
# the store, refused ones in the error store, and the daemon stays up.
# Prints "PASS ingest-acks: ..." / "FAIL ingest-acks: ...".
suite=ingest-acks
. test/integration/lib/ingest.sh

ports 3
conf=$tmp/broker.conf
log=$tmp/broker.log
write_conf "$conf" "$tmp/data" \
    "$(mllp_source via-mllp-send "$P1"), $(mllp_source via-hl7ctl "$P2"),
     $(mllp_source release2 "$P3" "commit_ack = true;")"
if ! start_daemon "$conf" "$log" "$P1" "$P2" "$P3"; then
    fail "hl7brokerd starts and listens on three sources" "$log"
    exit 1
fi
pass "hl7brokerd starts and listens on three sources"

# frame FILE OUT: FILE in an MLLP frame, as mllp_send reads its input.
frame() { { printf '\013'; cat "$1"; printf '\034\015'; } >"$2"; }

# via_mllp_send FILE OUT: the ACK from mllp_send, one segment per line.
via_mllp_send() {
    frame "$1" "$tmp/framed"
    timeout 20 mllp_send -p "$P1" -f "$tmp/framed" 127.0.0.1 >"$tmp/ms.raw" 2>"$tmp/ms.err"
    ms_rc=$?
    tr '\r\013\034' '\n\n\n' <"$tmp/ms.raw" | grep -v '^$' >"$2"
}

# --------------------------------------------------------- good samples

accepted_ids=$tmp/accepted_ids
: >"$accepted_ids"
for f in "$SAMPLES"/*.hl7; do
    name=${f##*/}
    [ "$name" = batch_oru.hl7 ] && continue
    want=AA
    enhanced "$f" && want=CA
    id=$(control_id "$f")
    echo "$id" >>"$accepted_ids"

    "$HL7CTL" send --port "$P2" "$f" >"$tmp/out" 2>&1
    rc=$?
    got=$(ack_fields "$tmp/out")
    if [ $rc -eq 0 ] && [ "$got" = "$want $id" ]; then pass "hl7ctl send $name: $want"
    else fail "hl7ctl send $name: want '$want $id', got '$got' (exit $rc)" "$tmp/out"; fi

    via_mllp_send "$f" "$tmp/out"
    got=$(ack_fields "$tmp/out")
    if [ $ms_rc -eq 0 ] && [ "$got" = "$want $id" ]; then pass "mllp_send $name: $want"
    else cat "$tmp/ms.err" >>"$tmp/out"
         fail "mllp_send $name: want '$want $id', got '$got' (exit $ms_rc)" "$tmp/out"; fi
done

# --quiet prints only MSA-1 MSA-2, and several files go on one connection
"$HL7CTL" send -q "127.0.0.1:$P2" "$SAMPLES/adt_a01.hl7" "$SAMPLES/custom_delimiters.hl7" \
    >"$tmp/out" 2>&1
rc=$?
printf 'CA RLH000000123\nAA H85026-19\n' >"$tmp/want"
cmp -s "$tmp/out" "$tmp/want"
check "hl7ctl send --quiet HOST:PORT with two files: one line each" $? "$tmp/out"

# standard input
"$HL7CTL" send -q --port "$P2" - <"$SAMPLES/adt_a03.hl7" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "CA RLH000000187" ]
check "hl7ctl send - reads standard input" $? "$tmp/out"

# MLLP release 2: a commit acknowledgement frame, then the HL7 ACK
"$HL7CTL" send --port "$P3" "$SAMPLES/oru_r01.hl7" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(head -n 1 "$tmp/out")" = "MLLP commit: ACK" ] &&
    [ "$(ack_fields "$tmp/out")" = "CA UCLH-LAB-55501" ]
check "commit_ack = true: the commit ACK frame, then CA" $? "$tmp/out"
"$HL7CTL" send -q --raw --port "$P3" "$SAMPLES/bad/no_msh.hl7" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && [ "$(head -n 1 "$tmp/out")" = COMMIT-NAK ] && grep -q '^AR ' "$tmp/out"
check "commit_ack = true: a refusal gets the commit NAK, then AR (exit 1)" $? "$tmp/out"

# ----------------------------------------------------------- bad samples

# bad NAME CODE ERR: hl7ctl send --raw and mllp_send both get CODE with ERR
bad() {
    f=$SAMPLES/bad/$1
    "$HL7CTL" send --raw --port "$P2" "$f" >"$tmp/out" 2>&1
    rc=$?
    got=$(ack_fields "$tmp/out")
    if [ $rc -eq 1 ] && [ "${got%% *}" = "$2" ] && has_err "$tmp/out" "$3"; then
        pass "hl7ctl send --raw bad/$1: $2 with ERR $3"
    else fail "hl7ctl send --raw bad/$1: want $2 with ERR $3, got '$got' (exit $rc)" "$tmp/out"; fi
    via_mllp_send "$f" "$tmp/out"
    got=$(ack_fields "$tmp/out")
    if [ $ms_rc -eq 0 ] && [ "${got%% *}" = "$2" ] && has_err "$tmp/out" "$3"; then
        pass "mllp_send bad/$1: $2 with ERR $3"
    else fail "mllp_send bad/$1: want $2 with ERR $3, got '$got' (exit $ms_rc)" "$tmp/out"; fi
}
bad no_msh.hl7 AR 100
bad truncated_msh.hl7 AR 102
bad missing_type.hl7 AR 101
bad unknown_version.hl7 AR 203

# A bad NHS number is accepted unless a source checks NHS numbers; the
# sample has MSH-15 set, so in enhanced mode that is CA.
f=$SAMPLES/bad/bad_nhs_number.hl7
want=AA
enhanced "$f" && want=CA
"$HL7CTL" send --port "$P2" "$f" >"$tmp/out" 2>&1
rc=$?
got=$(ack_fields "$tmp/out")
if [ $rc -eq 0 ] && [ "$got" = "$want RLH-BAD-2" ]; then pass "bad/bad_nhs_number.hl7: $want by default"
else fail "bad/bad_nhs_number.hl7: want $want, got '$got' (exit $rc)" "$tmp/out"; fi
echo RLH-BAD-2 >>"$accepted_ids"

# hl7ctl send refuses to split what is not a message, sending nothing
"$HL7CTL" send --port "$P2" "$SAMPLES/bad/no_msh.hl7" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q -- '--raw' "$tmp/out"
check "hl7ctl send without --raw: an unsplittable file is a usage error (exit 2)" $? "$tmp/out"

# Binary garbage: inside a frame, AR; without a frame, nothing at all.
f=$SAMPLES/bad/binary_garbage.hl7
"$HL7CTL" send --raw --port "$P2" "$f" >"$tmp/out" 2>&1
rc=$?
got=$(ack_fields "$tmp/out")
if [ $rc -eq 1 ] && [ "${got%% *}" = AR ] && grep -q '^ERR' "$tmp/out"; then
    pass "bad/binary_garbage.hl7 in a frame: AR with ERR"
else fail "bad/binary_garbage.hl7 in a frame: want AR, got '$got' (exit $rc)" "$tmp/out"; fi
$PEER raw "$P2" "$f" 2 >"$tmp/out" 2>&1
grep -q '^reply=0 ' "$tmp/out"
check "bad/binary_garbage.hl7 without a frame: no reply" $? "$tmp/out"

# --------------------------------------------------------------- batches

# Split by hl7ctl send: three messages, three ACKs.
"$HL7CTL" send -q --port "$P2" "$SAMPLES/batch_oru.hl7" >"$tmp/out" 2>&1
rc=$?
printf 'CA NWPH-B1-001\nCA NWPH-B1-002\nCA NWPH-B1-003\n' >"$tmp/want"
if [ $rc -eq 0 ] && cmp -s "$tmp/out" "$tmp/want"; then
    pass "batch_oru.hl7 split by hl7ctl send: CA for each of its 3 messages"
else fail "batch_oru.hl7 split by hl7ctl send (exit $rc)" "$tmp/out"; fi
printf 'NWPH-B1-001\nNWPH-B1-002\nNWPH-B1-003\n' >>"$accepted_ids"

# The whole FHS/BHS batch in one frame: the broker does not take batches
# over MLLP (one frame is one message); it must say so with AR and an ERR,
# and keep the batch in the error store, rather than accept part of it.
"$HL7CTL" send --raw --port "$P2" "$SAMPLES/batch_oru.hl7" >"$tmp/out" 2>&1
rc=$?
got=$(ack_fields "$tmp/out")
if [ $rc -eq 1 ] && [ "${got%% *}" = AR ] && has_err "$tmp/out" 100 \
    && grep -q 'a batch must be split into its messages' "$tmp/out"; then
    pass "batch_oru.hl7 in one frame: AR with ERR 100 saying to split the batch"
else fail "batch_oru.hl7 in one frame: want AR with ERR 100, got '$got' (exit $rc)" "$tmp/out"; fi
via_mllp_send "$SAMPLES/batch_oru.hl7" "$tmp/out"
got=$(ack_fields "$tmp/out")
if [ "${got%% *}" = AR ]; then pass "batch_oru.hl7 in one frame via mllp_send: AR"
else fail "batch_oru.hl7 in one frame via mllp_send: want AR, got '$got'" "$tmp/out"; fi

# ---------------------------------------------------- the daemon, the store

if ! gone "$dpid" && "$HL7CTL" send -q --port "$P1" "$SAMPLES/oru_r01.hl7" >"$tmp/out" 2>&1; then
    pass "the daemon is still up and accepting"
else fail "the daemon is still up and accepting" "$log"; fi

# Every accepted control id is stored once per source (duplicates were
# answered from the store); every refusal is in the error store.
$PEER store-ids "$tmp/data" >"$tmp/stored" 2>"$tmp/err"
for src in via-hl7ctl via-mllp-send; do
    awk -v s=$src '$1 == s { print $2 }' "$tmp/stored" | sort >"$tmp/ids.$src"
done
sort -u "$accepted_ids" >"$tmp/want"
if cmp -s "$tmp/ids.via-hl7ctl" "$tmp/want"; then
    pass "the store holds each message accepted via hl7ctl send exactly once"
else
    { echo "stored:"; cat "$tmp/ids.via-hl7ctl"; echo "want:"; cat "$tmp/want" "$tmp/err"; } >"$tmp/out"
    fail "the store holds each message accepted via hl7ctl send exactly once" "$tmp/out"
fi
grep -v -e '^RLH-BAD-2$' -e '^NWPH-B1-' "$accepted_ids" | sort -u >"$tmp/want"
# oru_r01 went to this source twice (mllp_send, then hl7ctl above): once stored
if cmp -s "$tmp/ids.via-mllp-send" "$tmp/want"; then
    pass "the store holds each message accepted via mllp_send exactly once"
else
    { echo "stored:"; cat "$tmp/ids.via-mllp-send"; echo "want:"; cat "$tmp/want"; } >"$tmp/out"
    fail "the store holds each message accepted via mllp_send exactly once" "$tmp/out"
fi

# refusals: 4 bad + garbage + batch via hl7ctl; 4 bad + batch via mllp_send
$PEER store-errors "$tmp/data" >"$tmp/errors" 2>&1
n1=$(grep -c '^via-hl7ctl AR ' "$tmp/errors")
n2=$(grep -c '^via-mllp-send AR ' "$tmp/errors")
if [ "$n1" -ge 6 ] && [ "$n2" -ge 5 ] && grep -q 'MSH-9' "$tmp/errors" &&
   grep -q "9.9" "$tmp/errors"; then
    pass "every refusal is in the error store with its reason ($n1 + $n2)"
else fail "every refusal is in the error store (via-hl7ctl $n1 of 6, via-mllp-send $n2 of 5)" "$tmp/errors"; fi

if stop "$dpid" TERM 10 && [ "$rc" -eq 0 ]; then pass "SIGTERM: exit 0"
else fail "SIGTERM: exit 0 (rc=$rc)" "$log"; fi
