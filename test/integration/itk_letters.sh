#!/bin/sh
# itk_letters.sh: the whole discharge letter flow through one real
# hl7brokerd, with curl, hl7ctl send, an MLLP subscriber
# (lib/peer.py receive) and two ITK receivers (lib/itk_peer.py), all over
# 127.0.0.1, the ITK legs under mutual TLS (the conf/tls example set, as
# itk_dest.sh):
#   1. ITK in, HL7 v2 out: the discharge summary POSTed to the itk source,
#      converted itk-to-mdm and sent over MLLP: an MDM^T02 whose OBX-5
#      carries the CDA document's bytes exactly;
#   2. HL7 v2 in, ITK out: mdm_t02_letter.hl7 over MLLP, converted
#      mdm-to-itk and POSTed to an ITK receiver: the PDF bytes exactly,
#      addressed to MSH-6's practice, marked delivered;
#   3. round trip: the MDM^T02 of (1) fed back in over MLLP comes out over
#      ITK with the original CDA bytes;
#   4. objections: the objector's letter reaches direct care, not research;
#      `hl7ctl objection remove` (and add) change that for the next letter
#      without a restart;
#   5. the infrastructure ack the sample asks for is routed back by
#      itk.service and itk.address to a second ITK receiver, trackingIdRef
#      the sample's tracking id.
# Prints "PASS itk-letters: ..." / "FAIL itk-letters: ...".
suite=itk-letters
. test/integration/lib/ingest.sh

ITKPEER="$PY test/integration/lib/itk_peer.py"
HTTP="$PY test/integration/lib/httpreq.py"
TOKEN=0123456789abcdef0123456789abcdef
TLS=conf/tls
ITK=$SAMPLES/itk
GOOD=$ITK/discharge_summary_soap.xml
LETTER=$SAMPLES/mdm_t02_letter.hl7
TRACK=7D5B2A90-1C44-4F7B-8D3E-222222222222
CDA_SERVICE=urn:nhs-itk:services:201005:SendCDADocument-v2-0
INFACK_SERVICE=urn:nhs-itk:services:201005:SendInfrastructureAck-v1-0
SUBJECT="CN=pas.rlh.example,O=hl7broker example"

if ! command -v curl >/dev/null 2>&1; then
    echo "FAIL $suite: curl is not installed (make deps)"
    exit 1
fi

# P1 itk source, P2 admin API, P3 mllp source, P4 the MLLP subscriber,
# P5 the GP's ITK receiver, P6 the trust's ITK receiver (acks)
ports 6
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
tokens=$tmp/admin.token
frames=$tmp/frames gp=$tmp/gp trust=$tmp/trust
mkdir -p "$frames" "$gp" "$trust" "$tmp/research" "$tmp/direct"
printf 'ig-officer %s\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"
printf 'nhs_number,purpose\n999 000 0018,research\n' >"$tmp/objections.csv"
export HL7BROKER_URL="http://127.0.0.1:$P2" HL7BROKER_TOKEN="$TOKEN"

# The ITK destinations verify the receivers (example-broker.pem) and show
# the example client certificate; curl shows the same to the itk source.
dest_tls="tls = { ca = \"$TLS/example-ca.pem\"; cert = \"$TLS/example-client.pem\";
                  key = \"$TLS/example-client.key\"; };"
