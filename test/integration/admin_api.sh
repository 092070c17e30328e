#!/bin/sh
# admin_api.sh: the admin JSON API and the hl7ctl online commands against
# the real daemon: tokens (401, exit 4), an unreachable broker (exit 3),
# bad parameters (400), unknown ids and destinations (404), queue and
# dead-letter listing with paging, search by NHS number, control id, type
# and time range, show (raw bytes exact, deliveries), replay to one
# destination (the subscriber receives it again), dead letters requeued
# and purged, pause and resume, reload, and the audit records naming the
# token owner. Prints "PASS admin_api: ..." / "FAIL admin_api: ...".
suite=admin_api
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
TOKEN=0123456789abcdef0123456789abcdef

ports 4
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
tokens=$tmp/admin.token
base="http://127.0.0.1:$P2"
printf '# admin tokens\nops-alice %s\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"

# write_conf EXTRA_DEST: hie (MLLP subscriber on P3), files, dead (MLLP to
# P4, one attempt: nothing listens there, so every message dies at once)
write_conf() {
    cat >"$conf" <<EOF
broker = { data_dir = "$data"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
sources = ( $(mllp_source pas "$P1") );
destinations = (
  { name = "hie"; type = "mllp"; connect = "127.0.0.1:$P3"; ack_timeout_ms = 2000;
    retry = { initial_ms = 20; max_ms = 200; max_attempts = 0; }; },
  { name = "files"; type = "file"; directory = "$tmp/out"; },
  { name = "dead"; type = "mllp"; connect = "127.0.0.1:$P4"; ack_timeout_ms = 1000;
    retry = { initial_ms = 20; max_ms = 50; max_attempts = 1; }; }
  $1
);
routes = ( { name = "all"; from = [ "pas" ]; to = [ "hie", "files", "dead" ]; } );
EOF
}
write_conf ""

export HL7BROKER_URL="$base" HL7BROKER_TOKEN="$TOKEN"
CTL="$HL7CTL"

# get PATH / post PATH: status in $code, body in $tmp/body
get() { code=$($HTTP GET "$base$1" "$tmp/body" "${2:-$TOKEN}" 2>"$tmp/http.err") || code=none; }
post() { code=$($HTTP POST "$base$1" "$tmp/body" "${2:-$TOKEN}" 2>"$tmp/http.err") || code=none; }
# js EXPR: a Python expression over j (the last body) is true
js() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/body" "$1" 2>>"$tmp/py.err"; }
# ctl ARGS...: hl7ctl, stdout in $tmp/ctl.out, stderr in $tmp/ctl.err, status in $rc
ctl() { "$CTL" "$@" >"$tmp/ctl.out" 2>"$tmp/ctl.err"; rc=$?; }

receive() {
    : >"$tmp/recv.out"
    $PEER receive "$P3" "$tmp/received" aa >"$tmp/recv.out" 2>&1 &
    rpid=$!
    track $rpid
    wait_for "$tmp/recv.out" 1 '^listening' 10
}
# count_in FILE ID: lines equal to ID
count_in() { grep -cx -- "$2" "$1" 2>/dev/null || true; }

: >"$tmp/received"
receive
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi

# ---------------------------------------------------------- messages in
t0=$(($(date +%s) * 1000))
"$CTL" send -q "127.0.0.1:$P1" "$SAMPLES/adt_a01.hl7" >"$tmp/send1" 2>&1
sleep 1.1
t1=$(($(date +%s) * 1000))
"$LOAD" --port "$P1" --connections 1 --messages 12 --id-prefix LOADA --quiet >"$tmp/load" 2>&1
n_in=$(grep -c . "$tmp/send1")
[ "$n_in" -ge 1 ] && grep -q '^[AC]A' "$tmp/send1"
check "messages in: a sample (AA) and 12 generated" $? "$tmp/send1"

queue_dead_full() { get /api/v1/destinations/dead/dead?limit=1; js 'j["total"] == 13'; }
until_true 15 queue_dead_full
check "dead: 13 dead letters (nothing listens, one attempt)" $? "$tmp/body"
delivered_hie() { [ "$(grep -c . "$tmp/received")" -ge 13 ]; }
until_true 15 delivered_hie
check "hie: the subscriber received all 13" $? "$tmp/received"

# ---------------------------------------------------------- tokens, reachability
get /api/v1/messages wrong-token-wrong-token-wrong
[ "$code" = 401 ]
check "GET /api/v1/messages with a wrong token: 401" $? "$tmp/body"
ctl stats --token wrong-token-wrong-token-wrong
[ "$rc" -eq 4 ] && grep -q '401' "$tmp/ctl.err"
check "hl7ctl stats with a wrong token: exit 4, says 401" $? "$tmp/ctl.err"
ctl stats --url "http://127.0.0.1:$P4"
[ "$rc" -eq 3 ] && grep -q "cannot reach the broker at http://127.0.0.1:$P4" "$tmp/ctl.err"
check "hl7ctl stats with nothing listening: exit 3, names the URL" $? "$tmp/ctl.err"
HL7BROKER_TOKEN= "$CTL" stats >"$tmp/ctl.out" 2>"$tmp/ctl.err"
[ $? -eq 2 ] && grep -q 'no token' "$tmp/ctl.err"
check "hl7ctl stats without a token: exit 2, says so" $? "$tmp/ctl.err"
printf '# x\nops-alice %s\n' "$TOKEN" >"$tmp/tokfile"
HL7BROKER_TOKEN= "$CTL" stats --token-file "$tmp/tokfile" >"$tmp/ctl.out" 2>"$tmp/ctl.err"
[ $? -eq 0 ] && grep -q '^SOURCE ' "$tmp/ctl.out" && grep -q '^pas ' "$tmp/ctl.out" &&
    grep -q '^DESTINATION ' "$tmp/ctl.out"
check "hl7ctl stats --token-file: tables of sources and destinations" $? "$tmp/ctl.out"
ctl stats --json
[ "$rc" -eq 0 ] && $PY -c 'import json,sys; json.load(open(sys.argv[1]))["sources"]' "$tmp/ctl.out"
check "hl7ctl stats --json: the API's JSON" $? "$tmp/ctl.out"
ctl nosuch
[ "$rc" -eq 2 ]
check "hl7ctl with an unknown command: exit 2" $? "$tmp/ctl.err"
"$CTL" --help >"$tmp/help" 2>&1
ok=1
for c in parse send route-test check-config stats queues search show replay dead pause resume reload; do
    grep -q "^  $c " "$tmp/help" || { ok=0; echo "# $c missing"; }
done
[ $ok -eq 1 ]
check "hl7ctl --help lists every command" $? "$tmp/help"

# ---------------------------------------------------------- queues and dead letters
get "/api/v1/destinations/dead/dead?limit=5&offset=10"
[ "$code" = 200 ] && js 'j["destination"] == "dead" and j["total"] == 13 and len(j["items"]) == 3 and j["items"][0]["seq"] < j["items"][1]["seq"] and set(j["items"][0]) >= {"seq","msg_id","received_ms","error","control_id","type"} and j["paging"]["next_offset"] is None'
check "GET dead?limit=5&offset=10: the last 3 of 13, in seq order, every field" $? "$tmp/body"
get "/api/v1/destinations/hie/queue"
[ "$code" = 200 ] && js 'j["total"] == 0 and j["items"] == []'
check "GET hie/queue: empty once delivered" $? "$tmp/body"
get "/api/v1/destinations/nowhere/queue"
[ "$code" = 404 ] && js '"nowhere" in j["error"]["message"]'
check "GET an unknown destination's queue: 404 naming it" $? "$tmp/body"
get "/api/v1/destinations/dead/dead?limit=1001"
[ "$code" = 400 ]
check "GET dead?limit=1001: 400 (pages up to 1000)" $? "$tmp/body"
get "/api/v1/destinations/dead/dead?colour=red"
[ "$code" = 400 ]
check "GET dead?colour=red: 400 unknown parameter" $? "$tmp/body"
ctl dead list dead --limit 2
[ "$rc" -eq 0 ] && grep -q '^SEQ  *MSG  *RECEIVED' "$tmp/ctl.out" && [ "$(grep -c 'LOADA\|RLH' "$tmp/ctl.out")" -eq 2 ] &&
    grep -q '^2 of 13 dead letters in dead$' "$tmp/ctl.out"
check "hl7ctl dead list dead --limit 2: a table, 2 of 13" $? "$tmp/ctl.out"
ctl queues
[ "$rc" -eq 0 ] && grep -Eq '^dead +mllp +[a-z]+ +0 +[0-9.]+ +13 ' "$tmp/ctl.out"
check "hl7ctl queues: every destination with its depth and dead letters" $? "$tmp/ctl.out"
ctl queues nowhere
[ "$rc" -eq 1 ] && grep -q '404' "$tmp/ctl.err"
check "hl7ctl queues nowhere: exit 1, 404" $? "$tmp/ctl.err"

# ---------------------------------------------------------- search
get "/api/v1/messages?control_id=RLH000000123"
[ "$code" = 200 ] && js 'j["total"] == 1 and j["items"][0]["control_id"] == "RLH000000123" and j["items"][0]["type"] == "ADT^A01" and j["items"][0]["source"] == "pas" and j["items"][0]["state"] == "routed" and j["items"][0]["received"].endswith("Z") and j["items"][0]["nhs_number"] == "9990000018"'
check "search by control id: the sample, with its fields" $? "$tmp/body"
sample_id=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["id"])' "$tmp/body" 2>/dev/null)
get "/api/v1/messages?nhs_number=9990000018&limit=20"
[ "$code" = 200 ] && js 'j["total"] == 13 and j["items"][-1]["id"] == '"${sample_id:-0}"' and j["items"][0]["control_id"] == "LOADA-1-12"'
check "search by NHS number (the by_patient index): all 13, newest first" $? "$tmp/body"
get "/api/v1/messages?nhs_number=9434765919"
[ "$code" = 200 ] && js 'j["total"] == 0'
check "search by another NHS number: none" $? "$tmp/body"
get "/api/v1/messages?limit=5"
[ "$code" = 200 ] && js 'j["total"] == 13 and len(j["items"]) == 5 and [x["id"] for x in j["items"]] == sorted([x["id"] for x in j["items"]], reverse=True)'
check "search without filters: newest first, paged (5 of 13)" $? "$tmp/body"
get "/api/v1/messages?limit=5&offset=10"
[ "$code" = 200 ] && js 'len(j["items"]) == 3 and j["items"][-1]["id"] == '"${sample_id:-0}"
check "search offset 10: the last 3, the oldest last" $? "$tmp/body"
get "/api/v1/messages?until=$t1"
[ "$code" = 200 ] && js 'j["total"] == 1 and j["items"][0]["id"] == '"${sample_id:-0}"
check "search until (ms): only the message before" $? "$tmp/body"
since_iso=$($PY -c 'import sys,datetime; print(datetime.datetime.fromtimestamp(int(sys.argv[1])/1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]+"Z")' "$t1")
get "/api/v1/messages?since=$since_iso"
[ "$code" = 200 ] && js 'j["total"] == 12'
check "search since (ISO 8601): the 12 after" $? "$tmp/body"
get "/api/v1/messages?type=ADT^A01&source=pas&destination=hie&state=routed&since=$t0"
[ "$code" = 200 ] && js 'j["total"] >= 1 and all(x["type"] == "ADT^A01" for x in j["items"])'
check "search by type, source, destination, state, since" $? "$tmp/body"
get "/api/v1/messages?type=ZZZ"
[ "$code" = 200 ] && js 'j["total"] == 0 and j["items"] == []'
check "search by a type never seen: none" $? "$tmp/body"
get "/api/v1/messages?scan_limit=4"
[ "$code" = 200 ] && js 'j["total"] is None and j["truncated"] and j["scanned"] == 4 and len(j["items"]) == 4'
check "search with scan_limit 4: total null, truncated" $? "$tmp/body"
bad=0
for q in nhs_number=123 "since=yesterday" "until=2024-13-01" "state=happy" "type=adt%5Ea01" "limit=0" "since=2024-02-30T00:00:00Z"; do
    get "/api/v1/messages?$q"
    [ "$code" = 400 ] || { bad=1; echo "# $q: $code"; }
