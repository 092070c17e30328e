#!/bin/sh
# daemon.sh: hl7brokerd as a process: --version, --help, usage errors,
# --check on good and bad configs (and under valgrind), then a real run on
# a copy of conf/hl7broker.conf: the summary it logs, SIGHUP with a broken
# file (refused, still running) and with a changed one (applied), SIGTERM
# and SIGINT (exit 0). Prints "PASS daemon: ..." / "FAIL daemon: ...".
# Run from the repository root; uses 127.0.0.1 only; every wait is bounded.
BUILD=${BUILD:-build/default}
BROKERD=$BUILD/hl7brokerd
DATA=test/data/config

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hl7brokerd-test.XXXXXX") || exit 1
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass() { echo "PASS daemon: $1"; }
fail() {
    echo "FAIL daemon: $1"
    if [ -n "$2" ] && [ -f "$2" ]; then sed 's/^/    | /' "$2" | tail -n 30; fi
}

# wait_for FILE FROM PATTERN SECONDS: PATTERN (grep -E) in FILE from line
# FROM on, polled every 0.1 s for at most SECONDS.
wait_for() {
    n=0
    while [ "$n" -lt $(($4 * 10)) ]; do
        tail -n "+$2" "$1" 2>/dev/null | grep -Eq -- "$3" && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# gone PID: the process has exited (a zombie counts: it only waits for us).
gone() {
    [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# stop PID SIGNAL SECONDS: send SIGNAL, wait at most SECONDS for the exit,
# set rc to the exit status (KILLing it and returning 1 if it hangs).
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

lines() { wc -l < "$1" | tr -d ' '; }

if [ ! -x "$BROKERD" ]; then
    echo "FAIL daemon: $BROKERD is not built"
    exit 1
fi

# ------------------------------------------------------------ options

version=$(sed -n 's/^#define HL7BROKER_VERSION "\(.*\)"/\1/p' include/version.h)
out=$("$BROKERD" --version); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "hl7brokerd $version" ]; then pass "--version"
else fail "--version (rc=$rc, got '$out')"; fi

"$BROKERD" --help >"$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q -- '--check' "$tmp/out" && grep -q -- '--config FILE' "$tmp/out" &&
   grep -q -- '--syslog' "$tmp/out"; then pass "--help"
else fail "--help (rc=$rc)" "$tmp/out"; fi

"$BROKERD" -h >/dev/null 2>&1; rc1=$?
"$BROKERD" --no-such-option >"$tmp/out" 2>&1; rc2=$?
"$BROKERD" stray-argument >/dev/null 2>&1; rc3=$?
"$BROKERD" -c >/dev/null 2>&1; rc4=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] && [ $rc4 -eq 2 ] &&
   grep -q '^usage:' "$tmp/out"; then pass "usage errors exit 2"
else fail "usage errors exit 2 (rc: -h $rc1, bad option $rc2, stray $rc3, -c $rc4)" "$tmp/out"; fi

# ------------------------------------------------------------- --check

for conf in conf/hl7broker.conf conf/london.conf $DATA/good_full.conf; do
    "$BROKERD" -c "$conf" --check >"$tmp/out" 2>&1; rc=$?
    if [ $rc -eq 0 ] && grep -q "^$conf: OK (sources=" "$tmp/out"; then pass "--check $conf"
    else fail "--check $conf (rc=$rc)" "$tmp/out"; fi
done

"$BROKERD" --check >"$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "^conf/hl7broker.conf: OK" "$tmp/out"; then
    pass "--check defaults to conf/hl7broker.conf"
else fail "--check defaults to conf/hl7broker.conf (rc=$rc)" "$tmp/out"; fi

# Every bad file: exit 1, and stderr is exactly its "# expect:" lines
# (with the file name in front) and a count.
bad_ok=0 bad_failed=""
for conf in $DATA/bad_*.conf; do
    "$BROKERD" -c "$conf" --check >"$tmp/out" 2>"$tmp/err"; rc=$?
    sed -n "s|^# expect: |$conf:|p" "$conf" >"$tmp/want"
    n=$(lines "$tmp/want")
    head -n "$n" "$tmp/err" >"$tmp/got"
    ok=1
    [ $rc -eq 1 ] || ok=0
    [ -s "$tmp/out" ] && ok=0
    # each expected line is a prefix of the line printed at its place
    i=1
    while [ $i -le "$n" ]; do
        w=$(sed -n "${i}p" "$tmp/want"); g=$(sed -n "${i}p" "$tmp/got")
        case "$g" in "$w"*) ;; *) ok=0 ;; esac
        i=$((i + 1))
    done
    s="s"; [ "$n" -eq 1 ] && s=""
    [ "$(tail -n 1 "$tmp/err")" = "$conf: $n error$s" ] || ok=0
    [ "$(lines "$tmp/err")" -eq $((n + 1)) ] || ok=0
    if [ $ok -eq 1 ]; then bad_ok=$((bad_ok + 1)); else bad_failed="$bad_failed $conf"; fi
