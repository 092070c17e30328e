#!/bin/sh
# objections.sh: the objections register with the real daemon: a research
# route filtered by `not objected(PID-3, 'research')` next to a direct-care
# route without the filter. An objector (from the file) never reaches
# research but reaches direct care; an objection added through the API
# (and one removed) takes effect for the next message without a restart;
# the audit names the token owner; the change survives a restart; a bad
# objections file at SIGHUP leaves the running register in place; hl7ctl
# objection add/remove/list. Prints "PASS objections: ..." lines.
suite=objections
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
TOKEN=0123456789abcdef0123456789abcdef

ports 2
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
tokens=$tmp/admin.token
base="http://127.0.0.1:$P2"
printf 'ig-officer %s\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"
mkdir -p "$tmp/research" "$tmp/direct"
printf 'nhs_number,purpose\n999 000 0018,research\n' >"$tmp/objections.csv"

cat >"$conf" <<EOF
broker = { data_dir = "$data"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
objections = { file = "$tmp/objections.csv"; };
sources = ( $(mllp_source pas "$P1") );
destinations = (
  { name = "research"; type = "file"; directory = "$tmp/research"; },
  { name = "direct"; type = "file"; directory = "$tmp/direct"; }
);
routes = (
  { name = "research"; from = [ "pas" ]; when = "not objected(PID-3, 'research')";
    to = [ "research" ]; },
  { name = "direct"; from = [ "pas" ]; to = [ "direct" ]; }
);
EOF

export HL7BROKER_URL="$base" HL7BROKER_TOKEN="$TOKEN"
get() { code=$($HTTP GET "$base$1" "$tmp/body" "$TOKEN" 2>"$tmp/http.err") || code=none; }
post() { code=$($HTTP POST "$base$1" "$tmp/body" "$TOKEN" 2>"$tmp/http.err") || code=none; }
del() { code=$($HTTP DELETE "$base$1" "$tmp/body" "$TOKEN" 2>"$tmp/http.err") || code=none; }
ctl() { "$HL7CTL" "$@" >"$tmp/ctl.out" 2>"$tmp/ctl.err"; rc=$?; }

# msg SAMPLE ID: the sample with MSH-10 set to ID, as $tmp/ID.hl7
msg() {
    $PY -c '
import sys
raw = open(sys.argv[1], "rb").read()
segs = raw.split(b"\r")
f = segs[0].split(b"|")
f[9] = sys.argv[2].encode()
segs[0] = b"|".join(f)
open(sys.argv[3], "wb").write(b"\r".join(segs))' "$SAMPLES/$1" "$2" "$tmp/$2.hl7"
}
# send SAMPLE ID: send it (AA expected)
send() {
    msg "$1" "$2"
    "$HL7CTL" send -q "127.0.0.1:$P1" "$tmp/$2.hl7" >"$tmp/send.out" 2>&1
}
# arrived DIR ID: a file in DIR holds the control id (waits up to 5 s)
arrived() {
    n=0
    while [ "$n" -lt 50 ]; do
        grep -rlq -- "|$2|" "$1" 2>/dev/null && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}
# absent DIR ID: no file in DIR holds it
absent() { ! grep -rlq -- "|$2|" "$1" 2>/dev/null; }

if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts" "$log"
    exit 1
fi

# 9990000018 objected to research in the file; 9990000026 did not.
send adt_a01.hl7 OBJ-1
send adt_a08_escapes.hl7 OK-1
arrived "$tmp/direct" OBJ-1 && arrived "$tmp/research" OK-1 && absent "$tmp/research" OBJ-1
check "an objector (file) reaches direct care, never research; others reach both" $? "$log"

# Added through the API: the next message about 9990000026 stays out.
post "/api/v1/objections?nhs_number=9990000026&purpose=research"
[ "$code" = 200 ] && grep -q '"changed": *true' "$tmp/body"
check "POST /api/v1/objections: 200, changed" $? "$tmp/body"
send adt_a08_escapes.hl7 OBJ-2
arrived "$tmp/direct" OBJ-2 && absent "$tmp/research" OBJ-2
check "an objection added at run time holds for the next message (no restart)" $? "$log"

# Removed through the API (the file's entry): 9990000018 reaches research.
del "/api/v1/objections?nhs_number=9990000018&purpose=research"
[ "$code" = 200 ]
check "DELETE /api/v1/objections: 200" $? "$tmp/body"
send adt_a01.hl7 OK-2
arrived "$tmp/research" OK-2
check "an objection removed at run time: the next message reaches research" $? "$log"

post "/api/v1/objections?nhs_number=9990000019&purpose=research"
[ "$code" = 400 ] && grep -q 'check digit is wrong' "$tmp/body"
check "POST with a bad NHS number: 400 naming the check digit" $? "$tmp/body"
post "/api/v1/objections?nhs_number=9990000026&purpose=Research!"
[ "$code" = 400 ]
check "POST with a bad purpose: 400" $? "$tmp/body"

get "/api/v1/objections?purpose=research"
[ "$code" = 200 ] && $PY -c '
import json, sys
j = json.load(open(sys.argv[1]))
got = [(x["nhs_number"], x["source"]) for x in j["items"]]
assert got == [("9990000026", "api")], got
' "$tmp/body" 2>"$tmp/py.err"
check "GET /api/v1/objections?purpose=research: the register in force" $? "$tmp/py.err"

get "/api/v1/audit?limit=100"
[ "$code" = 200 ] && $PY -c '
import json, sys
items = json.load(open(sys.argv[1]))["items"]
add = [x for x in items if x["action"] == "objection_add" and x["outcome"] == "ok"]
rem = [x for x in items if x["action"] == "objection_remove" and x["outcome"] == "ok"]
assert any(x["subject"] == "nhs_number=9990000026 purpose=research" and
           x["actor"].startswith("admin=ig-officer ") for x in add), add
assert any(x["subject"] == "nhs_number=9990000018 purpose=research" for x in rem), rem
' "$tmp/body" 2>"$tmp/py.err"
check "the audit records each change naming the token owner" $? "$tmp/py.err"

# hl7ctl
ctl objection add 9990000034 direct_care
[ "$rc" = 0 ]
check "hl7ctl objection add: exit 0" $? "$tmp/ctl.err"
ctl objection list
[ "$rc" = 0 ] && grep -q '9990000034 *direct_care' "$tmp/ctl.out" && grep -q '9990000026 *research' "$tmp/ctl.out"
check "hl7ctl objection list shows both" $? "$tmp/ctl.out"
ctl objection remove 9990000034 direct_care
[ "$rc" = 0 ]
check "hl7ctl objection remove: exit 0" $? "$tmp/ctl.err"
ctl objection add 123 research
[ "$rc" = 2 ]
check "hl7ctl objection add with a bad number: exit 2" $? "$tmp/ctl.err"

# A bad file at SIGHUP: refused, the running register stays.
printf 'nhs_number,purpose\n9990000018,research\nnot-a-number,research\n' >"$tmp/objections.csv"
from=$(($(lines "$log") + 1))
kill -HUP "$dpid"
wait_for "$log" "$from" 'reload refused' 10 && grep -q "objections.csv:3: not a valid NHS number" "$log"
check "SIGHUP with a bad objections file: refused naming file:line" $? "$log"
send adt_a08_escapes.hl7 OBJ-3
arrived "$tmp/direct" OBJ-3 && absent "$tmp/research" OBJ-3
check "after the refused reload the register still holds" $? "$log"

# Restart: run-time changes are kept in the store.
printf '9990000050,research\n' >"$tmp/objections.csv"
stop "$dpid" TERM 10
if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts again" "$log"
    exit 1
fi
send adt_a08_escapes.hl7 OBJ-4
send adt_a01.hl7 OK-3
arrived "$tmp/direct" OBJ-4 && arrived "$tmp/research" OK-3 && absent "$tmp/research" OBJ-4
check "after a restart the run-time changes still hold" $? "$log"
stop "$dpid" TERM 10
check "hl7brokerd stops cleanly" "$rc" "$log"
