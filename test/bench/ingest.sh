#!/bin/sh
# ingest.sh: the ingest part of `make bench` (run.sh calls it). Starts its
# own hl7brokerd on a temp config with its store under var/, and the
# python-hl7 asyncio MLLP server (test/bench/mllp_baseline.py, which keeps
# nothing) beside it; drives both with test/bench/mllp_load (lock-step
# senders: one message, wait for its ACK, the next), measures one LMDB
# write+fsync commit on the same disk, and prints one table and the
# targets of BENCHMARKS.md.
#
# usage: ingest.sh BUILD_DIR     (hl7brokerd and test/mllp_load, test/lmdb_commit)
# env:   INGEST_SECONDS per load figure (default 5), INGEST_IDLE idle
#        connections (default 1000), PYTHON (default /usr/bin/python3)
set -e
build=${1:?usage: ingest.sh BUILD_DIR}
secs=${INGEST_SECONDS:-5}
idle=${INGEST_IDLE:-1000}
python=${PYTHON:-/usr/bin/python3}
here=$(dirname "$0")
brokerd=$build/hl7brokerd
load=$build/test/mllp_load
probe=$build/test/lmdb_commit
peer="$python test/integration/lib/peer.py"

for b in "$brokerd" "$load" "$probe"; do
    [ -x "$b" ] || { echo "bench: $b is not built" >&2; exit 1; }
done
mkdir -p var
work=$(mktemp -d "$PWD/var/bench-ingest.XXXXXX")
tmp=$(mktemp -d)
bpid="" ppid=""
cleanup() {
    [ -n "$bpid" ] && kill -KILL "$bpid" 2>/dev/null
    [ -n "$ppid" ] && kill -KILL "$ppid" 2>/dev/null
    rm -rf "$work" "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null || true

# two free ports from a random base below the ephemeral range
n=0
while :; do
    base=$((21000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
    $peer free-port $base $((base + 1)) && break
    n=$((n + 1))
    [ $n -lt 30 ] || { echo "bench: no free ports" >&2; exit 1; }
done
bport=$base
pport=$((base + 1))

echo "ingest: hl7brokerd against the python-hl7 asyncio MLLP server, ${secs}s per figure"
echo

# ------------------------------------------------------ one LMDB commit

"$probe" "$work/lmdb-probe" 200 1024 >"$tmp/probe"
commit_ms=$(sed -n 's/^RESULT .* median_ms=\([^ ]*\).*/\1/p' "$tmp/probe")
sed '/^RESULT /d' "$tmp/probe"

# --------------------------------------------------------- the servers

cat >"$work/broker.conf" <<EOF
broker = {
  data_dir = "$work/data";
  admin = { enabled = false; };
  log = { level = "warn"; };
};
sources = (
  { name = "bench"; type = "mllp"; listen = "127.0.0.1:$bport";
    max_connections = $((idle + 200)); idle_timeout_ms = 0; }
);
EOF
"$brokerd" -c "$work/broker.conf" 2>"$work/broker.log" &
bpid=$!
"$python" "$here/mllp_baseline.py" --port "$pport" >"$work/baseline.log" 2>&1 &
ppid=$!
$peer wait-port "$bport" 10 || { cat "$work/broker.log" >&2; exit 1; }
$peer wait-port "$pport" 10 || { cat "$work/baseline.log" >&2; exit 1; }

# run NAME PORT CONNECTIONS: one load figure, its RESULT line kept as NAME
run() {
    "$load" --port "$2" --connections "$3" --seconds "$secs" --timeout-ms 30000 --quiet \
        >"$tmp/$1" 2>"$tmp/$1.err" || { cat "$tmp/$1.err" >&2; exit 1; }
}
val() { sed -n "s/^RESULT .*[ ]$2=\([^ ]*\).*/\1/p" "$tmp/$1"; }

# a few hundred messages first, so neither side is measured cold
"$load" --port "$bport" --connections 4 --messages 400 --quiet >/dev/null
"$load" --port "$pport" --connections 4 --messages 400 --quiet >/dev/null

run broker1 "$bport" 1
run base1 "$pport" 1
run broker64 "$bport" 64
run base64 "$pport" 64

# ------------------------------------------- idle connections and RSS

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
rss_before=$(rss "$bpid")
"$load" --port "$bport" --idle "$idle" --connections 1 --seconds 3 --quiet \
    >"$tmp/idle" 2>"$tmp/idle.err" &
lpid=$!
n=0
until grep -q "^idle: $idle open" "$tmp/idle.err" 2>/dev/null; do
    n=$((n + 1))
    [ $n -lt 200 ] || { cat "$tmp/idle.err" >&2; exit 1; }
    sleep 0.1
done
sleep 0.5
rss_idle=$(rss "$bpid")
wait $lpid

kill -TERM "$bpid"
wait "$bpid" || true
bpid=""
kill -TERM "$ppid"
wait "$ppid" || true
ppid=""
commits=$(sed -n 's/.*msg=stopped .*commits=\([0-9]*\).*/\1/p' "$work/broker.log")
accepted=$(sed -n 's/.*msg=stopped .*accepted=\([0-9]*\).*/\1/p' "$work/broker.log")

# ------------------------------------------------------------- the table

row() {   # LOAD SERVER NAME
    printf '| %s | %s | %.0f | %.3f | %.3f | %.3f |\n' "$1" "$2" "$(val "$3" msgs_per_s)" \
        "$(val "$3" p50_ms)" "$(val "$3" p99_ms)" "$(val "$3" max_ms)"
}
echo
echo "| senders | server | messages/s | p50 ACK ms | p99 ACK ms | max ACK ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
row "1 connection" "hl7brokerd (fsync before ACK)" broker1
row "1 connection" "python-hl7 asyncio (keeps nothing)" base1
row "64 connections" "hl7brokerd (fsync before ACK)" broker64
row "64 connections" "python-hl7 asyncio (keeps nothing)" base64
echo
awk -v p50="$(val broker1 p50_ms)" -v c="$commit_ms" \
    -v r64="$(val broker64 msgs_per_s)" -v b64="$(val base64 msgs_per_s)" \
    -v r1="$(val broker1 msgs_per_s)" -v b1="$(val base1 msgs_per_s)" \
    -v before="$rss_before" -v after="$rss_idle" -v idle="$idle" \
    -v still="$(val idle idle_open)" -v commits="$commits" -v acc="$accepted" 'BEGIN {
    ratio = c > 0 ? p50 / c : 0
    printf "1 connection: p50 ACK %.3f ms = %.2fx one LMDB commit (%.3f ms); target 1.5x: %s\n",
           p50, ratio, c, (ratio <= 1.5 ? "met" : "not met")
    printf "64 connections: %.0f messages/s durably committed; target 50,000: %s; %.2fx the python-hl7 baseline (%.0f/s, which stores nothing)\n",
           r64, (r64 >= 50000 ? "met" : "not met"), (b64 > 0 ? r64 / b64 : 0), b64
    printf "1 connection: %.2fx the baseline (%.0f/s against %.0f/s)\n", (b1 > 0 ? r1 / b1 : 0), r1, b1
    mb = (after - before) / 1024
    printf "%d idle connections (%d still open): VmRSS %.1f -> %.1f MB, %.1f MB more; target under 50 MB: %s\n",
           idle, still, before / 1024, after / 1024, mb, (mb < 50 ? "met" : "not met")
    if (commits > 0)
        printf "group commit: %d messages in %d commits, %.1f per commit on average\n", acc, commits, acc / commits
}'