done
[ $bad -eq 0 ]
check "search: bad NHS number, times, state, type, limit: 400 each" $? "$tmp/body"
get "/api/v1/messages?destination=nowhere"
[ "$code" = 404 ]
check "search for an unknown destination: 404" $? "$tmp/body"
ctl search --nhs 9990000018 --limit 20
[ "$rc" -eq 0 ] && grep -q '^ID  *RECEIVED  *SOURCE  *TYPE  *CONTROL_ID  *NHS_NUMBER  *STATE$' "$tmp/ctl.out" &&
    grep -Eq "^ *$sample_id +[0-9T:.Z-]+ +pas +ADT\^A01 +RLH000000123 +9990000018 +routed$" "$tmp/ctl.out"
check "hl7ctl search --nhs: an aligned table" $? "$tmp/ctl.out"
ctl search --type ADT --since "$t1" --limit 3
[ "$rc" -eq 0 ] && grep -q '^3 of 12$' "$tmp/ctl.out"
check "hl7ctl search --type --since --limit: 3 of 12" $? "$tmp/ctl.out"
ctl search --since yesterday
[ "$rc" -eq 2 ] && grep -q '400' "$tmp/ctl.err"
check "hl7ctl search --since yesterday: exit 2, the 400 explained" $? "$tmp/ctl.err"

