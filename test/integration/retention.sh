#!/bin/sh
# retention.sh: the pruner under the real daemon. With delivered_seconds
# and errors_seconds of 2 and a run every second, messages delivered to
# the file destination go with their payloads and indexes, the refused
# one goes from the error store, the one still queued for a paused
# destination stays, every pruning run leaves an audit record, and the
# chain verifies. Prints "PASS retention: ..." / "FAIL retention: ...".
suite=retention
. test/integration/lib/ingest.sh

ports 1
data=$tmp/data
out=$tmp/out.d
mkdir -p "$out"
conf=$tmp/broker.conf
log=$tmp/broker.log
cat >"$conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
retention = { delivered_seconds = 2; errors_seconds = 2; interval_seconds = 1; };
sources = ( $(mllp_source pas "$P1") );
destinations = (
  { name = "files"; type = "file"; directory = "$out"; },
  { name = "held"; type = "file"; directory = "$out"; paused = true; }
);
routes = (
  { name = "all"; from = [ "pas" ]; to = [ "files" ]; },
  { name = "hold"; from = [ "pas" ]; when = "MSH-10 = 'HOLD1'"; to = [ "held" ]; }
);
EOF
if ! start_daemon "$conf" "$log" "$P1"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi

entries() { mdb_stat -s "$1" "$data" 2>/dev/null | sed -n 's/^ *Entries: //p'; }

"$LOAD" --port "$P1" --connections 1 --messages 20 --id-prefix RET --quiet >"$tmp/load" 2>&1
sed 's/|RLH000000123|/|HOLD1|/' "$SAMPLES/adt_a01.hl7" >"$tmp/hold.hl7"
"$HL7CTL" send --port "$P1" "$tmp/hold.hl7" >"$tmp/send" 2>&1
printf 'not HL7 at all\r' >"$tmp/junk"
$PEER frame "$P1" "$tmp/junk" "$tmp/junk.ack" >/dev/null 2>&1
[ "$(entries messages)" -eq 21 ] && [ "$(entries errors)" -eq 1 ] &&
    [ "$(entries by_patient)" -ge 1 ] && [ "$(entries dedup)" -eq 21 ]
check "21 messages and 1 refusal stored" $? "$tmp/load"

# every message delivered to files; HOLD1 stays queued for the paused one
n=0
while [ $n -lt 150 ] && [ "$(ls "$out" | wc -l)" -lt 21 ]; do sleep 0.1; n=$((n + 1)); done
[ "$(ls "$out" | wc -l)" -eq 21 ] && [ "$(entries outbox)" -eq 1 ]
check "21 files delivered, one entry still queued for the paused destination" $? "$log"

# within a few seconds the pruner runs: one message left
n=0
while [ $n -lt 150 ] && { [ "$(entries messages)" -ne 1 ] || [ "$(entries errors)" -ne 0 ]; }; do
    sleep 0.1
    n=$((n + 1))
done
msgs=$(entries messages) errs=$(entries errors) pay=$(entries payloads)
ded=$(entries dedup) pat=$(entries by_patient) ob=$(entries outbox)
echo "messages=$msgs errors=$errs payloads=$pay dedup=$ded by_patient=$pat outbox=$ob" >"$tmp/counts"
[ "$msgs" -eq 1 ] && [ "$errs" -eq 0 ] && [ "$pay" -eq 2 ] && [ "$ded" -eq 1 ] &&
    [ "$pat" -le 1 ] && [ "$ob" -eq 1 ]
check "pruned: delivered messages, their payloads, dedup and by_patient entries, the refusal; the queued one kept ($(cat "$tmp/counts"))" $? "$tmp/counts"

"$HL7CTL" audit tail --data-dir "$data" -n 0 --json >"$tmp/json" 2>&1
$PY - "$tmp/json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = [x for x in r if x["action"] == "prune"]
assert p and all(x["actor"] == "retention" for x in p), r
# a run may fall between the messages and the refusal: count over runs
def total(k):
    return sum(int(w.split("=")[1]) for x in p for w in x["details"].split() if w.startswith(k + "="))
assert total("messages") == 20 and total("errors") == 1, p
assert len([x for x in r if x["action"] == "accept"]) == 21, r
PY
check "an audit record per pruning run (messages=20 errors=1 in all); the 21 accept records kept" $? "$tmp/json"

"$HL7CTL" audit verify --data-dir "$data" >"$tmp/v" 2>&1
check "the audit chain verifies after pruning" $? "$tmp/v"

awk '/component=retention msg="pruning done"/ {
         for (i = 1; i <= NF; i++) { split($i, kv, "="); t[kv[1]] += kv[2] } }
     END { exit !(t["messages"] == 20 && t["payloads"] == 20 && t["errors"] == 1) }' "$log"
check "the daemon logs the run" $? "$log"

# later runs that find nothing write no audit record
before=$(entries audit)
sleep 2.5
[ "$(entries audit)" -eq "$before" ]
check "runs that remove nothing leave no audit record" $? "$log"

stop "$dpid" TERM 10
check "the daemon stops cleanly (exit $rc)" "$rc" "$log"
