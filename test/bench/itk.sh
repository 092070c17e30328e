#!/bin/sh
# itk.sh: the ITK part of `make bench` (run.sh calls it). Starts its own
# hl7brokerd with an itk source (mutual TLS, the conf/tls example
# certificates) and a route converting each discharge summary to an
# MDM^T02 (itk-to-mdm) for a file destination; concurrent senders
# (test/bench/itk_load.py, Python: the client is part of what is
# measured) POST the sample letter, each with its own tracking id. Prints
# letters/s answered OK (after the commit) and the answer latency.
#
# usage: itk.sh BUILD_DIR
# env:   ITK_LETTERS (default 4000), ITK_SENDERS (16), PYTHON (/usr/bin/python3)
set -e
build=${1:?usage: itk.sh BUILD_DIR}
letters=${ITK_LETTERS:-4000}
senders=${ITK_SENDERS:-16}
python=${PYTHON:-/usr/bin/python3}
brokerd=$build/hl7brokerd
peer="$python test/integration/lib/peer.py"
sample=${SAMPLES:-../shared/samples}/itk/discharge_summary_soap.xml

[ -x "$brokerd" ] || { echo "bench: $brokerd is not built" >&2; exit 1; }
mkdir -p var
work=$(mktemp -d "$PWD/var/bench-itk.XXXXXX")
bpid=""
cleanup() {
    [ -n "$bpid" ] && kill -KILL "$bpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

n=0
while :; do
    port=$((21000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
    $peer free-port $port && break
    n=$((n + 1))
    [ $n -lt 30 ] || { echo "bench: no free port" >&2; exit 1; }
done
cat >"$work/broker.conf" <<EOF2
broker = { data_dir = "$work/data"; ods_code = "X26"; admin = { enabled = false; };
           log = { level = "warn"; }; };
sources = ( { name = "epr"; type = "itk"; listen = "127.0.0.1:$port"; idle_timeout_ms = 0;
              tls = { cert = "conf/tls/example-broker.pem"; key = "conf/tls/example-broker.key";
                      ca = "conf/tls/example-ca.pem"; require_client_cert = true; }; } );
destinations = ( { name = "gp-v2"; type = "file"; directory = "$work/out"; } );
routes = ( { name = "summaries-as-mdm"; from = [ "epr" ];
             when = "itk.service ~ 'SendCDADocument'";
             transform = ( { convert = "itk-to-mdm"; } ); to = [ "gp-v2" ]; } );
EOF2
"$brokerd" -c "$work/broker.conf" 2>"$work/broker.log" &
bpid=$!
$peer wait-port "$port" 10 || { cat "$work/broker.log" >&2; exit 1; }

echo "itk: $senders senders POSTing discharge summaries over HTTPS (mutual TLS, keep-alive),"
echo "each answered after its commit; every letter converted to MDM^T02 for a file destination;"
echo "$letters letters, the Python client on the same cores"
echo
$python test/bench/itk_load.py 127.0.0.1 "$port" "$sample" conf/tls/example-ca.pem \
    conf/tls/example-client.pem conf/tls/example-client.key "$letters" "$senders" \
    >"$work/load.out" || { tail -n 20 "$work/broker.log" >&2; exit 1; }
awk '
function val(line, key,   i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], key "=") == 1)
            return substr(kv[i], length(key) + 2)
    return ""
}
/^RESULT / {
    print "| figure | measured |"
    print "| --- | --- |"
    printf "| letters/s answered SimpleMessageResponse OK (%s senders) | %s |\n", val($0, "senders"), val($0, "letters_per_s")
    printf "| answer latency p50 / p99 | %s / %s ms |\n", val($0, "p50_ms"), val($0, "p99_ms")
}' "$work/load.out"
kill -TERM "$bpid" 2>/dev/null
wait "$bpid" 2>/dev/null || true
bpid=""
