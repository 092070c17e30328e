#!/bin/sh
# send.sh: hl7ctl send against servers that misbehave (test/integration/
# lib/peer.py serve): help and usage errors, refused connections, no
# reply, replies that are too large or not MLLP, a negative or mismatched
# ACK, a commit acknowledgement with no HL7 ACK, and a server that closes
# the connection after each message. The broker itself is in
# test/integration/ingest_*.sh. Prints "PASS send: ..." / "FAIL send: ...".
suite=send
. test/integration/lib/ingest.sh

msg=$SAMPLES/adt_a01.hl7

"$HL7CTL" send --help >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q '^usage: hl7ctl send' "$tmp/out" && grep -q -- '--tls' "$tmp/out"
check "--help" $? "$tmp/out"
"$HL7CTL" --help | grep -q '^  send ' 
check "hl7ctl --help lists send" $?

usage_ok=1
for args in "" "--port" "--bogus $msg" "--timeout-ms 0 $msg" "--cert x $msg" "--ca x $msg" \
            "--tls --cert x $msg"; do
    # shellcheck disable=SC2086
    "$HL7CTL" send $args >"$tmp/out" 2>&1
    [ $? -eq 2 ] || { usage_ok=0; echo "# '$args' did not exit 2"; }
done
"$HL7CTL" send --port 1 "$tmp/no-such-file" >"$tmp/out" 2>&1
[ $? -eq 2 ] && grep -q 'no-such-file' "$tmp/out" || usage_ok=0
[ $usage_ok -eq 1 ]
check "usage errors and unreadable files: exit 2, nothing sent" $? "$tmp/out"

ports 2
"$HL7CTL" send --port "$P1" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 3 ] && grep -q "127.0.0.1:$P1: connect: Connection refused" "$tmp/out"
check "nothing listening: exit 3, 'connect: Connection refused'" $? "$tmp/out"

# serve MODE: the fake server on P2 (pid in $spid)
serve() {
    [ -n "$spid" ] && { kill "$spid"; wait "$spid" 2>/dev/null; }
    # empty the file here: the child truncates it only once it runs, and
    # the previous server's "listening" would otherwise be waited on
    : >"$tmp/serve.out"
    $PEER serve "$P2" "$1" >"$tmp/serve.out" 2>&1 &
    spid=$!
    track $spid
    wait_for "$tmp/serve.out" 1 '^listening' 10
}
spid=""

serve silent
start=$(date +%s)
"$HL7CTL" send --timeout-ms 1000 --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
took=$(($(date +%s) - start))
[ $rc -eq 3 ] && [ $took -le 3 ] && grep -q 'no reply within 1000 ms' "$tmp/out"
check "no reply: exit 3 after --timeout-ms ('no reply within 1000 ms')" $? "$tmp/out"

serve huge
"$HL7CTL" send --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 3 ] && grep -q 'reply is larger than 16777216 bytes' "$tmp/out"
check "a 17 MiB reply: exit 3, 'larger than 16777216 bytes'" $? "$tmp/out"

serve junk
"$HL7CTL" send --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 3 ] && grep -q 'outside a frame' "$tmp/out"
check "bytes outside a frame: exit 3" $? "$tmp/out"

serve nocr
"$HL7CTL" send --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 3 ] && grep -q 'not followed by <CR>' "$tmp/out"
check "<FS> without <CR>: exit 3" $? "$tmp/out"

serve ae
"$HL7CTL" send -q --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q '^AE RLH000000123$' "$tmp/out"
check "AE: exit 1" $? "$tmp/out"

serve wrongid
"$HL7CTL" send -q --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "MSA-2 'OTHER' is not the message's control id 'RLH000000123'" "$tmp/out"
check "AA for another control id: exit 1, says so" $? "$tmp/out"

serve commit
"$HL7CTL" send -q --port "$P2" "$msg" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q '^COMMIT-ACK$' "$tmp/out" && grep -q 'commit ACK without an HL7 ACK' "$tmp/out"
check "a commit ACK and no HL7 ACK: reported, exit 0" $? "$tmp/out"

serve once
"$HL7CTL" send -q --port "$P2" "$msg" "$SAMPLES/adt_a03.hl7" "$SAMPLES/oru_r01.hl7" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^AA ' "$tmp/out")" -eq 3 ] && grep -q 'on a new connection' "$tmp/out"
check "the server closes after each message: the next goes on a new connection" $? "$tmp/out"
