#!/bin/sh
# dashboard.sh: the dashboard page at GET / against the real daemon (two
# destinations, one paused, and traffic): served without a token, with a
# Content-Security-Policy whose hashes match the page's inline script and
# style, no external URL and no HTML built from strings in it; then
# rendered by headless Chromium (the token given as #token=...) and the
# figures in the DOM compared with the JSON API's. A wrong token shows the
# token form; a search and a message view either show results or say
# "not available", as the API in this build answers.
# Prints "PASS dashboard: ..." / "FAIL dashboard: ...".
suite=dashboard
. test/integration/lib/ingest.sh

HTTP="$PY test/integration/lib/httpreq.py"
TOKEN=0123456789abcdef0123456789abcdef
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}

ports 2
data=$tmp/data
conf=$tmp/broker.conf
log=$tmp/broker.log
tokens=$tmp/admin.token
base="http://127.0.0.1:$P2"

cat >"$conf" <<EOF
broker = { data_dir = "$data"; log = { level = "info"; };
  admin = { listen = "127.0.0.1:$P2"; token_file = "$tokens"; }; };
sources = ( $(mllp_source pas "$P1") );
destinations = (
  { name = "files"; type = "file"; directory = "$tmp/out"; },
  { name = "held"; type = "file"; directory = "$tmp/held"; paused = true; }
);
routes = ( { name = "all"; from = [ "pas" ]; to = [ "files", "held" ]; } );
EOF
printf 'ops %s\n' "$TOKEN" >"$tokens"
chmod 600 "$tokens"

# get PATH [TOKEN]: GET, status in $code, body in $tmp/body
get() {
    code=$($HTTP GET "$base$1" "$tmp/body" $2 2>"$tmp/http.err") || code=none
}

# render FRAGMENT OUT: the DOM after Chromium ran the page for 8 s of
# virtual time (the page refreshes every 3 s), in OUT
render() {
    rm -rf "$tmp/profile"
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-extensions --disable-background-networking --disable-sync \
        --user-data-dir="$tmp/profile" --virtual-time-budget=8000 \
        --dump-dom "$base/#$1" >"$2" 2>"$2.err"
}

# dom FILE CHECK...: python assertions over the dumped DOM (lib/dom.py)
dom() { $PY test/integration/lib/dom.py "$@" 2>"$tmp/dom.err"; }

if ! start_daemon "$conf" "$log" "$P1" "$P2"; then
    fail "hl7brokerd starts with the admin API" "$log"
    exit 1
fi

# ---------------------------------------------------------- traffic
"$LOAD" --port "$P1" --connections 2 --messages 20 --id-prefix DSH --quiet >"$tmp/load" 2>&1
"$HL7CTL" send --port "$P1" --raw "$SAMPLES/bad/no_msh.hl7" >"$tmp/bad.out" 2>&1
n=0
while [ "$n" -lt 100 ]; do
    get /api/v1/destinations/files "$TOKEN"
    grep -q '"delivered": 20' "$tmp/body" && break
    sleep 0.1
    n=$((n + 1))
done
grep -q '"delivered": 20' "$tmp/body"
check "traffic: 20 messages delivered to files, 1 refused" $? "$tmp/body"

# ---------------------------------------------------------- the page itself
get /
cp "$tmp/body" "$tmp/page.html"
cp "$tmp/body.headers" "$tmp/page.headers"
[ "$code" = 200 ] && grep -q '^Content-Type: text/html; charset=utf-8$' "$tmp/page.headers" &&
    grep -q '<title>hl7broker</title>' "$tmp/page.html"
check "GET / without a token: 200 text/html, the dashboard" $? "$tmp/page.headers"
$PY - "$tmp/page.html" "$tmp/page.headers" >"$tmp/csp.out" 2>&1 <<'EOF'
import base64, hashlib, re, sys
page = open(sys.argv[1], 'rb').read()
hdr = dict(l.split(': ', 1) for l in open(sys.argv[2]).read().splitlines() if ': ' in l)
csp = hdr['Content-Security-Policy']
print(csp)
d = {}
for part in csp.split(';'):
    w = part.split()
    d[w[0]] = w[1:]
assert d['default-src'] == ["'self'"], d
assert d['connect-src'] == ["'self'"] and d['frame-ancestors'] == ["'none'"], d
for tag, key in ((b'script', 'script-src'), (b'style', 'style-src')):
    bodies = re.findall(b'<' + tag + b'>(.*?)</' + tag + b'>', page, re.S)
    assert len(bodies) == 1, (tag, len(bodies))
    want = ["'sha256-%s'" % base64.b64encode(hashlib.sha256(b).digest()).decode() for b in bodies]
    assert d[key] == want, (key, d[key], want)
assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
assert hdr['X-Frame-Options'] == 'DENY' and hdr['Cache-Control'] == 'no-store', hdr
EOF
check "GET /: a Content-Security-Policy (default-src 'self'; the inline script and style by their SHA-256)" $? "$tmp/csp.out"
! grep -Eiq 'https?:|//cdn|src="//|href="//' "$tmp/page.html" &&
    ! grep -Eq 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function' "$tmp/page.html" &&
    [ "$(LC_ALL=C grep -c '[^ -~	]' "$tmp/page.html")" = 0 ]
check "GET /: no external URL, no HTML built from strings, ASCII only" $? "$tmp/page.html"
code=$($HTTP POST "$base/" "$tmp/body" 2>/dev/null)
[ "$code" = 405 ]
check "POST /: 405" $? "$tmp/body"

# ---------------------------------------------------------- rendered
if [ -z "$CHROMIUM" ]; then
    fail "chromium is installed (make deps-test)"
    exit 1
fi
get /api/v1/stats "$TOKEN"
cp "$tmp/body" "$tmp/stats.json"
render "token=$TOKEN" "$tmp/dom.html"
check "headless Chromium renders the page (exit 0 within 60 s)" $? "$tmp/dom.html.err"
dom "$tmp/dom.html" running "$tmp/stats.json" >"$tmp/dom.out"
check "the DOM: both destinations and the source with the API's figures (queue 0 / 20, paused, delivered 20, received 21, errors 1), refreshed at least twice" $? "$tmp/dom.err"
! grep -q "$TOKEN" "$tmp/dom.html"
check "the token is not left in the page" $? "$tmp/dom.html"

render "token=not-the-right-token-at-all" "$tmp/dom401.html"
dom "$tmp/dom401.html" login refused
check "a wrong token: the token form again, saying the token was refused" $? "$tmp/dom.err"

render "" "$tmp/dom0.html"
dom "$tmp/dom0.html" login idle
check "no token: the token form, nothing else shown" $? "$tmp/dom.err"

# search and message view: results when the API has them, else "not available"
nhs=9990000018
get "/api/v1/messages?nhs_number=$nhs&limit=100" "$TOKEN"
scode=$code
cp "$tmp/body" "$tmp/search.json"
# the newest message found, else one that may not exist
id=$($PY -c 'import json, sys
try: print(json.load(open(sys.argv[1]))["items"][0]["id"])
except Exception: print(1)' "$tmp/search.json")
get "/api/v1/messages/$id" "$TOKEN"
mcode=$code
render "token=$TOKEN&nhs_number=$nhs&message=$id" "$tmp/dom2.html"
dom "$tmp/dom2.html" search "$scode" "$tmp/search.json" "$mcode"
check "search by NHS number and the message view: as the API answers ($scode, $mcode)" $? "$tmp/dom.err"

stop "$dpid" TERM 10
check "stops cleanly (exit 0)" "$rc" "$log"
