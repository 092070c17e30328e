#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# Does nothing when all are present; says what it installs; fails clearly.
missing=""
for p in "$@"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$st" in
        *"ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "make deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "make deps: missing packages:$missing; run 'make deps' as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq; then
    echo "make deps: apt-get update failed; cannot install:$missing" >&2
    exit 1
fi
if ! $sudo apt-get install -y -qq --no-install-recommends $missing; then
    echo "make deps: apt-get install failed for:$missing" >&2
    exit 1
fi
echo "make deps: installed:$missing"
