#!/bin/sh
# prune.sh: ingest latency while the pruner removes a million messages.
# Fills a store with PRUNE_MESSAGES (default 1,000,000) delivered messages
# received 30 days ago (test/bench/prune_fill, straight through the store
# API), then measures hl7brokerd's ingest with test/bench/mllp_load twice
# on that store: without retention, and with retention.delivered_days = 1
# while the pruner works through them. Prints one table.
#
# usage: prune.sh BUILD_DIR   (hl7brokerd, test/mllp_load, test/prune_fill)
# env:   PRUNE_MESSAGES, PRUNE_SECONDS per load figure (default 5)
set -e
build=${1:?usage: prune.sh BUILD_DIR}
total=${PRUNE_MESSAGES:-1000000}
secs=${PRUNE_SECONDS:-5}
brokerd=$build/hl7brokerd
load=$build/test/mllp_load
fill=$build/test/prune_fill
peer="/usr/bin/python3 test/integration/lib/peer.py"
for b in "$brokerd" "$load" "$fill"; do
    [ -x "$b" ] || { echo "bench: $b is not built" >&2; exit 1; }
done
mkdir -p var
work=$(mktemp -d "$PWD/var/bench-prune.XXXXXX")
bpid=""
cleanup() {
    [ -n "$bpid" ] && kill -KILL "$bpid" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$work"
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

entries() { mdb_stat -s messages "$work/data" 2>/dev/null | sed -n 's/^ *Entries: //p'; }
now() { date +%s.%N; }

t0=$(now)
"$fill" "$work/data" "$total" 30
t1=$(now)
size=$(du -sm "$work/data" | cut -f1)
echo "retention: $total delivered messages of 30 days ago written in $(echo "$t1 - $t0" | bc)s ($size MB store)"

# conf RETENTION: the broker's config, with that retention group
conf() {
    cat >"$work/broker.conf" <<EOF
broker = { data_dir = "$work/data"; max_map_bytes = 17179869184L;
           admin = { enabled = false; }; log = { level = "info"; }; };
$1
sources = ( { name = "bench"; type = "mllp"; listen = "127.0.0.1:$port"; } );
EOF
}
start() {
    "$brokerd" -c "$work/broker.conf" 2>"$work/broker.log" &
    bpid=$!
    $peer wait-port "$port" 30 || { cat "$work/broker.log" >&2; exit 1; }
}
stop() {
    kill -TERM "$bpid"
    wait "$bpid" || true
    bpid=""
}
# run NAME CONNECTIONS: one load figure, its RESULT line in $work/NAME
run() {
    "$load" --port "$port" --connections "$2" --seconds "$secs" --timeout-ms 30000 --quiet \
        >"$work/$1" 2>"$work/$1.err" || { cat "$work/$1.err" >&2; exit 1; }
}
val() { sed -n "s/^RESULT .*[ ]$2=\([^ ]*\).*/\1/p" "$work/$1"; }

conf ""
start
"$load" --port "$port" --connections 4 --messages 400 --quiet >/dev/null
run quiet1 1
run quiet16 16
stop

conf "retention = { delivered_days = 1; interval_seconds = 1; };"
start
# wait for the pruner's first step
n=0
while [ "$(entries)" -ge "$total" ]; do
    n=$((n + 1))
    [ $n -lt 300 ] || { echo "bench: the pruner did not start" >&2; cat "$work/broker.log" >&2; exit 1; }
    sleep 0.1
done
before=$(entries)
run prune1 1
mid=$(entries)
run prune16 16
after=$(entries)
n=0
while ! grep -q 'msg="pruning done"' "$work/broker.log"; do
    n=$((n + 1))
    [ $n -lt 6000 ] || { echo "bench: the pruner did not finish in 600s" >&2; exit 1; }
    sleep 0.1
done
t2=$(now)
stop
done_line=$(grep 'msg="pruning done"' "$work/broker.log" | head -n 1)
kv() { echo "$done_line" | sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p"; }

row() {   # SENDERS PRUNER NAME PRUNED
    printf '| %s | %s | %.0f | %.3f | %.3f | %.3f | %s |\n' "$1" "$2" "$(val "$3" msgs_per_s)" \
        "$(val "$3" p50_ms)" "$(val "$3" p99_ms)" "$(val "$3" max_ms)" "$4"
}
echo
echo "| senders | pruner | messages/s | p50 ACK ms | p99 ACK ms | max ACK ms | messages pruned meanwhile |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
row "1 connection" "idle (no retention)" quiet1 "-"
row "1 connection" "pruning" prune1 "$((before - mid + $(val prune1 accepted)))"
row "16 connections" "idle (no retention)" quiet16 "-"
row "16 connections" "pruning" prune16 "$((mid - after + $(val prune16 accepted)))"
echo
rate=$(awk -v m="$(kv messages)" -v t="$(kv ms)" 'BEGIN { printf "%.0f", (t > 0 ? m * 1000 / t : 0) }')
echo "pruner: $(kv messages) messages and $(kv payloads) payloads removed in one run of $(kv ms) ms" \
     "($rate messages/s, $((2 * secs))s of it under the load above); longest step" \
     "(one write transaction, commit included) $(kv max_step_us) us"
