#!/bin/sh
# file_source.sh: the file source in the real daemon. Good files (one
# message, several, a batch) are stored with the file name as peer, routed
# to a file destination, and moved to done/; bad ones go to error/ with a
# .reason beside them; a file written slowly, or under .tmp, is never read
# early; kill -9 while files are being taken, then a restart: files left
# in the work folder are taken again, nothing lost or stored twice, and
# nothing was in done/ before its messages were committed.
suite=file_source
. test/integration/lib/ingest.sh

data=$tmp/data
in=$tmp/in
out=$tmp/out
stage=$tmp/stage   # files are made here, then renamed in (same filesystem)
mkdir -p "$stage"
S=$SAMPLES
cat >"$tmp/broker.conf" <<EOF
broker = { data_dir = "$data"; admin = { enabled = false; }; log = { level = "info"; }; };
sources = ( { name = "drop"; type = "file"; directory = "$in"; poll_ms = 100; settle_ms = 400; } );
destinations = ( { name = "files"; type = "file"; directory = "$out"; } );
routes = ( { name = "all"; from = [ "drop" ]; to = [ "files" ]; } );
EOF

# store_rows: every stored message as "SOURCE PEER CONTROL_ID" (mdb_dump)
store_rows() {
    $PY -c 'import sys
sys.path.insert(0, "test/integration/lib")
import peer
for v in peer.dump(sys.argv[1], "messages"):
    f, _ = peer.strings(v, 10, 11)
    print(f[0], f[1], f[7])' "$data" | sort
}

# put NAME FILE...: the files concatenated into $in/NAME, atomically
put() {
    name=$1
    shift
    cat "$@" >"$stage/$name"
    mv "$stage/$name" "$in/$name"
}

# count_in DIR: regular files in DIR, dot-files aside
count_in() { find "$1" -maxdepth 1 -type f ! -name '.*' 2>/dev/null | wc -l | tr -d ' '; }