retry="retry = { initial_ms = 50; max_ms = 200; max_attempts = 0; };"
cat >"$conf" <<EOF
broker = { data_dir = "$data"; ods_code = "RXX"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
objections = { file = "$tmp/objections.csv"; };
sources = (
  { name = "epr"; type = "itk"; listen = "127.0.0.1:$P1"; path = "/itk";
    tls = { cert = "$TLS/example-broker.pem"; key = "$TLS/example-broker.key";
            ca = "$TLS/example-ca.pem"; require_client_cert = true;
            allowed_subjects = [ "$SUBJECT" ]; }; },
  $(mllp_source pas "$P3") );
destinations = (
  { name = "gp-v2"; type = "mllp"; connect = "127.0.0.1:$P4"; ack_timeout_ms = 2000; $retry },
  { name = "gp-itk"; type = "itk"; url = "https://127.0.0.1:$P5/itk/receive";
    ack_timeout_ms = 2000; $retry $dest_tls },
  { name = "trust-itk"; type = "itk"; url = "https://127.0.0.1:$P6/itk/acks";
    ack_timeout_ms = 2000; $retry $dest_tls },
  { name = "research"; type = "file"; directory = "$tmp/research"; },
  { name = "direct"; type = "file"; directory = "$tmp/direct"; } );
routes = (
  { name = "summaries-as-mdm"; from = [ "epr" ]; when = "itk.address = 'F84003'";
    transform = ( { convert = "itk-to-mdm"; receiving_app = "GPSYS"; } ); to = [ "gp-v2" ]; },
  { name = "letters-to-itk"; from = [ "pas" ]; when = "MSH-9.1 = 'MDM'";
    transform = ( { convert = "mdm-to-itk"; sender_ods = "R1H"; } ); to = [ "gp-itk" ]; },
  { name = "direct"; from = [ "epr" ]; when = "itk.service = '$CDA_SERVICE'"; to = [ "direct" ]; },
  { name = "research"; from = [ "epr" ];
    when = "itk.service = '$CDA_SERVICE' and not objected(cda.nhs_number, 'research')";
    to = [ "research" ]; },
  { name = "infacks"; from = [ "epr" ];
    when = "itk.service = '$INFACK_SERVICE' and itk.address = 'R1H'"; to = [ "trust-itk" ]; } );
EOF

# --- helpers
# post FILE: POST FILE to the itk source as the allowed client; status in
# $status, body in $tmp/answer
post() {
    status=$(curl -s -m 20 -o "$tmp/answer" -w '%{http_code}' --cacert "$TLS/example-ca.pem" \
        --cert "$TLS/example-client.pem" --key "$TLS/example-client.key" \
        -H 'Content-Type: text/xml; charset=utf-8' -H "SOAPAction: \"$CDA_SERVICE\"" \
        --data-binary "@$1" "https://127.0.0.1:$P1/itk" 2>"$tmp/curl.err") || status=none
}
answered_ok() { [ "$status" = 200 ] && grep -q 'SimpleMessageResponse[^>]*>OK<' "$tmp/answer"; }
# with_track FILE ID: the sample with another tracking id
with_track() { sed "s/trackingid=\"$TRACK\"/trackingid=\"$2\"/" "$GOOD" >"$1"; }
# count DIR PREFIX EXT: files in DIR named PREFIX-<n>.EXT (the peers'
# requests, req-<n>.xml, and frames, frame-<n>.hl7)
count() { ls "$1" | grep -c "^$2-[0-9]*\.$3\$"; }
at_least() { [ "$(count "$1" "$2" "$3")" -ge "$4" ]; }
# holds DIR STRING: a file in DIR holds STRING (not counting the file
# destination's dot-prefixed temporaries: a file is there once renamed)
holds() { grep -lqF -- "$2" "$1"/* 2>/dev/null; }
# v2 FILE: MSH-9, PID-3 and the first ED OBX's OBX-5 of an ER7 message,
# one "NAME=value" a line; its base64 data decoded to FILE.obx5
v2() {
    $PY - "$1" <<'EOF'
import base64, sys
raw = open(sys.argv[1], "rb").read()
segs = [s for s in raw.replace(b"\n", b"\r").split(b"\r") if s]
fs, cs = segs[0][3:4], segs[0][4:5]
def field(name, n):
    for s in segs:
        if s[:3] == name:
            f = s.split(fs)
            if name == b"MSH":
                n -= 1
            if name != b"OBX" or f[2] == b"ED":
                return f[n] if len(f) > n else b""
    return b""
print("MSH-9=" + field(b"MSH", 9).decode())
print("PID-3=" + field(b"PID", 3).decode())
obx5 = field(b"OBX", 5).split(cs)
print("OBX-5=" + cs.decode().join(c.decode() for c in obx5[:4]))
data = base64.b64decode(obx5[4], validate=True) if len(obx5) > 4 else b""
open(sys.argv[1] + ".obx5", "wb").write(data)
EOF
}
# the CDA document of the sample: the ClinicalDocument element's bytes as
# they stand in the file (it declares its own namespace, so this is what
# the parser serialises), the expected payload everywhere
$PY - "$GOOD" "$tmp/cda.xml" <<'EOF'
import sys
s = open(sys.argv[1], "rb").read()
a, b = s.index(b"<ClinicalDocument"), s.index(b"</ClinicalDocument>") + len(b"</ClinicalDocument>")
open(sys.argv[2], "wb").write(s[a:b])
EOF
# the PDF in the MDM letter's OBX-5
cp "$LETTER" "$tmp/letter.hl7" && v2 "$tmp/letter.hl7" >/dev/null 2>>"$tmp/py.err" &&
    mv "$tmp/letter.hl7.obx5" "$tmp/pdf"
api() { code=$($HTTP GET "http://127.0.0.1:$P2$1" "$tmp/api" "$TOKEN" 2>"$tmp/http.err") || code=none; }
js() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/api" "$1" 2>>"$tmp/py.err"; }
# newest DIR PREFIX: the path of the last file PREFIX-<n>.<ext> in DIR
newest() { ls "$1" | grep "^$2-[0-9]*\.$3\$" | sort -t- -k2 -n | tail -n 1 | sed "s|^|$1/|"; }

# --- the peers and the broker
$PEER receive "$P4" "$tmp/mllp.log" aa "$frames" >"$tmp/mllp.out" 2>&1 &
track $!
for r in gp:"$P5" trust:"$P6"; do
    printf 'ok\n' >"$tmp/${r%%:*}/mode"
    $ITKPEER serve "${r#*:}" "$tmp/${r%%:*}" "$TLS/example-broker.pem" "$TLS/example-broker.key" \
        "$TLS/example-ca.pem" >"$tmp/${r%%:*}.out" 2>&1 &
    track $!
done
if ! wait_for "$tmp/mllp.out" 1 '^listening' 10 || ! wait_for "$tmp/gp.out" 1 '^listening' 10 ||
   ! wait_for "$tmp/trust.out" 1 '^listening' 10; then
    fail "the MLLP subscriber and the two ITK receivers start" "$tmp/gp.out"
    exit 1
fi
if [ ! -s "$tmp/cda.xml" ] || [ ! -s "$tmp/pdf" ]; then
    fail "the expected document bytes are read from the samples" "$tmp/py.err"
    exit 1
fi
if ! start_daemon "$conf" "$log" "$P1" "$P2" "$P3"; then
    fail "hl7brokerd starts (itk source under mutual TLS, mllp source, objections file)" "$log"
    exit 1
fi

# ------------------------------------------------- 1. ITK in, HL7 v2 out
post "$GOOD"
answered_ok
check "1: the discharge summary POSTed over mutual TLS: 200 SimpleMessageResponse OK" $? "$tmp/answer"
until_true 15 at_least "$frames" frame hl7 1
check "1: an HL7 v2 message reaches the MLLP subscriber" $? "$log"
f1=$frames/frame-1.hl7
v2 "$f1" >"$tmp/v2.1" 2>"$tmp/py.err"
grep -qx 'MSH-9=MDM^T02^MDM_T02' "$tmp/v2.1" && grep -qx 'PID-3=9990000018^^^NHS^NH' "$tmp/v2.1" &&
    grep -qx 'OBX-5=^text^xml^Base64' "$tmp/v2.1"
check "1: it is an MDM^T02, PID-3 9990000018^^^NHS^NH, OBX-5 ^text^xml^Base64^..." $? "$tmp/v2.1"
cmp -s "$f1.obx5" "$tmp/cda.xml"
check "1: OBX-5 decodes to exactly the CDA document's bytes ($(wc -c <"$tmp/cda.xml") bytes)" $? "$tmp/py.err"
"$HL7CTL" parse "$f1" >"$tmp/parse.1" 2>&1 && grep -qx '  MSH-5 = GPSYS' "$tmp/parse.1" &&
    grep -qx "  MSH-10 = $TRACK" "$tmp/parse.1"
check "1: MSH-5 the route's receiving_app GPSYS, MSH-10 the tracking id" $? "$tmp/parse.1"

# ------------------------------------------------- 2. HL7 v2 in, ITK out
"$HL7CTL" send -q "127.0.0.1:$P3" "$LETTER" >"$tmp/send.2" 2>&1 && grep -Eq '^[AC]A ' "$tmp/send.2"
check "2: mdm_t02_letter.hl7 sent over MLLP: accepted (CA, enhanced mode)" $? "$tmp/send.2"
until_true 15 at_least "$gp" req xml 1
check "2: a SOAP request reaches the GP's ITK receiver over mutual TLS" $? "$log"
r2=$gp/req-1.xml
$ITKPEER envelope "$r2" >"$tmp/env.2" 2>&1
grep -qx "Service=$CDA_SERVICE" "$tmp/env.2" &&
    [ "$(grep -c '^Address=' "$tmp/env.2")" = 1 ] &&
    grep -qx 'Address=urn:nhs-uk:addressing:ods:F84003' "$tmp/env.2" &&
    grep -qx 'Payloads=1' "$tmp/env.2"
check "2: a DistributionEnvelope addressed to urn:nhs-uk:addressing:ods:F84003 (MSH-6), one payload" $? "$tmp/env.2"
$ITKPEER payload "$r2" "$tmp/payload.2" 2>"$tmp/py.err" && cmp -s "$tmp/payload.2" "$tmp/pdf"
check "2: the payload decodes to exactly the PDF bytes of OBX-5 ($(wc -c <"$tmp/pdf") bytes)" $? "$tmp/py.err"
api "/api/v1/messages?control_id=BARTS-DOC-3301"
msg2=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["id"])' "$tmp/api" 2>/dev/null)
delivered2() {
    api "/api/v1/messages/${msg2:-0}"
    [ "$code" = 200 ] && js '[(d["destination"], d["status"]) for d in j["deliveries"]] == [("gp-itk", "delivered")]'
}
until_true 10 delivered2
check "2: the broker marks it delivered to gp-itk (admin API)" $? "$tmp/api"
"$HL7CTL" show "${msg2:-0}" >"$tmp/show.2" 2>&1 && grep -q 'gp-itk' "$tmp/show.2" &&
    grep -qi 'delivered' "$tmp/show.2"
check "2: hl7ctl show says so too" $? "$tmp/show.2"

# ------------------------------------------------- 3. the round trip
"$HL7CTL" send -q "127.0.0.1:$P3" "$f1" >"$tmp/send.3" 2>&1 && grep -Eq '^[AC]A ' "$tmp/send.3"
check "3: the MDM^T02 of (1) fed back in over MLLP: AA" $? "$tmp/send.3"
until_true 15 at_least "$gp" req xml 2
r3=$(newest "$gp" req xml)
$ITKPEER envelope "$r3" >"$tmp/env.3" 2>&1
$ITKPEER payload "$r3" "$tmp/payload.3" 2>"$tmp/py.err" && cmp -s "$tmp/payload.3" "$tmp/cda.xml" &&
    grep -qx 'Address=urn:nhs-uk:addressing:ods:F84003' "$tmp/env.3"
check "3: ITK -> MDM -> ITK through the daemon: the payload is the original CDA bytes exactly" $? "$tmp/env.3"

# ------------------------------------------------- 4. objections
# The sample's patient (9990000018) objected to research in the file.
until_true 10 holds "$tmp/direct" "$TRACK"
check "4: the objector's letter reaches direct care" $? "$log"
with_track "$tmp/a1.xml" 7D5B2A90-1C44-4F7B-8D3E-2222222222A1
"$HL7CTL" objection remove 9990000018 research >"$tmp/ctl.out" 2>&1
check "4: hl7ctl objection remove 9990000018 research" $? "$tmp/ctl.out"
post "$tmp/a1.xml"
answered_ok && until_true 10 holds "$tmp/research" 2222222222A1
check "4: without a restart, the next letter (another tracking id) reaches research" $? "$log"
[ "$(ls "$tmp/research" | wc -l)" = 1 ] && ! holds "$tmp/research" "$TRACK"
check "4: the first letter, sent while the objection stood, never reached research" $? "$log"
"$HL7CTL" objection add 9990000018 research >"$tmp/ctl.out" 2>&1
check "4: hl7ctl objection add 9990000018 research" $? "$tmp/ctl.out"
with_track "$tmp/a2.xml" 7D5B2A90-1C44-4F7B-8D3E-2222222222A2
post "$tmp/a2.xml"
answered_ok && until_true 10 holds "$tmp/direct" 2222222222A2
check "4: the letter after the objection is added reaches direct care" $? "$log"
sleep 0.3
! holds "$tmp/research" 2222222222A2
check "4: ... and not research" $? "$log"

# ------------------------------------------------- 5. the infrastructure ack
# Every letter above asked for one; the sample's is the first.
has_ack() {
    for f in "$trust"/req-*.xml; do
        [ -f "$f" ] || continue
        $ITKPEER payload "$f" "$tmp/ack.xml" 2>/dev/null &&
            $PY - "$tmp/ack.xml" "$1" <<'EOF' && { ack=$f; return 0; }
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
sys.exit(0 if r.tag.endswith("}InfrastructureResponse") and r.get("trackingIdRef") == sys.argv[2]
         and r.get("result") == "OK" else 1)
EOF
    done
    return 1
}
until_true 15 has_ack "$TRACK"
check "5: an InfrastructureResponse (result OK, trackingIdRef the sample's) reaches the trust's ITK receiver" $? "$log"
$ITKPEER envelope "${ack:-/dev/null}" >"$tmp/env.5" 2>&1
$ITKPEER show "${ack:-/dev/null}" >>"$tmp/env.5" 2>&1
grep -qx "Service=$INFACK_SERVICE" "$tmp/env.5" && grep -qx "Action=$INFACK_SERVICE" "$tmp/env.5" &&
    grep -qx 'Address=urn:nhs-uk:addressing:ods:R1H' "$tmp/env.5" &&
    grep -qx 'Sender=urn:nhs-uk:addressing:ods:RXX' "$tmp/env.5" &&
    grep -q 'urn:nhs-uk:identity:ods:RXX' "${ack:-/dev/null}"
check "5: sent as SendInfrastructureAck to R1H, from and reported by this broker (RXX)" $? "$tmp/env.5"
until_true 10 has_ack 7D5B2A90-1C44-4F7B-8D3E-2222222222A2
check "5: every letter's ack comes back (the last one's too)" $? "$log"
[ "$(count "$gp" req xml)" = 2 ] && [ "$(count "$frames" frame hl7)" = 3 ] &&
    ! grep -l 'InfrastructureResponse' "$gp"/req-*.xml "$frames"/* "$tmp/direct"/* >/dev/null 2>&1
check "5: the acks go only to the trust; the GP gets the letters alone" $? "$log"

stop "$dpid" TERM 10
check "hl7brokerd stops cleanly" "$rc" "$log"
if [ "$sanitized" -eq 1 ]; then
    ! grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error:' "$log"
    check "no sanitizer reports" $? "$log"
fi
