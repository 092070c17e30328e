#!/bin/sh
# hl7ctl parse against every shared sample: stdout, stderr and exit status
# must match the files in test/cli/parse/ byte for byte. To add a case,
# drop a message in test/cli/parse/cases/ and its three expected files
# beside it (NAME.out, NAME.err, NAME.status).
BUILD=${BUILD:-build/default}
CTL=$BUILD/hl7ctl
S=../shared/samples
D=test/cli/parse
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() {   # name, then the hl7ctl arguments
    name=$1; shift
    "$CTL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    echo $? >"$tmp/status"
    for k in out err status; do
        if ! cmp -s "$tmp/$k" "$D/$name.$k"; then
            echo "FAIL parse $name ($k differs)"
            diff "$D/$name.$k" "$tmp/$k" | head -20
            return
        fi
    done
    echo "PASS parse $name"
}

for f in "$S"/*.hl7; do
    n=$(basename "$f" .hl7)
    check "$n" parse "$f"
done
for f in "$S"/bad/*.hl7; do
    n=$(basename "$f" .hl7)
    check "bad_$n" parse "$f"
done
for f in "$D"/cases/*.hl7; do
    [ -f "$f" ] || continue
    check "$(basename "$f" .hl7)" parse "$f"
done

# standard input gives the same tree as the file
"$CTL" parse - <"$S/adt_a01.hl7" >"$tmp/stdin" 2>&1
if sed 's|^# -:|# ../shared/samples/adt_a01.hl7:|' "$tmp/stdin" | cmp -s - "$D/adt_a01.out"; then
    echo "PASS parse stdin"
else
    echo "FAIL parse stdin"
fi

# several files: every one printed, status non-zero if any fails
"$CTL" parse "$S/adt_a01.hl7" "$S/bad/no_msh.hl7" "$S/oru_r01.hl7" >"$tmp/multi" 2>"$tmp/multi.err"
rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c '^# ' "$tmp/multi")" -eq 2 ] && grep -q 'no_msh.hl7: message 1: segment PID' "$tmp/multi.err"; then
    echo "PASS parse several files"
else
    echo "FAIL parse several files (rc=$rc)"
fi

# help, usage errors, limits, unreadable files
"$CTL" parse --help | grep -q '^usage: hl7ctl parse' && echo "PASS parse --help" || echo "FAIL parse --help"
"$CTL" --help | grep -q 'parse' && echo "PASS hl7ctl --help" || echo "FAIL hl7ctl --help"
"$CTL" parse >/dev/null 2>&1; [ $? -eq 2 ] && echo "PASS parse without files" || echo "FAIL parse without files"
"$CTL" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && echo "PASS unknown command" || echo "FAIL unknown command"
"$CTL" parse --max-bytes 100 "$S/adt_a01.hl7" >/dev/null 2>"$tmp/big"
[ $? -eq 1 ] && grep -q 'larger than the maximum of 100 bytes' "$tmp/big" \
    && echo "PASS parse --max-bytes refuses" || echo "FAIL parse --max-bytes refuses"
"$CTL" parse /nonexistent/x.hl7 >/dev/null 2>"$tmp/nf"
[ $? -eq 1 ] && grep -q 'No such file' "$tmp/nf" && echo "PASS parse missing file" || echo "FAIL parse missing file"