# ---------------------------------------------------------- show
get "/api/v1/messages/$sample_id"
[ "$code" = 200 ] && $PY -c '
import json, sys
j = json.load(open(sys.argv[1]))
raw = open(sys.argv[2], "rb").read()
assert j["raw"].encode("utf-8") == raw, "raw differs"
assert j["segments"][0]["name"] == "MSH" and j["segments"][0]["fields"][9] == "RLH000000123"
assert [s["name"] for s in j["segments"]][:3] == ["MSH", "EVN", "PID"]
d = {x["destination"]: x for x in j["deliveries"]}
assert d["hie"]["status"] == "delivered" and d["files"]["status"] == "delivered", d
assert d["dead"]["status"] == "dead" and d["dead"]["last_error"], d
assert d["hie"]["payload"].encode("utf-8") == raw
assert j["peer"].startswith("127.0.0.1:") and j["nhs_number"] == "9990000018"
' "$tmp/body" "$SAMPLES/adt_a01.hl7" 2>"$tmp/py.err"
check "GET /api/v1/messages/ID: raw bytes exact, segments, deliveries (delivered, dead)" $? "$tmp/py.err"
get /api/v1/messages/999999
[ "$code" = 404 ]
check "GET an unknown message: 404" $? "$tmp/body"
bad=0
for id in 0 abc -1 99999999999999999999 01; do
    get "/api/v1/messages/$id"
    [ "$code" = 400 ] || { bad=1; echo "# $id: $code"; }
