#!/bin/sh
# Run every test: cmocka unit tests, fuzz corpus replays and the shell
# tests of test/cli and test/integration. Ends with "N passed, N failed".
#
# Conventions: a cmocka binary prints its own summary lines; a replay
# binary prints "PASS replay_<target> (<n> inputs)"; a shell test prints a
# line "PASS <name>" or "FAIL <name>" per case.
BUILD=${BUILD:-build/default}
export BUILD
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() {   # add the PASS/FAIL lines and cmocka summaries of $log
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    cp=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    cf=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p + cp))
    failed=$((failed + f + cf))
}

run() {   # run one test program; a crash or non-zero exit with no FAIL counts as one failure
    name=$1; shift
    echo "== $name"
    "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    before=$failed
    count
    if [ $rc -ne 0 ] && [ $failed -eq $before ]; then
        echo "FAIL $name (exit status $rc)"
        failed=$((failed + 1))
    fi
}

for t in "$BUILD"/test/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done

for r in "$BUILD"/test/replay_*; do
    [ -x "$r" ] || continue
    target=${r##*/replay_}
    run "replay $target" "$r" "test/fuzz/corpus/$target"
done

for s in test/cli/*.sh test/integration/*.sh; do
    [ -f "$s" ] || continue
    run "$s" sh "$s"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