done
if [ -z "$bad_failed" ] && [ $bad_ok -gt 0 ]; then pass "--check prints every error of $bad_ok bad configs"
else fail "--check on bad configs:$bad_failed"; fi

"$BROKERD" -c "$tmp/none.conf" --check >"$tmp/out" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -q "^$tmp/none.conf: cannot read the config file: No such file or directory" "$tmp/out"; then
    pass "--check on a missing file"
else fail "--check on a missing file (rc=$rc)" "$tmp/out"; fi

# valgrind (not on sanitizer builds, which it cannot run)
case "$BUILD" in
*san-*) ;;
*)
    if command -v valgrind >/dev/null 2>&1; then
        vg="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect"
        $vg "$BROKERD" -c conf/london.conf --check >/dev/null 2>"$tmp/vg1"; rc1=$?
        $vg "$BROKERD" -c $DATA/bad_types.conf --check >/dev/null 2>"$tmp/vg2"; rc2=$?
        if [ $rc1 -eq 0 ] && [ $rc2 -eq 1 ]; then pass "valgrind clean on --check"
        else cat "$tmp/vg2" >>"$tmp/vg1"; fail "valgrind on --check (rc $rc1 $rc2)" "$tmp/vg1"; fi
    fi
    ;;
esac

# ------------------------------------------------------------- running

# A copy of the default config with its own ports and directories.
base=$((20000 + $$ % 20000))
port=$base
admin=$((base + 1))
port2=$((base + 2))
conf=$tmp/broker.conf
log=$tmp/broker.log
sed -e "s|\"var/data\"|\"$tmp/data\"|" -e "s|\"var/out\"|\"$tmp/out\"|" \
    -e "s|127.0.0.1:2575|127.0.0.1:$port|" -e "s|127.0.0.1:8088|127.0.0.1:$admin|" \
    conf/hl7broker.conf >"$conf"
cp "$conf" "$tmp/good.conf"

"$BROKERD" -c "$conf" 2>"$log" &
pid=$!
if wait_for "$log" 1 'component=daemon msg=running' 10; then pass "starts and runs"
else fail "starts and runs" "$log"; fi

ok=1
grep -q "level=info component=daemon msg=starting version=$version pid=$pid config=$conf\$" "$log" || ok=0
grep -q "component=config msg=source name=local-mllp type=mllp check_nhs_number=false listen=127.0.0.1:$port allow=127.0.0.1/32,::1/128 commit_ack=false tls=off\$" "$log" || ok=0
grep -q "component=config msg=destination name=local-file type=file paused=false directory=$tmp/out\$" "$log" || ok=0
grep -q "component=config msg=route name=everything-to-file from=local-mllp transform=0 to=local-file\$" "$log" || ok=0
grep -q "component=config msg=table name=site-codes file=conf/tables/site-codes.csv\$" "$log" || ok=0
grep -q "component=config msg=broker data_dir=$tmp/data .*admin.listen=127.0.0.1:$admin" "$log" || ok=0
grep -q "component=config msg=\"config loaded\" file=$conf sources=1 destinations=1 routes=1 tables=1\$" "$log" || ok=0
if [ $ok -eq 1 ]; then pass "logs a summary line per source, destination, route and a count"
else fail "logs a summary" "$log"; fi

if [ -d "$tmp/data" ] && grep -q "msg=\"created the data directory\" path=$tmp/data" "$log"; then
    pass "creates data_dir"
else fail "creates data_dir" "$log"; fi

if awk '!/^ts=[0-9-]+T[0-9:.]+Z level=(debug|info|warn|error) component=[^ ]+ msg=/ { bad = 1 } END { exit bad }' "$log"; then
    pass "every line is logfmt with ts, level, component, msg"
else fail "every line is logfmt" "$log"; fi