done
[ $bad -eq 0 ]
check "GET /api/v1/messages/{0,abc,-1,huge,01}: 400" $? "$tmp/body"
ctl show "$sample_id" --raw
[ "$rc" -eq 0 ] && cmp -s "$tmp/ctl.out" "$SAMPLES/adt_a01.hl7"
check "hl7ctl show --raw: the bytes exactly as received" $? "$tmp/ctl.out"
ctl show "$sample_id"
[ "$rc" -eq 0 ] && grep -q '^  control_id   RLH000000123$' "$tmp/ctl.out" && grep -q '^  PID|1||9990000018' "$tmp/ctl.out" &&
    grep -Eq '^dead +dead ' "$tmp/ctl.out" && grep -Eq '^hie +delivered ' "$tmp/ctl.out"
check "hl7ctl show: header, segments one a line, deliveries table" $? "$tmp/ctl.out"
ctl show 999999
[ "$rc" -eq 1 ]
check "hl7ctl show of an unknown message: exit 1" $? "$tmp/ctl.err"
ctl show abc
[ "$rc" -eq 2 ]
check "hl7ctl show abc: exit 2" $? "$tmp/ctl.err"

# ---------------------------------------------------------- replay
before=$(count_in "$tmp/received" RLH000000123)
post "/api/v1/messages/$sample_id/replay?to=hie"
[ "$code" = 200 ] && js 'len(j["replayed"]) == 1 and j["replayed"][0]["destination"] == "hie" and j["replayed"][0]["seq"] >= 1'
check "POST replay?to=hie: queued once" $? "$tmp/body"
again() { [ "$(count_in "$tmp/received" RLH000000123)" -gt "$before" ]; }
until_true 10 again
check "replay: the subscriber receives the message again" $? "$tmp/received"
before=$(count_in "$tmp/received" RLH000000123)
ctl replay "$sample_id" --to hie
[ "$rc" -eq 0 ] && grep -q "^message $sample_id queued again for hie (seq [0-9]*)$" "$tmp/ctl.out" && until_true 10 again
check "hl7ctl replay --to hie: queued and received again" $? "$tmp/ctl.err"
post "/api/v1/messages/$sample_id/replay?to=nowhere"
[ "$code" = 404 ]
check "replay to an unknown destination: 404" $? "$tmp/body"
post "/api/v1/messages/999999/replay"
[ "$code" = 404 ]
check "replay of an unknown message: 404" $? "$tmp/body"
get "/api/v1/messages/$sample_id/replay"
[ "$code" = 405 ]
check "GET on replay: 405" $? "$tmp/body"

