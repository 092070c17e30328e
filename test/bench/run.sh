#!/bin/sh
# run.sh: what `make bench` runs. The C codec benchmark, then python-hl7
# (Debian python3-hl7, with /usr/bin/python3) on the very same bytes, and
# one table comparing the two for parse+index, with the ratio C / Python.
#
# usage: run.sh BENCH_BIN
# env:   SAMPLES (default ../shared/samples), BENCH_SECONDS per figure
#        (default 0.3), PYTHON (default /usr/bin/python3)
set -e
bin=${1:?usage: run.sh BENCH_BIN}
samples=${SAMPLES:-../shared/samples}
secs=${BENCH_SECONDS:-0.3}
python=${PYTHON:-/usr/bin/python3}
here=$(dirname "$0")

[ -d "$samples" ] || { echo "bench: no samples directory $samples (set SAMPLES)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
large=$tmp/large_oru_500_obx.hl7

model=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "machine: ${model:-unknown CPU}, $(nproc) CPUs online; $(uname -sr); $(date -u +%Y-%m-%d)"
echo

"$bin" -t "$secs" -o "$large" "$samples" >"$tmp/c.out"
sed '/^BENCH /d' "$tmp/c.out"

if ! "$python" -c 'import hl7' 2>/dev/null; then
    echo "bench: $python cannot import hl7: install python3-hl7 (make deps)" >&2
    exit 1
fi
"$python" "$here/python_bench.py" "$secs" "$samples"/*.hl7 "$large" >"$tmp/py.out"

echo "parse+index, C against $(sed -n 's/^PY version=\([^ ]*\) python=\(.*\)/python-hl7 \1 (Python \2)/p' "$tmp/py.out"), one core each"
echo
awk '
function val(line, key,   i, n, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], key "=") == 1)
            return substr(kv[i], length(key) + 2)
    return ""
}
/^BENCH / { name = val($0, "name"); order[++n] = name; bytes[name] = val($0, "bytes")
            cmb[name] = val($0, "parse_mbps"); cms[name] = val($0, "parse_msgs")
            cerr[name] = val($0, "error") }
/^PY name=/ { name = val($0, "name"); pmb[name] = val($0, "mbps"); pms[name] = val($0, "msgs")
              perr[name] = val($0, "error") }
END {
    print "| message | bytes | C MB/s | C msg/s | python-hl7 MB/s | python-hl7 msg/s | C / python |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for (i = 1; i <= n; i++) {
        m = order[i]
        c1 = cerr[m] != "" ? "error" : sprintf("%.0f", cmb[m])
        c2 = cerr[m] != "" ? "" : sprintf("%.0f", cms[m])
        if (m == "all_samples") {
            # python: each sample once, in turn
            t = 0; b = 0; k = 0
            for (x in pms) if (x != "large_oru_500_obx.hl7" && pms[x] > 0) { t += 1 / pms[x]; b += bytes[x]; k++ }
            if (t > 0) { pmb[m] = b / t / 1e6; pms[m] = k / t }
        }
        p1 = perr[m] != "" ? "error (" perr[m] ")" : (pms[m] == "" ? "-" : sprintf("%.2f", pmb[m]))
        p2 = perr[m] != "" || pms[m] == "" ? "" : sprintf("%.0f", pms[m])
        r = (cerr[m] == "" && pms[m] > 0) ? sprintf("%.0fx", cms[m] / pms[m]) : ""
        label = m == "all_samples" ? "all samples, each in turn" : m
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, bytes[m], c1, c2, p1, p2, r
    }
}' "$tmp/c.out" "$tmp/py.out"
echo
echo "batch_oru.hl7: C splits the batch and parses each message; python-hl7 uses hl7.parse_file."

# The ingest and delivery parts: hl7brokerd end to end over MLLP
# (test/bench/ingest.sh, test/bench/delivery.sh), when the Makefile says
# where its build is.
if [ -n "${INGEST_BUILD:-}" ]; then
    echo
    sh "$here/ingest.sh" "$INGEST_BUILD"
    echo
    sh "$here/delivery.sh" "$INGEST_BUILD"
    echo
    sh "$here/prune.sh" "$INGEST_BUILD"
    echo
    sh "$here/itk.sh" "$INGEST_BUILD"
fi