# SIGHUP with a broken file: refused, every error logged, still running.
{
    sed -e "s|127.0.0.1:$port|127.0.0.1:99999|" -e 's|from = \[ "local-mllp" \]|from = [ "nobody" ]|' \
        "$tmp/good.conf"
    echo 'bogus = 1;'
} >"$conf"
from=$(($(lines "$log") + 1))
kill -HUP "$pid"
if wait_for "$log" "$from" 'msg="reload refused; the running config stays"' 10; then
    tail -n "+$from" "$log" >"$tmp/hup1"
    ok=1
    grep -q 'level=error component=config msg="config error" .*setting=sources\[0\]\.listen error=' "$tmp/hup1" || ok=0
    grep -q "level=error component=config msg=\"config error\" file=$conf line=[0-9]* setting=bogus error=\"unknown setting\"" "$tmp/hup1" || ok=0
    grep -q 'setting=routes\[0\]\.from\[0\] error="no source is named \\"nobody\\""' "$tmp/hup1" || ok=0
    grep -q 'msg="reload refused; the running config stays" .*errors=' "$tmp/hup1" || ok=0
    grep -q 'msg="config reloaded"' "$tmp/hup1" && ok=0
    if [ $ok -eq 1 ] && ! gone "$pid"; then pass "SIGHUP with a broken file logs every error and keeps running"
    else fail "SIGHUP with a broken file" "$tmp/hup1"; fi
else
    fail "SIGHUP with a broken file: no refusal logged" "$log"
fi

# SIGHUP with a valid, changed file: applied, the new summary logged.
sed -e 's|^sources = (|sources = (\
  { name = "second-mllp"; type = "mllp"; listen = "127.0.0.1:'"$port2"'"; },|' \
    "$tmp/good.conf" >"$conf"
from=$(($(lines "$log") + 1))
kill -HUP "$pid"
if wait_for "$log" "$from" 'msg="config reloaded"' 10; then
    tail -n "+$from" "$log" >"$tmp/hup2"
    ok=1
    grep -q "component=config msg=reloading file=$conf signal=SIGHUP" "$tmp/hup2" || ok=0
    grep -q "msg=source name=second-mllp type=mllp check_nhs_number=false listen=127.0.0.1:$port2 " "$tmp/hup2" || ok=0
    grep -q "msg=source name=local-mllp type=mllp check_nhs_number=false listen=127.0.0.1:$port " "$tmp/hup2" || ok=0
    grep -q "msg=\"config reloaded\" file=$conf sources=2 destinations=1 routes=1 tables=1\$" "$tmp/hup2" || ok=0
    grep -q 'level=error' "$tmp/hup2" && ok=0
    if [ $ok -eq 1 ] && ! gone "$pid"; then pass "SIGHUP with a valid changed file applies it and logs the new summary"
    else fail "SIGHUP with a valid changed file" "$tmp/hup2"; fi
else
    fail "SIGHUP with a valid changed file: no reload logged" "$log"
fi

# SIGTERM: exits 0 within 5 s, saying so.
if stop "$pid" TERM 5 && [ "$rc" -eq 0 ] &&
   grep -q 'component=daemon msg=stopping signal=SIGTERM' "$log" &&
   grep -q 'component=daemon msg=stopped exit=0' "$log"; then
    pass "SIGTERM stops it with exit 0"
else fail "SIGTERM stops it with exit 0 (rc=$rc)" "$log"; fi
pid=""

# SIGINT, likewise. (A fresh log: the old one would show "running" before
# the new process had even opened it.)
cp "$tmp/good.conf" "$conf"
log=$tmp/broker-int.log
"$BROKERD" -c "$conf" 2>"$log" &
pid=$!
if wait_for "$log" 1 'component=daemon msg=running' 10 && stop "$pid" INT 5 && [ "$rc" -eq 0 ] &&
   grep -q 'msg=stopping signal=SIGINT' "$log"; then
    pass "SIGINT stops it with exit 0"
else fail "SIGINT stops it with exit 0 (rc=$rc)" "$log"; fi
pid=""

# A bad config: refuses to start, exit 1, errors in logfmt.
log=$tmp/broker-bad.log
"$BROKERD" -c $DATA/bad_range.conf 2>"$log" >/dev/null &
pid=$!
n=0
while [ $n -lt 50 ] && ! gone "$pid"; do sleep 0.1; n=$((n + 1)); done
if gone "$pid"; then wait "$pid"; rc=$?; else stop "$pid" KILL 1; rc=137; fi
pid=""
if [ $rc -eq 1 ] && [ "$(grep -c 'msg="config error"' "$log")" -eq 5 ] &&
   grep -q 'msg="cannot start: the config is not valid" .*errors=5' "$log"; then
    pass "a bad config stops it starting, exit 1"
else fail "a bad config stops it starting (rc=$rc)" "$log"; fi
