#!/bin/sh
# hl7ctl route-test: stdout, stderr and exit status of each case must match
# the files in test/cli/route_test/ byte for byte (NAME.out, NAME.err,
# NAME.status). A case is one line of check below; after a deliberate
# change of output, UPDATE=1 sh test/cli/route_test.sh rewrites the
# expected files (read the diff before committing them).
BUILD=${BUILD:-build/default}
CTL=$BUILD/hl7ctl
S=../shared/samples
D=test/cli/route_test
R=test/data/routes
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# git keeps no file modes: the keys must be private or they are refused
chmod 600 conf/keys/research-example.key "$R/test.key"

check() {   # name, then the hl7ctl arguments
    name=$1; shift
    "$CTL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    echo $? >"$tmp/status"
    if [ -n "$UPDATE" ]; then
        for k in out err status; do cp "$tmp/$k" "$D/$name.$k"; done
    fi
    for k in out err status; do
        if ! cmp -s "$tmp/$k" "$D/$name.$k"; then
            echo "FAIL route-test $name ($k differs)"
            diff "$D/$name.$k" "$tmp/$k" | head -20
            return
        fi
    done
    echo "PASS route-test $name"
}

# README's "Writing a first route in five minutes" (its output is quoted there)
check first_route route-test -c conf/examples/first-route.conf "$S/adt_a01.hl7" "$S/oru_r01.hl7"
# conf/london.conf on samples from its sources
check london_adt_a01 route-test -c conf/london.conf --source rlh-pas "$S/adt_a01.hl7"
check london_adt_a03 route-test -c conf/london.conf --source rlh-pas "$S/adt_a03.hl7"
check london_a08_mh route-test -c conf/london.conf --source elft-mh "$S/adt_a08_escapes.hl7"
check london_oru route-test -c conf/london.conf --source rlh-path "$S/oru_r01.hl7"
# the test config: JSON, a batch from any source, one route, control bytes
check routes_json route-test -c "$R/routes.conf" --source lab --route results-json "$S/oru_r01.hl7"
check routes_batch route-test -c "$R/routes.conf" "$S/batch_oru.hl7"
check routes_escapes route-test -c "$R/routes.conf" --source pas "$S/adt_a08_escapes.hl7"
check routes_tab route-test -c "$R/routes.conf" --route everything "$D/cases/tab.hl7"
check routes_raw route-test -c "$R/routes.conf" --source pas --route adt-to-hie --raw "$S/adt_a01_lf.hl7"
# a message that does not parse: the others still run, exit 1
check bad_message route-test -c "$R/routes.conf" --route everything "$S/adt_a01_lf.hl7" "$S/bad/no_msh.hl7"
# config errors: exit 2, every error with its file and line
check bad_routes route-test -c "$R/bad_routes.conf" "$S/adt_a01.hl7"
check bad_config route-test -c test/data/config/bad_refs.conf "$S/adt_a01.hl7"
check unknown_source route-test -c "$R/routes.conf" --source nowhere "$S/adt_a01.hl7"
check no_config route-test "$S/adt_a01.hl7"
# ITK requests (test/data/routes/itk.conf): the metadata read, a route on
# itk.service and itk.address, objected(cda.nhs_number, 'research') with
# an objections file listing 9990000018, itk-to-mdm output shown, an HL7 v2
# step first refused; an envelope that is not valid; mdm-to-itk on a letter
I=$R/itk.conf
check itk_summary route-test -c "$I" --source epr "$S/itk/discharge_summary_soap.xml"
check itk_addresses route-test -c "$I" --source epr --route summaries-to-gp "$R/itk_three_addresses.xml"
check itk_objected route-test -c "$I" --route research "$S/itk/discharge_summary_soap.xml"
check itk_raw route-test -c "$I" --route summaries-to-gp --raw "$S/itk/discharge_summary_soap.xml"
check itk_bad route-test -c "$I" "$S/itk/bad_manifest_mismatch.xml"
check itk_letter route-test -c "$I" --source pas --route letters-to-itk "$S/mdm_t02_letter.hl7"
check itk_bad_convert route-test -c "$R/bad_itk_transforms.conf" "$S/itk/discharge_summary_soap.xml"

# standard input is a file like any other
"$CTL" route-test -c "$R/routes.conf" --source pas --route adt-to-hie --raw - \
    <"$S/adt_a01_lf.hl7" >"$tmp/stdin" 2>/dev/null
if cmp -s "$tmp/stdin" "$D/routes_raw.out"; then
    echo "PASS route-test stdin"
else
    echo "FAIL route-test stdin"
fi

"$CTL" route-test --help | grep -q '^usage: hl7ctl route-test' \
    && echo "PASS route-test --help" || echo "FAIL route-test --help"
"$CTL" --help | grep -q 'route-test' \
    && echo "PASS hl7ctl --help lists route-test" || echo "FAIL hl7ctl --help lists route-test"