# wait_count DIR N SECONDS
wait_count() {
    n=0
    while [ "$n" -lt $(($3 * 10)) ]; do
        [ "$(count_in "$1")" -ge "$2" ] && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# a config that names a regular file as the directory: refused at load
printf 'broker = { data_dir = "%s"; };\nsources = ( { name = "d"; type = "file"; directory = "%s"; } );\n' \
    "$data" "$tmp/broker.conf" >"$tmp/bad.conf"
"$BROKERD" -c "$tmp/bad.conf" --check >"$tmp/check.out" 2>&1
[ $? -ne 0 ] && grep -q 'setting sources\[0\].directory: .* is not a directory' "$tmp/check.out"
check "a directory that is a regular file is a config error naming the setting" $? "$tmp/check.out"

start_daemon "$tmp/broker.conf" "$tmp/log" || { fail "the broker did not start" "$tmp/log"; exit 1; }

# --- good files
put single.hl7 "$S/adt_a01.hl7"
put several.hl7 "$S/adt_a03.hl7" "$S/oru_r01.hl7" "$S/adt_a40_merge.hl7"
put batch.hl7 "$S/batch_oru.hl7"
wait_count "$in/done" 3 10 && [ -f "$in/done/single.hl7" ] && [ -f "$in/done/several.hl7" ] &&
    [ -f "$in/done/batch.hl7" ] && [ "$(count_in "$in")" -eq 0 ]
check "one message, several in a file, a batch: all moved to done/" $? "$tmp/log"

store_rows >"$tmp/rows"
cat >"$tmp/want" <<EOF
drop batch.hl7 NWPH-B1-001
drop batch.hl7 NWPH-B1-002
drop batch.hl7 NWPH-B1-003
drop several.hl7 GSTT-000991
drop several.hl7 RLH000000187
drop several.hl7 UCLH-LAB-55501
drop single.hl7 RLH000000123
EOF
sort -o "$tmp/want" "$tmp/want"
cmp -s "$tmp/rows" "$tmp/want"
check "the 7 messages are in the store, source drop, peer = the file name" $? "$tmp/rows"

wait_count "$out" 7 10 && [ "$(ls "$out" | grep -c 'NWPH-B1-00[123]\.hl7$')" -eq 3 ] &&
    cmp -s "$out/$(ls "$out" | grep 'RLH000000123')" "$S/adt_a01.hl7"
check "routed: 7 files in the file destination, byte for byte" $?

# --- bad files
put mixed.hl7 "$S/adt_a08_escapes.hl7" "$S/bad/unknown_version.hl7"
put garbage.hl7 "$S/bad/binary_garbage.hl7"
put nomsh.hl7 "$S/bad/no_msh.hl7"
wait_count "$in/error" 6 10
ok=$?
for f in mixed garbage nomsh; do
    [ -f "$in/error/$f.hl7" ] && [ -s "$in/error/$f.hl7.reason" ] || ok=1
done
grep -q 'message 2 of 2 .*MSH-12' "$in/error/mixed.hl7.reason" &&
    grep -q '1 accepted, 0 duplicates, 1 refused' "$in/error/mixed.hl7.reason" &&
    grep -q 'refused whole' "$in/error/garbage.hl7.reason" || ok=1
cmp -s "$in/error/garbage.hl7" "$S/bad/binary_garbage.hl7" || ok=1
[ $ok -eq 0 ]
check "bad files in error/ whole, each with a .reason saying which message and why" $? "$in/error/mixed.hl7.reason"

store_rows | grep -q '^drop mixed.hl7 KCH-77812$' &&
    $PEER store-errors "$data" | grep -q '^drop AR .*MSH-12'
check "of a file with a refused message, the good one is stored, the bad one in the error store" $?

# the same file again: duplicates, so done/ (under a new name: never replaced)
put single.hl7 "$S/adt_a01.hl7"
wait_count "$in/done" 4 10 && [ "$(ls "$in/done" | grep -c '^single\.hl7\.[0-9]*-1$')" -eq 1 ] &&
    [ "$(store_rows | grep -c ' RLH000000123$')" -eq 1 ]
check "a file sent again: duplicates, done/ under a new name, nothing replaced or stored twice" $?

# --- never read early: written slowly under its final name, and under .tmp
before=$(store_rows | wc -l)
sed 's/UCLH-LAB-55501/SLOW-1/' "$S/oru_r01.hl7" >"$stage/slow.src"
sed 's/RLH000000187/SLOW-2/' "$S/adt_a03.hl7" >"$stage/slow2.src"
: >"$in/slow.hl7"
: >"$in/slow2.tmp"
size=$(wc -c <"$stage/slow.src")
step=$((size / 6 + 1))
early=0
i=0
while [ $i -lt 6 ]; do
    dd if="$stage/slow.src" bs=1 skip=$((i * step)) count=$step 2>/dev/null >>"$in/slow.hl7"
    dd if="$stage/slow2.src" bs=1 skip=$((i * step)) count=$step 2>/dev/null >>"$in/slow2.tmp"
    sleep 0.25
    [ -f "$in/slow.hl7" ] && [ -f "$in/slow2.tmp" ] || early=1
    i=$((i + 1))
done
[ $early -eq 0 ] && [ "$(store_rows | wc -l)" -eq "$before" ] && ! ls "$in/error" | grep -q slow
check "a file still being written (pauses under settle_ms), and a .tmp file, are left alone" $?
sleep 1
[ -f "$in/slow2.tmp" ]
r1=$?
mv "$in/slow2.tmp" "$in/slow2.hl7"
wait_count "$in/done" 6 10 && cmp -s "$in/done/slow.hl7" "$stage/slow.src" &&
    cmp -s "$in/done/slow2.hl7" "$stage/slow2.src" && [ $r1 -eq 0 ] &&
    [ "$(count_in "$in/error")" -eq 6 ] && [ "$(store_rows | grep -c ' SLOW-[12]$')" -eq 2 ]
check "once complete (settled; renamed from .tmp) both are taken whole" $? "$tmp/log"

# --- kill -9 while taking 300 files, restart: nothing lost, nothing twice
mkdir "$stage/many"
i=1
while [ $i -le 300 ]; do
    sed "s/RLH000000123/CRASH-$i/" "$S/adt_a01.hl7" >"$stage/many/crash-$i.hl7"
    echo "CRASH-$i" >>"$tmp/crash_ids"
    i=$((i + 1))
done
sort -o "$tmp/crash_ids" "$tmp/crash_ids"
done_before=$(count_in "$in/done")
mv "$stage/many/"* "$in/"
n=0
while [ "$n" -lt 100 ] && [ "$(count_in "$in/done")" -le "$done_before" ]; do
    sleep 0.05
    n=$((n + 1))
done
kill -KILL "$dpid"
wait "$dpid" 2>/dev/null
ls "$in/done" | grep '^crash-' | sed 's/^crash-\([0-9]*\)\.hl7$/CRASH-\1/' | sort >"$tmp/done_at_kill"
work_at_kill=$(count_in "$in/.work")
echo "# at the kill: $(lines "$tmp/done_at_kill") in done/, $work_at_kill in the work folder, $(count_in "$in") waiting"
store_rows | awk '{ print $3 }' | sort >"$tmp/stored_at_kill"
[ "$(comm -23 "$tmp/done_at_kill" "$tmp/stored_at_kill" | wc -l)" -eq 0 ]
check "nothing in done/ whose messages were not committed" $?

start_daemon "$tmp/broker.conf" "$tmp/log2" || { fail "the broker did not restart" "$tmp/log2"; exit 1; }
wait_count "$in/done" $((done_before + 300)) 30
[ "$(count_in "$in/done")" -eq $((done_before + 300)) ] && [ "$(count_in "$in/.work")" -eq 0 ] &&
    [ "$(count_in "$in")" -eq 0 ]
check "after the restart every file reaches done/, the work folder is empty" $? "$tmp/log2"
if [ "$work_at_kill" -gt 0 ]; then
    grep -q 'taking again a file left in the work folder' "$tmp/log2"
    check "files left in the work folder by the kill were taken again at start" $? "$tmp/log2"
else
    echo "# no file was in the work folder at the kill (test_file_source covers taking one again)"
fi
store_rows | awk '{ print $3 }' | grep '^CRASH-' | sort >"$tmp/crash_stored"
cmp -s "$tmp/crash_stored" "$tmp/crash_ids" &&
    [ "$(store_rows | awk '{ print $1, $3 }' | sort | uniq -d | wc -l)" -eq 0 ]
check "all 300 messages stored once each: none lost, none twice" $?
wait_count "$out" $((300 + 10)) 30
[ "$(ls "$out" | grep -c 'CRASH-')" -eq 300 ]
check "and all 300 routed to the file destination" $?

# --- SIGHUP with the source unchanged keeps it; SIGTERM stops cleanly
kill -HUP "$dpid"
wait_for "$tmp/log2" 1 'msg="config reloaded"' 10 && put after-hup.hl7 "$S/adt_a08_escapes.hl7" &&
    wait_for "$tmp/log2" 1 'file=after-hup.hl7' 10
check "SIGHUP: the source keeps taking files" $? "$tmp/log2"
put last.hl7 "$S/oru_r01.hl7"
stop "$dpid" TERM 10
[ "$rc" -eq 0 ] && [ "$(count_in "$in/.work")" -eq 0 ]
check "SIGTERM: exit 0, nothing half-taken left in the work folder" $? "$tmp/log2"
