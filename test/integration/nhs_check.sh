#!/bin/sh
# nhs_check.sh: sources[].check_nhs_number against the real hl7brokerd. A
# source with the check on answers a message whose NHS number fails the
# modulus 11 check digit with AE (CE in enhanced mode) and an ERR at
# PID^1^3^<repetition>, code 102, saying the expected and the given digit;
# keeps it in the error store (not in messages), audits the refusal, and
# counts it in hl7broker_source_messages_refused_total{reason="nhs_number"}
# and /api/v1/stats. Valid numbers pass; a source without the check
# accepts the same message.
# Prints "PASS nhs-check: ..." / "FAIL nhs-check: ...".
suite=nhs-check
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
PROM="$PY test/integration/lib/promparse.py"
TOKEN=0123456789abcdef0123456789abcdef
BAD=test/data/nhs/v27_bad_check_digit.hl7   # v27_truncation.hl7, 9990000115 -> ...116

ports 3
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
printf 'ops %s\n' "$TOKEN" >"$tmp/admin.token"
chmod 600 "$tmp/admin.token"
cat >"$conf" <<EOF
broker = { data_dir = "$data"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P3"; token_file = "$tmp/admin.token"; }; };
sources = ( $(mllp_source checked "$P1" "check_nhs_number = true;"),
            $(mllp_source unchecked "$P2") );
EOF
if ! start_daemon "$conf" "$log" "$P1" "$P2" "$P3"; then
    fail "hl7brokerd starts with a source that checks NHS numbers" "$log"
    exit 1
fi
pass "hl7brokerd starts with a source that checks NHS numbers"

# send PORT FILE: hl7ctl send --raw, the ACK one segment per line in $tmp/out
send() {
    "$HL7CTL" send --raw --port "$1" "$2" >"$tmp/out" 2>&1
    rc=$?
    got=$(ack_fields "$tmp/out")
}
# err_field N: field N of the ERR segment in $tmp/out
err_field() { awk -F'|' -v n="$(($1 + 1))" '/^ERR/ { print $n; exit }' "$tmp/out"; }

# ------------------------------------------------------------- the checks
send "$P1" "$BAD"
[ $rc -eq 1 ] && [ "$got" = "AE LNWH-31-BADNHS" ] &&
    [ "$(err_field 2)" = "PID^1^3^1" ] &&
    [ "$(err_field 3)" = "102^Data type error^HL70357" ] &&
    [ "$(err_field 7)" = "byte offset 113" ] &&
    [ "$(err_field 8)" = "NHS number '9990000116' in PID-3 fails the modulus 11 check: check digit expected 5, got 6" ]
check "a failing check digit: AE, ERR-2 PID^1^3^1, ERR-3 102, ERR-8 says expected 5, got 6" $? "$tmp/out"

send "$P1" "$SAMPLES/v27_truncation.hl7"
[ $rc -eq 0 ] && [ "$got" = "AA LNWH-31-0007" ]
check "the same message with its valid NHS number (9990000115): AA" $? "$tmp/out"

send "$P1" "$SAMPLES/adt_a01.hl7"
[ $rc -eq 0 ] && [ "$got" = "CA RLH000000123" ]
check "adt_a01.hl7 (9990000018, valid): CA" $? "$tmp/out"

# before v2.5 the location is in ERR-1; MSH-15 is set, so CE
send "$P1" "$SAMPLES/bad/bad_nhs_number.hl7"
[ $rc -eq 1 ] && [ "$got" = "CE RLH-BAD-2" ] &&
    [ "$(err_field 1)" = "PID^1^3^102&Data type error&HL70357" ] &&
    grep -q "^MSA|CE|RLH-BAD-2|NHS number '9990000019' in PID-3 fails the modulus 11 check: check digit expected 8, got 9" "$tmp/out"
check "bad/bad_nhs_number.hl7 (v2.4, enhanced): CE, ERR-1 PID^1^3^102, MSA-3 the text" $? "$tmp/out"

send "$P2" "$BAD"
[ $rc -eq 0 ] && [ "$got" = "AA LNWH-31-BADNHS" ]
check "a source without check_nhs_number accepts the failing number: AA" $? "$tmp/out"

# --------------------------------------------------------- metrics, stats
$HTTP GET "http://127.0.0.1:$P3/metrics" "$tmp/metrics" >/dev/null 2>&1
v() { $PROM value "$tmp/metrics" "$@"; }
$PROM check "$tmp/metrics" >"$tmp/prom.out" 2>&1 &&
    [ "$(v hl7broker_source_messages_refused_total source=checked reason=nhs_number)" = 2 ] &&
    [ "$(v hl7broker_source_messages_refused_total source=unchecked reason=nhs_number)" = 0 ] &&
    [ "$(v hl7broker_source_messages_refused_total source=checked reason=not_hl7)" = 0 ] &&
    [ "$(v hl7broker_source_messages_accepted_total source=checked)" = 2 ] &&
    grep -q '^# HELP hl7broker_source_messages_refused_total .*nhs_number' "$tmp/metrics"
check "/metrics: refused_total{source=\"checked\",reason=\"nhs_number\"} 2, unchecked 0" $? "$tmp/metrics"

code=$($HTTP GET "http://127.0.0.1:$P3/api/v1/stats" "$tmp/stats" "$TOKEN" 2>/dev/null)
[ "$code" = 200 ] && $PY - "$tmp/stats" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
src = {s["name"]: s["counters"] for s in j["sources"]}
assert src["checked"]["refused_by_reason"]["nhs_number"] == 2, src["checked"]
assert src["unchecked"]["refused_by_reason"]["nhs_number"] == 0, src["unchecked"]
EOF
check "GET /api/v1/stats: refused_by_reason.nhs_number 2 for the checking source" $? "$tmp/stats"

# ------------------------------------------------- error store, store, audit
$PEER store-errors "$data" >"$tmp/errors" 2>&1
grep -q "^checked AE NHS number '9990000116' in PID-3 fails the modulus 11 check: check digit expected 5, got 6\$" "$tmp/errors" &&
    grep -q "^checked CE NHS number '9990000019'" "$tmp/errors" &&
    [ "$(lines "$tmp/errors")" = 2 ]
check "the error store keeps both refusals with their ACK code and reason" $? "$tmp/errors"

$PEER store-ids "$data" >"$tmp/stored" 2>&1
grep -q '^unchecked LNWH-31-BADNHS' "$tmp/stored" && ! grep -q '^checked LNWH-31-BADNHS' "$tmp/stored" &&
    grep -q '^checked LNWH-31-0007' "$tmp/stored"
check "stored from the unchecking source only; the valid one stored" $? "$tmp/stored"

"$HL7CTL" audit tail --data-dir "$data" -n 0 >"$tmp/audit" 2>&1
grep -q "refuse .*AE .*source=checked .*check digit expected 5, got 6" "$tmp/audit" &&
    grep -q "refuse .*CE .*source=checked .*check digit expected 8, got 9" "$tmp/audit"
check "hl7ctl audit tail: each refusal audited (AE, CE) with the reason" $? "$tmp/audit"

if stop "$dpid" TERM 10 && [ "$rc" -eq 0 ]; then pass "SIGTERM: exit 0"
else fail "SIGTERM: exit 0 (rc=$rc)" "$log"; fi
