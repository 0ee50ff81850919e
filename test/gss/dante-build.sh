#!/bin/sh
# Build Dante's sockd WITH GSS-API (Debian builds it --without-gssapi), as an
# independent RFC 1961 server for test/gss/crosscheck.sh.
#
# usage: test/gss/dante-build.sh [--force] [--quiet]
#   cache dir: $DANTE_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/socks5-dante
#   jobs:      $DANTE_JOBS (default 1)
# Prints the path of the built sockd on stdout (last line); everything else
# goes to stderr or to $CACHE/build.log.  Skips the build when the cache
# already holds a working GSS-API sockd.
#
# Source: Debian's own source package ("apt-get source dante": upstream
# tarball + Debian patches, unpacked with dpkg-source).  If the machine has no
# deb-src entry, a private apt configuration inside the cache dir is used
# (same URIs/suites as the machine's Debian sources), so /etc/apt is never
# touched.  Build dependencies are installed with apt-get when running as
# root; otherwise the missing ones are named and the script exits 1.
#
# No autotools are needed: the Debian patches touch configure.ac/Makefile.am
# only cosmetically (CFLAGS stripping, typos, libdl path for preloading which
# we disable), so the shipped configure/Makefile.in are used, their
# timestamps refreshed so make does not try to rerun automake.
# Takes ~2.5 min on 2 cores (configure ~2 min: 770 checks; make -j1 ~30 s).
set -eu

force=0 quiet=0
for a in "$@"; do
    case $a in
        --force) force=1 ;;
        --quiet) quiet=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "dante-build.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

CACHE=${DANTE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/socks5-dante}
JOBS=${DANTE_JOBS:-1}
SOCKD=$CACHE/sockd
mkdir -p "$CACHE"
say() { [ "$quiet" = 1 ] || echo "dante-build.sh: $*" >&2; }

# A sockd that parses a gssapi configuration was built with GSS-API.
works() {
    [ -x "$SOCKD" ] || return 1
    t=$CACHE/check.conf
    cat > "$t" <<EOF
logoutput: /dev/null
internal: 127.0.0.1 port = 1
external: 127.0.0.1
clientmethod: none
socksmethod: gssapi
client pass {
  from: 127.0.0.1/32 to: 0.0.0.0/0
  gssapi.keytab: FILE:/nonexistent.keytab
  gssapi.servicename: rcmd
  gssapi.enctype: clear integrity confidentiality
}
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 socksmethod: gssapi }
EOF
    "$SOCKD" -V -f "$t" >/dev/null 2>&1
}

if [ "$force" = 0 ] && works; then
    say "cached: $SOCKD"
    echo "$SOCKD"
    exit 0
fi

# ---------------------------------------------------------------- build deps
# program:package
need="gcc:gcc make:make krb5-config:libkrb5-dev dpkg-source:dpkg-dev xz:xz-utils apt-get:apt"
missing=""
for pp in $need; do
    prog=${pp%%:*} pkg=${pp#*:}
    command -v "$prog" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -e /usr/include/gssapi/gssapi.h ] || missing="$missing libkrb5-dev"
[ -e /usr/include/stdio.h ] || missing="$missing libc6-dev"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing:$missing"
        apt-get install -y --no-install-recommends $missing >&2 ||
            { apt-get update >&2 &&
              apt-get install -y --no-install-recommends $missing >&2; }
    else
        echo "dante-build.sh: missing build dependencies (as root: apt-get install$missing)" >&2
        exit 1
    fi
fi

# -------------------------------------------------------------------- source
SRC=$CACHE/src
mkdir -p "$SRC"
dsc=$(ls "$SRC"/dante_*.dsc 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$dsc" ]; then
    say "fetching Debian source package dante"
    if ! (cd "$SRC" && apt-get source --download-only dante) >"$CACHE/fetch.log" 2>&1; then
        # No deb-src on this machine: a private apt setup in the cache dir.
        say "no deb-src configured; using a private apt source list in $CACHE/apt"
        A=$CACHE/apt
        mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/sources.list.d"
        : > "$A/sources.list"
        n=0
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            n=$((n + 1))
            sed 's/^Types:.*/Types: deb-src/' "$f" > "$A/sources.list.d/src$n.sources"
        done
        if [ -f /etc/apt/sources.list ]; then
            sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$A/sources.list"
        fi
        set -- -o "Dir::Etc::SourceList=$A/sources.list" \
               -o "Dir::Etc::SourceParts=$A/sources.list.d" \
               -o "Dir::State::Lists=$A/lists" \
               -o "Dir::Cache=$A/cache" \
               -o "Debug::NoLocking=1"
        apt-get "$@" update >>"$CACHE/fetch.log" 2>&1 || true
        (cd "$SRC" && apt-get "$@" source --download-only dante) >>"$CACHE/fetch.log" 2>&1 || {
            echo "dante-build.sh: cannot fetch the dante source package; see $CACHE/fetch.log" >&2
            tail -n 5 "$CACHE/fetch.log" >&2
            exit 1
        }
    fi
    dsc=$(ls "$SRC"/dante_*.dsc | sort | tail -n 1)
fi
say "source: $dsc"

B=$CACHE/build
rm -rf "$B"
dpkg-source --no-check -x "$dsc" "$B" >"$CACHE/build.log" 2>&1 || {
    echo "dante-build.sh: dpkg-source -x failed; see $CACHE/build.log" >&2; exit 1; }

# --------------------------------------------------------------------- build
cd "$B"
# Generated files newer than their (patched) inputs: no autotools rerun.
touch aclocal.m4
sleep 1
touch configure include/autoconf.h.in
find . -name Makefile.in -exec touch {} +
start=$(date +%s)
say "configure (about 2 minutes)"
./configure --disable-client --disable-preload --disable-pidfile \
    --with-krb5-config="$(command -v krb5-config)" \
    --without-pam --without-libwrap --without-sasl --without-ldap \
    --without-upnp --without-bsdauth >>"$CACHE/build.log" 2>&1 || {
    echo "dante-build.sh: configure failed; see $CACHE/build.log" >&2; exit 1; }
grep -q '^GSSAPI: *Enabled' "$CACHE/build.log" || {
    echo "dante-build.sh: configure did not enable GSSAPI; see $CACHE/build.log" >&2
    grep -i 'gssapi' "$CACHE/build.log" | tail -n 5 >&2
    exit 1; }
say "make -j$JOBS"
make -j"$JOBS" >>"$CACHE/build.log" 2>&1 || {
    echo "dante-build.sh: make failed; see $CACHE/build.log" >&2
    tail -n 20 "$CACHE/build.log" >&2; exit 1; }
cp sockd/sockd "$SOCKD.new"
mv "$SOCKD.new" "$SOCKD"
end=$(date +%s)
{
    echo "source: $(basename "$dsc")"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((end - start)) s"
} > "$CACHE/buildinfo"
works || { echo "dante-build.sh: built sockd does not accept a gssapi config" >&2; exit 1; }
say "built in $((end - start)) s"
echo "$SOCKD"
