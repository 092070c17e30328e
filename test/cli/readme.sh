#!/bin/sh
# The README's configuration reference is the one the daemon prints.
BUILD=${BUILD:-build/default}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed -n '/^<!-- config-reference/,/^<!-- \/config-reference/p' README.md | sed '1d;$d' >"$tmp"
if "$BUILD/hl7brokerd" --config-reference | cmp -s - "$tmp"; then
    echo "PASS README config reference matches hl7brokerd --config-reference"
else
    echo "FAIL README config reference differs from hl7brokerd --config-reference"
    "$BUILD/hl7brokerd" --config-reference | diff "$tmp" - | head -10
fi