# ---------------------------------------------------------- dead letters
get "/api/v1/destinations/dead/dead?limit=1"
first=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["seq"])' "$tmp/body")
post "/api/v1/destinations/dead/dead/purge?seq=$first"
[ "$code" = 200 ] && js 'j["purged"] == 1'
check "POST dead/purge?seq=N: one purged" $? "$tmp/body"
post "/api/v1/destinations/dead/dead/purge?seq=$first"
[ "$code" = 404 ]
check "purge the same seq again: 404" $? "$tmp/body"
post "/api/v1/destinations/dead/dead/purge?seq=abc"
[ "$code" = 400 ]
check "purge seq=abc: 400" $? "$tmp/body"
get "/api/v1/destinations/dead/dead?limit=1"
second=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["seq"])' "$tmp/body")
ctl dead purge dead --seq "$second"
[ "$rc" -eq 0 ] && grep -q '^dead: 1 dead letter purged$' "$tmp/ctl.out"
check "hl7ctl dead purge --seq: one purged" $? "$tmp/ctl.err"
get "/api/v1/destinations/dead/dead?limit=1000"
$PY -c 'import json,sys; print("\n".join(x["control_id"] for x in json.load(open(sys.argv[1]))["items"]))' "$tmp/body" >"$tmp/dead_order"
[ "$(lines "$tmp/dead_order")" -eq 11 ]
check "11 dead letters left" $? "$tmp/dead_order"
# a subscriber for "dead" now, then requeue all: delivered in the original order
$PEER receive "$P4" "$tmp/received4" aa >"$tmp/recv4.out" 2>&1 &
track $!
wait_for "$tmp/recv4.out" 1 '^listening' 10
: >"$tmp/received4"
ctl dead requeue dead
[ "$rc" -eq 0 ] && grep -q '^dead: 11 dead letters requeued$' "$tmp/ctl.out"
check "hl7ctl dead requeue dead: 11 requeued" $? "$tmp/ctl.out"
got4() { [ "$(grep -c . "$tmp/received4")" -ge 11 ]; }
until_true 15 got4 && cmp -s "$tmp/received4" "$tmp/dead_order"
check "requeued dead letters delivered, in their original order" $? "$tmp/received4"
get "/api/v1/destinations/dead/dead"
[ "$code" = 200 ] && js 'j["total"] == 0'
check "no dead letters left" $? "$tmp/body"
post "/api/v1/destinations/dead/dead/requeue?seq=1"
[ "$code" = 404 ]
check "requeue a seq that is not a dead letter: 404" $? "$tmp/body"
post "/api/v1/destinations/nowhere/dead/requeue"
[ "$code" = 404 ]
check "requeue for an unknown destination: 404" $? "$tmp/body"

# ---------------------------------------------------------- pause and resume
ctl pause hie
[ "$rc" -eq 0 ] && grep -q '^hie: paused$' "$tmp/ctl.out"
check "hl7ctl pause hie" $? "$tmp/ctl.out"
get /api/v1/destinations/hie
js 'j["paused"] is True'
check "hie shows paused" $? "$tmp/body"
n_before=$(grep -c . "$tmp/received")
"$LOAD" --port "$P1" --connections 1 --messages 5 --id-prefix PAUSED --quiet >"$tmp/load" 2>&1
queued5() { get /api/v1/destinations/hie/queue; js 'j["total"] == 5'; }
until_true 10 queued5 && [ "$(grep -c PAUSED "$tmp/received")" -eq 0 ]
check "while paused the queue grows (5) and nothing is sent" $? "$tmp/body"
post /api/v1/destinations/hie/resume
[ "$code" = 200 ] && js 'j == {"destination": "hie", "paused": False}'
check "POST resume: {destination, paused false}" $? "$tmp/body"
drained() { get /api/v1/destinations/hie/queue; js 'j["total"] == 0' && [ "$(grep -c PAUSED "$tmp/received")" -eq 5 ]; }
until_true 10 drained
check "after resume the queue drains to the subscriber" $? "$tmp/received"
post /api/v1/destinations/hie/pause
[ "$code" = 200 ] && js 'j == {"destination": "hie", "paused": True}'
check "POST pause: {destination, paused true}" $? "$tmp/body"
ctl resume hie
[ "$rc" -eq 0 ]
check "hl7ctl resume hie" $? "$tmp/ctl.err"
ctl pause nowhere
[ "$rc" -eq 1 ] && grep -q 'nowhere' "$tmp/ctl.err"
check "hl7ctl pause nowhere: exit 1, named" $? "$tmp/ctl.err"

