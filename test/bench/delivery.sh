#!/bin/sh
# delivery.sh: the delivery part of `make bench` (run.sh calls it). Starts
# its own hl7brokerd with one MLLP source and five MLLP destinations, all
# served by the fast receiver inside test/mllp_load (--sink: answers AA at
# once), and one route sending every message to all five. 64 lock-step
# senders; prints messages/s fully delivered to all five and the latency
# from the sender's first byte to the fifth copy's arrival.
#
# usage: delivery.sh BUILD_DIR     (hl7brokerd and test/mllp_load)
# env:   DELIVERY_MESSAGES (default 100000), DELIVERY_CONNECTIONS (64),
#        PYTHON (default /usr/bin/python3)
set -e
build=${1:?usage: delivery.sh BUILD_DIR}
msgs=${DELIVERY_MESSAGES:-100000}
conns=${DELIVERY_CONNECTIONS:-64}
python=${PYTHON:-/usr/bin/python3}
brokerd=$build/hl7brokerd
load=$build/test/mllp_load
peer="$python test/integration/lib/peer.py"

for b in "$brokerd" "$load"; do
    [ -x "$b" ] || { echo "bench: $b is not built" >&2; exit 1; }
done
mkdir -p var
work=$(mktemp -d "$PWD/var/bench-delivery.XXXXXX")
bpid=""
cleanup() {
    [ -n "$bpid" ] && kill -KILL "$bpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

n=0
while :; do
    base=$((21000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
    $peer free-port $base $((base + 1)) && break
    n=$((n + 1))
    [ $n -lt 30 ] || { echo "bench: no free ports" >&2; exit 1; }
done
bport=$base
sport=$((base + 1))

dests="" names=""
for d in ncl nel nwl sel swl; do
    dests="$dests { name = \"$d-hie\"; type = \"mllp\"; connect = \"127.0.0.1:$sport\";
      ack_timeout_ms = 10000; retry = { initial_ms = 20; max_ms = 100; max_attempts = 0; }; },"
    names="$names \"$d-hie\","
done
cat >"$work/broker.conf" <<EOF2
broker = {
  data_dir = "$work/data";
  admin = { enabled = false; };
  log = { level = "warn"; };
};
sources = (
  { name = "bench"; type = "mllp"; listen = "127.0.0.1:$bport"; idle_timeout_ms = 0; }
);
destinations = ( ${dests%,} );
routes = ( { name = "to-all-five"; from = [ "bench" ]; to = [ ${names%,} ]; } );
EOF2
"$brokerd" -c "$work/broker.conf" 2>"$work/broker.log" &
bpid=$!
$peer wait-port "$bport" 10 || { cat "$work/broker.log" >&2; exit 1; }

echo "delivery: $conns lock-step MLLP senders into hl7brokerd, every message routed to 5 MLLP"
echo "destinations (one in flight each) served by mllp_load --sink, $msgs messages"
echo
"$load" --port "$bport" --connections "$conns" --messages "$msgs" --sink "$sport" \
    --sink-copies 5 --sink-timeout 120 --id-prefix D >"$work/load.out" 2>&1 || {
    cat "$work/load.out" >&2
    tail -n 20 "$work/broker.log" >&2
    exit 1
}
grep -v '^RESULT\|^SINK' "$work/load.out"
echo
awk '
function val(line, key,   i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], key "=") == 1)
            return substr(kv[i], length(key) + 2)
    return ""
}
/^RESULT / { acc = val($0, "msgs_per_s"); ap50 = val($0, "p50_ms"); ap99 = val($0, "p99_ms") }
/^SINK /   { rate = val($0, "msgs_per_s"); dps = val($0, "deliveries_per_s")
             p50 = val($0, "p50_ms"); p99 = val($0, "p99_ms") }
END {
    print "| figure | measured | target |"
    print "| --- | --- | --- |"
    printf "| messages/s accepted (64 senders, ACK after commit) | %.0f | |\n", acc
    printf "| messages/s fully delivered to all 5 destinations | %.0f | >= 10,000 |\n", rate
    printf "| deliveries/s (5 per message) | %.0f | >= 50,000 |\n", dps
    printf "| ACK latency p50 / p99 | %s / %s ms | |\n", ap50, ap99
    printf "| first byte sent to fifth copy received, p50 / p99 | %s / %s ms | |\n", p50, p99
}' "$work/load.out"
kill -TERM "$bpid" 2>/dev/null
wait "$bpid" 2>/dev/null || true
bpid=""
