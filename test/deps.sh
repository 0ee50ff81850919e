#!/bin/sh
# deps.sh -- check (and, as root, install) what the test suite needs:
# tclsh with the tcltest, Expect and udp (tcl-udp) packages.
# Usage: sh test/deps.sh        exit 0 when everything is present.

PKGS="tcl expect tcl-udp"
INSTALL="DEBIAN_FRONTEND=noninteractive apt-get install -y $PKGS"

check() {
    command -v tclsh >/dev/null 2>&1 || { echo "missing: tclsh"; return 1; }
    for p in tcltest Expect udp; do
        if ! echo "if {[catch {package require $p}]} {exit 1}" |
                tclsh >/dev/null 2>&1; then
            echo "missing: Tcl package $p"
            return 1
        fi
    done
    return 0
}

if check; then
    echo "test dependencies present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install them with:"
    echo "  sudo apt-get update && sudo $INSTALL"
    exit 1
fi

apt-get update || exit 1
env DEBIAN_FRONTEND=noninteractive apt-get install -y $PKGS || exit 1
if check; then
    echo "test dependencies installed"
    exit 0
fi
echo "installation did not provide all dependencies" >&2
exit 1
