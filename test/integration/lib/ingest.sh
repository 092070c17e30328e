# ingest.sh: what the test/integration/ingest_*.sh tests share. Sourced
# (not run) after setting $suite: binaries, a temp dir removed at exit,
# every process started through here killed at exit, free ports, configs,
# starting and stopping hl7brokerd, and the store read back with mdb_dump.
# POSIX sh (the tests run under dash). Every wait is bounded.

BUILD=${BUILD:-build/default}
BROKERD=$BUILD/hl7brokerd
HL7CTL=$BUILD/hl7ctl
LOAD=$BUILD/test/mllp_load
SAMPLES=${SAMPLES:-../shared/samples}
PY=/usr/bin/python3
PEER="$PY test/integration/lib/peer.py"

case "$BUILD" in *san-*) sanitized=1 ;; *) sanitized=0 ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hl7-$suite.XXXXXX") || exit 1
pids=""
cleanup() {
    for p in $pids; do
        kill -KILL "$p" 2>/dev/null
    done
    for p in $pids; do
        wait "$p" 2>/dev/null
    done
    [ -n "$KEEP_TMP" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

pass() { echo "PASS $suite: $1"; }
fail() {
    echo "FAIL $suite: $1"
    if [ -n "$2" ] && [ -f "$2" ]; then sed 's/^/    | /' "$2" | tail -n 25; fi
}
# check NAME CONDITION-STATUS [FILE]: PASS or FAIL by the status of the
# command just run (0: pass)
check() { if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "$3"; fi; }

need() {
    for b in "$@"; do
        if [ ! -x "$b" ]; then
            echo "FAIL $suite: $b is not built"
            exit 1
        fi
    done
}
need "$BROKERD" "$HL7CTL" "$LOAD"
if ! $PY -c 'import hl7' 2>/dev/null; then
    echo "FAIL $suite: $PY cannot import hl7 (python3-hl7; make deps)"
    exit 1
fi

# track PID: kill it at exit if still running
track() { pids="$pids $1"; }

# ports N: set P1..PN to N consecutive free ports on 127.0.0.1, from a
# random base in 21000..40999 (below the ephemeral range).
ports() {
    tries=0
    while [ $tries -lt 30 ]; do
        base=$((21000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
        list="" i=0
        while [ $i -lt "$1" ]; do list="$list $((base + i))"; i=$((i + 1)); done
        # shellcheck disable=SC2086
        if $PEER free-port $list; then
            i=1
            for p in $list; do eval "P$i=$p"; i=$((i + 1)); done
            return 0
        fi
        tries=$((tries + 1))
    done
    echo "FAIL $suite: no free ports found"
    exit 1
}

# mllp_source NAME PORT [SETTINGS]: one source group for a config.
mllp_source() {
    printf '{ name = "%s"; type = "mllp"; listen = "127.0.0.1:%s"; %s }' "$1" "$2" "$3"
}

# write_conf FILE DATA_DIR SOURCES: a config with those sources (comma
# separated groups), no destinations or routes, the admin API off.
write_conf() {
    cat >"$1" <<EOF
broker = {
  data_dir = "$2";
  admin = { enabled = false; };
  log = { level = "info"; };
};
sources = ( $3 );
EOF
}

lines() { wc -l <"$1" | tr -d ' '; }

# gone PID: the process has exited (a zombie counts).
gone() {
    [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# wait_for FILE FROM PATTERN SECONDS: PATTERN (grep -E) in FILE from line FROM.
wait_for() {
    n=0
    while [ "$n" -lt $(($4 * 10)) ]; do
        tail -n "+$2" "$1" 2>/dev/null | grep -Eq -- "$3" && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# until_true SECONDS CMD...: poll CMD every 0.1 s until it succeeds (0) or
# SECONDS pass (1). CMD sees the variables it sets (no subshell); n and t
# are this function's.
until_true() {
    t=$1; shift
    n=0
    while [ "$n" -lt $((t * 10)) ]; do
        "$@" && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# start_daemon CONF LOG PORT...: start hl7brokerd (pid in $dpid) and wait
# until it logs "running" and every PORT accepts connections.
start_daemon() {
    conf=$1 log=$2
    shift 2
    : >"$log"
    "$BROKERD" -c "$conf" 2>>"$log" &
    dpid=$!
    track $dpid
    wait_for "$log" 1 'component=daemon msg=running' 10 || return 1
    for p in "$@"; do
        $PEER wait-port "$p" 10 || return 1
    done
    return 0
}

# stop PID SIGNAL SECONDS: signal and wait for the exit; rc is its status
# (137 and return 1 when it had to be killed).
stop() {
    kill "-$2" "$1" 2>/dev/null
    n=0
    while [ "$n" -lt $(($3 * 10)) ] && ! gone "$1"; do
        sleep 0.1
        n=$((n + 1))
    done
    if ! gone "$1"; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        rc=137
        return 1
    fi
    wait "$1"
    rc=$?
    return 0
}

# wait_pid PID SECONDS: wait for a child to exit (killing it after
# SECONDS); rc is its status.
wait_pid() {
    n=0
    while [ "$n" -lt $(($2 * 10)) ] && ! gone "$1"; do
        sleep 0.1
        n=$((n + 1))
    done
    gone "$1" || kill -KILL "$1" 2>/dev/null
    wait "$1"
    rc=$?
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# result FILE KEY: a value from a mllp_load RESULT line.
result() { sed -n "s/^RESULT .*[ ]$2=\([^ ]*\).*/\1/p" "$1" | tail -n 1; }

# the MSH-10 of a sample file
control_id() { "$HL7CTL" parse "$1" | sed -n 's/^  MSH-10 = //p' | head -n 1; }

# enhanced FILE: MSH-15 or MSH-16 is non-empty (the codec's rule): C* codes
enhanced() { "$HL7CTL" parse "$1" | grep -Eq '^  MSH-1[56]( |$)'; }

# ack_fields FILE: "MSA-1 MSA-2" of an ACK printed one segment per line
ack_fields() {
    awk '/^MSA/ { s = substr($0, 4, 1); n = split($0, f, s); print f[2], f[3]; exit }' "$1"
}

# has_err FILE CODE: the ACK in FILE has an ERR segment carrying table 0357
# CODE (ERR-1 before v2.5, ERR-3 from v2.5 on).
has_err() {
    grep -Eq "^ERR.(.*[|^])?$2([&^|]|\$)" "$1"
}

# store_check DATA ACKED...: every control id in the ACKED files is stored
# (read with mdb_dump, not through the daemon), and no (source, control id)
# is stored twice. Sets stored, missing, dups; leaves the lists in
# $tmp/missing and $tmp/dups.
store_check() {
    d=$1
    shift
    $PEER store-ids "$d" >"$tmp/stored" || { stored=0; missing=-1; dups=-1; return 1; }
    stored=$(lines "$tmp/stored")
    awk '{ print $1 " " $2 }' "$tmp/stored" | sort | uniq -d >"$tmp/dups"
    awk '{ print $2 }' "$tmp/stored" | sort -u >"$tmp/stored_ids"
    cat "$@" | sort -u | comm -23 - "$tmp/stored_ids" >"$tmp/missing"
    missing=$(lines "$tmp/missing")
    dups=$(lines "$tmp/dups")
    [ "$missing" -eq 0 ] && [ "$dups" -eq 0 ]
}