# ---------------------------------------------------------- reload
write_conf ', { name = "extra"; type = "file"; directory = "'"$tmp/extra"'"; }'
post /api/v1/reload
[ "$code" = 200 ] && js 'j == {"reloaded": True}'
check "POST /api/v1/reload: reloaded" $? "$tmp/body"
get /api/v1/destinations/extra
[ "$code" = 200 ]
check "the reloaded config runs (a new destination)" $? "$tmp/body"
grep -q 'msg=reloading file=.* trigger=admin-api' "$log"
check "the reload is logged as from the API" $? "$log"
cp "$conf" "$tmp/good.conf"
printf 'this is { not a config\n' >>"$conf"
post /api/v1/reload
[ "$code" = 400 ] && js 'j["reloaded"] is False and len(j["errors"]) >= 1 and j["error"]["code"] == "bad_config"'
check "POST /api/v1/reload with a bad file: 400 with the errors" $? "$tmp/body"
ctl reload
[ "$rc" -eq 2 ] && grep -q 'not valid' "$tmp/ctl.err"
check "hl7ctl reload with a bad file: exit 2, the errors printed" $? "$tmp/ctl.err"
get /api/v1/destinations/extra
[ "$code" = 200 ]
check "after a refused reload the running config stays" $? "$tmp/body"
ctl check-config "$conf"
[ "$rc" -eq 1 ] && grep -q 'error' "$tmp/ctl.err"
check "hl7ctl check-config on the bad file: exit 1, the errors" $? "$tmp/ctl.err"
ctl check-config "$tmp/good.conf"
[ "$rc" -eq 0 ] && grep -q "OK (sources=1 destinations=4 routes=1" "$tmp/ctl.out"
check "hl7ctl check-config on a good file: OK with counts" $? "$tmp/ctl.out"
cp "$tmp/good.conf" "$conf"
ctl reload
[ "$rc" -eq 0 ] && grep -q '^config reloaded$' "$tmp/ctl.out"
check "hl7ctl reload" $? "$tmp/ctl.err"

# ---------------------------------------------------------- audit
get "/api/v1/audit?limit=1000"
[ "$code" = 200 ] && $PY -c '
import json, sys
items = json.load(open(sys.argv[1]))["items"]
seqs = [x["seq"] for x in items]
assert seqs == sorted(seqs), "newest last"
mine = [x for x in items if x["actor"].startswith("admin=ops-alice peer=127.0.0.1:")]
acts = {}
for x in mine:
    acts.setdefault(x["action"], []).append(x)
for a in ("read", "search", "replay", "purge", "requeue", "pause", "resume", "reload"):
    assert a in acts, "no %s record" % a
sid = sys.argv[2]
assert any(x["subject"] == "msg=" + sid and x["outcome"] == "ok" for x in acts["read"])
assert any(x["subject"] == "msg=" + sid and "to=hie" in x["details"] for x in acts["replay"])
assert any("nhs_number=9990000018" in x["details"] for x in acts["search"])
assert any(x["outcome"] == "refused" for x in acts["reload"])
assert any(x["subject"] == "destination=dead" and "count=11" in x["details"] for x in acts["requeue"])
assert all(x["time"].endswith("Z") for x in items)
' "$tmp/body" "$sample_id" 2>"$tmp/py.err"
check "GET /api/v1/audit: reads and changes recorded, naming ops-alice" $? "$tmp/py.err"
get "/api/v1/audit?limit=2"
[ "$code" = 200 ] && js 'len(j["items"]) == 2'
check "GET /api/v1/audit?limit=2: two records" $? "$tmp/body"
get "/api/v1/audit?limit=0"
[ "$code" = 400 ]
check "GET /api/v1/audit?limit=0: 400" $? "$tmp/body"
mdb_dump -p -s audit "$data" 2>/dev/null | grep -q 'admin=ops-alice peer=127.0.0.1:'
check "the audit records are in the store (mdb_dump)" $? "$tmp/body"

stop "$dpid" TERM 10
[ "$rc" -eq 0 ]
check "the broker stops cleanly" $? "$log"
