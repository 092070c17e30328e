#!/bin/sh
# audit.sh: the audit trail end to end. Messages accepted and refused by
# the real daemon each leave an audit record; `hl7ctl audit verify` finds
# the chain intact (beside the running daemon too, read-only); `hl7ctl
# audit tail` prints the last records as a table and as JSON. Then the
# store is edited with the LMDB tools: one byte of one record changed,
# then one record deleted; verify names exactly that record and why.
# Prints "PASS audit: ..." / "FAIL audit: ...".
suite=audit
. test/integration/lib/ingest.sh

ports 1
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
write_conf "$conf" "$data" "$(mllp_source pas "$P1")"
if ! start_daemon "$conf" "$log" "$P1"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi

# five messages, then one that is refused (not HL7)
"$LOAD" --port "$P1" --connections 1 --messages 5 --id-prefix AUD --quiet >"$tmp/load" 2>&1
printf 'this is not HL7\r' >"$tmp/junk"
$PEER frame "$P1" "$tmp/junk" "$tmp/junk.ack" >/dev/null 2>&1
grep -q 'MSA|AR' "$tmp/junk.ack" 2>/dev/null
check "five messages accepted and one refused" $? "$tmp/load"

"$HL7CTL" audit verify --data-dir "$data" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q 'audit chain intact: 6 records, head 6' "$tmp/out"
check "verify beside the running daemon: intact, 6 records (exit $rc)" $? "$tmp/out"

"$HL7CTL" audit tail -c "$conf" -n 3 >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(lines "$tmp/out")" -eq 4 ] && head -n 1 "$tmp/out" | grep -q '^SEQ' &&
    sed -n 2p "$tmp/out" | grep -q '^4 .* accept .*msg=4 .*source=pas peer=127.0.0.1:' &&
    sed -n 4p "$tmp/out" | grep -q '^6 .* refuse .*error=1 .*AR .*reason='
check "tail -n 3 from the config's data_dir: a header and records 4 to 6" $? "$tmp/out"

"$HL7CTL" audit tail --data-dir "$data" -n 2 --json >"$tmp/json" 2>&1
$PY - "$tmp/json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert [x["seq"] for x in r] == [5, 6], r
assert r[1]["action"] == "refuse" and r[1]["outcome"] == "AR", r
assert r[0]["action"] == "accept" and r[0]["subject"] == "msg=5", r
assert r[0]["actor"].startswith("source=pas peer=127.0.0.1:"), r
assert len(r[0]["hash"]) == 64 and r[0]["time"].endswith("Z"), r
PY
check "tail --json: seq, time, actor, action, subject, outcome, details, hash" $? "$tmp/json"

stop "$dpid" TERM 10
"$HL7CTL" audit verify -c "$conf" >"$tmp/out" 2>&1
check "verify after the daemon stopped: exit 0" $? "$tmp/out"

# ---------------------------------------------------------------- tampering
mdb_dump -s audit "$data" >"$tmp/audit.dump"
# record 3's value: one hex digit inside its actor text changed
awk 'prev == " 0000000000000003" { c = substr($0, 41, 1); n = (c == "0") ? "1" : "0";
                                  $0 = substr($0, 1, 40) n substr($0, 42) }
     { print; prev = $0 }' "$tmp/audit.dump" >"$tmp/audit.bad"
if cmp -s "$tmp/audit.dump" "$tmp/audit.bad"; then
    fail "the edit changed the dump" "$tmp/audit.dump"
fi
mdb_load -s audit -f "$tmp/audit.bad" "$data" 2>"$tmp/load.err"
"$HL7CTL" audit verify --data-dir "$data" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q 'BROKEN at record 3: record 3: content hash mismatch' "$tmp/out" &&
    grep -q 'records 1 to 2 hold' "$tmp/out"
check "one byte of record 3 changed with mdb_load: verify exits 1 naming record 3 (exit $rc)" $? "$tmp/out"

"$HL7CTL" audit verify --data-dir "$data" --json >"$tmp/json" 2>&1
$PY -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["intact"] is False and r["broken_seq"] == 3 and r["fault"] == "content_hash_mismatch" and r["checked"] == 2, r' "$tmp/json"
check "verify --json: broken_seq 3, content_hash_mismatch" $? "$tmp/json"

mdb_load -s audit -f "$tmp/audit.dump" "$data" 2>>"$tmp/load.err"
"$HL7CTL" audit verify --data-dir "$data" >"$tmp/out" 2>&1
check "the byte put back: intact again" $? "$tmp/out"

# record 2 deleted: the LMDB tools cannot delete, so the whole store is
# dumped, record 2 left out of its audit part, and loaded into a new one
mdb_dump -a "$data" >"$tmp/all.dump"
awk '/^database=/ { db = substr($0, 10) }
     db == "audit" && $0 == " 0000000000000002" { skip = 2 }
     skip > 0 { skip--; next }
     { print }' "$tmp/all.dump" >"$tmp/all.gap"
mkdir "$tmp/gap"
mdb_load -f "$tmp/all.gap" "$tmp/gap" 2>>"$tmp/load.err"
"$HL7CTL" audit verify --data-dir "$tmp/gap" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q 'BROKEN at record 2: record 2 is missing (the next present is 3)' "$tmp/out"
check "record 2 deleted: verify exits 1, record 2 missing (exit $rc)" $? "$tmp/out"

# the last record deleted: the head in meta still names it
awk '/^database=/ { db = substr($0, 10) }
     db == "audit" && $0 == " 0000000000000006" { skip = 2 }
     skip > 0 { skip--; next }
     { print }' "$tmp/all.dump" >"$tmp/all.end"
mkdir "$tmp/end"
mdb_load -f "$tmp/all.end" "$tmp/end" 2>>"$tmp/load.err"
"$HL7CTL" audit verify --data-dir "$tmp/end" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q 'BROKEN at record 6: records 6 to 6 are missing' "$tmp/out"
check "the last record deleted: found through the head in meta (exit $rc)" $? "$tmp/out"

# ---------------------------------------------------------------- usage
"$HL7CTL" audit verify --data-dir "$tmp/nonexistent" >"$tmp/out" 2>&1
rc1=$?
"$HL7CTL" audit frob >>"$tmp/out" 2>&1
rc2=$?
"$HL7CTL" audit tail --data-dir "$data" -n -1 >>"$tmp/out" 2>&1
rc3=$?
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] && grep -q "$tmp/nonexistent" "$tmp/out"
check "no store, unknown subcommand, bad -n: exit 2 ($rc1 $rc2 $rc3)" $? "$tmp/out"
