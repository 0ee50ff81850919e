#!/bin/bash
# Cross-check an RFC 1961 (GSS-API, SOCKS5 method X'01') server with
# test/gss/gssclient.py, in a throwaway Kerberos realm (test/gss/realm.py),
# everything on 127.0.0.1.
#
# usage: test/gss/crosscheck.sh [--server dante|socks5] [--binary PATH]
#                               [--keep] [--verbose]
#   --server dante   (default) Dante's sockd built with GSS-API by
#                    test/gss/dante-build.sh (built on first use, ~2.5 min;
#                    $SOCKD overrides the binary)
#   --server socks5  our server, PATH (default ./socks5), started by
#                    start_socks5() below
#   env: SOCKS5_SERVER, SOCKS5_BINARY (same as the options), PYTHON
#        (default /usr/bin/python3, which has python3-gssapi),
#        CROSSCHECK_DEBUG=1 (Dante debug log)
# Prints one line per case, then "N passed, N failed" (", N skipped" when
# some are skipped); exits 0 when nothing failed, 1 otherwise, 77 when the
# prerequisites are missing (the reason is printed; realm.py check).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SERVER=${SOCKS5_SERVER:-dante}
BINARY=${SOCKS5_BINARY:-}
KEEP=0
VERBOSE=0
while [ $# -gt 0 ]; do
    case $1 in
        --server) SERVER=$2; shift 2 ;;
        --server=*) SERVER=${1#*=}; shift ;;
        --binary) BINARY=$2; shift 2 ;;
        --binary=*) BINARY=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --verbose|-v) VERBOSE=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "crosscheck: unknown argument $1" >&2; exit 2 ;;
    esac
done
case $SERVER in
    dante|socks5) ;;
    *) echo "crosscheck: --server dante or socks5, not $SERVER" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
CLIENT="$PYTHON $HERE/gssclient.py"

if ! why=$("$PYTHON" "$HERE/realm.py" check); then
    echo "crosscheck: SKIP $why"
    exit 77
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/crosscheck.XXXXXX")
PIDS=""
SERVER_PID=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        # sockd forks helpers in the session we made for it (setsid below):
        # end that process group, which holds only processes we started.
        kill -KILL -- "-$SERVER_PID" 2>/dev/null
    fi
    [ -f "$W/realm/env" ] && "$PYTHON" "$HERE/realm.py" stop "$W/realm" >/dev/null 2>&1
    if [ "$KEEP" = 1 ]; then
        echo "crosscheck: kept $W" >&2
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

freeport() {
    "$PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

waitport() {  # waitport PORT PID -- until something accepts on 127.0.0.1:PORT
    "$PYTHON" - "$1" "$2" <<'EOF'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
end = time.time() + 10
while time.time() < end:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("exited")
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("timeout")
EOF
}

# ------------------------------------------------------------------- realm
T0=$(date +%s.%N)
mkdir "$W/realm"
if ! "$PYTHON" "$HERE/realm.py" "$W/realm" --watch-pid $$ > "$W/realm.out" 2>&1; then
    echo "crosscheck: realm.py failed:"; cat "$W/realm.out"
    echo "0 passed, 1 failed"
    exit 1
fi
. "$W/realm/env"

# ------------------------------------------------------------ echo targets
for kind in tcp udp; do
    $CLIENT --echo-$kind 0 > "$W/echo-$kind.out" 2>&1 &
    PIDS="$PIDS $!"
done
for kind in tcp udp; do
    for _ in $(seq 100); do [ -s "$W/echo-$kind.out" ] && break; sleep 0.05; done
done
TCP_ECHO=127.0.0.1:$(awk '/^echo:/ {print $4}' "$W/echo-tcp.out")
UDP_ECHO=127.0.0.1:$(awk '/^echo:/ {print $4}' "$W/echo-udp.out")
case "$TCP_ECHO $UDP_ECHO" in
    127.0.0.1:[0-9]*" "127.0.0.1:[0-9]*) ;;
    *) echo "crosscheck: echo servers did not start"; cat "$W"/echo-*.out
       echo "0 passed, 1 failed"; exit 1 ;;
esac

# ------------------------------------------------------------------ server
PORT=$(freeport)
SERVER_LOG=$W/server.log
# Level policy by source address, for the "level not allowed" cases: clients
# from 127.0.0.1 may use levels 0, 1, 2; clients from $STRICT_SOURCE only 2.
# Empty = the server under test cannot be configured so: those cases skip.
STRICT_SOURCE=""

start_dante() {
    local sockd=${SOCKD:-}
    if [ -z "$sockd" ]; then
        sockd=$("$HERE/dante-build.sh" --quiet | tail -n 1) || return 1
    fi
    local debug=0
    [ "${CROSSCHECK_DEBUG:-0}" = 1 ] && debug=1
    cat > "$W/sockd.conf" <<EOF
logoutput: $SERVER_LOG
debug: $debug
internal: 127.0.0.1 port = $PORT
external: 127.0.0.1
clientmethod: none
socksmethod: gssapi
timeout.negotiate: 10
client pass {
  from: 127.0.0.1/32 to: 0.0.0.0/0
  gssapi.keytab: $KRB5_KTNAME
  gssapi.servicename: rcmd
  gssapi.enctype: clear integrity confidentiality
  log: error connect disconnect
}
client pass {
  from: 127.0.0.2/32 to: 0.0.0.0/0
  gssapi.keytab: $KRB5_KTNAME
  gssapi.servicename: rcmd
  gssapi.enctype: confidentiality
  log: error connect disconnect
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect udpassociate udpreply
  socksmethod: gssapi
  log: error connect disconnect
}
EOF
    # own session, so cleanup can end sockd's forked helpers as a group
    setsid "$sockd" -f "$W/sockd.conf" -N 1 > "$W/sockd.out" 2>&1 &
    SERVER_PID=$!
    STRICT_SOURCE=127.0.0.2
    SERVER_DESC="dante $("$sockd" -v 2>&1 | head -n 1)"
}

# Our server: GSS-API required (-g rcmd), the keytab from KRB5_KTNAME in
# the environment, levels 0, 1 and 2. It has no levels by client address,
# so STRICT_SOURCE stays empty and those cases skip (gss.test covers -L).
start_socks5() {
    local bin=${BINARY:-$HERE/../../socks5}
    [ -x "$bin" ] || { echo "crosscheck: no server binary $bin"; return 1; }
    "$bin" -V 2>&1 | grep -q 'with gssapi' ||
        { echo "crosscheck: $bin is not a build with GSS-API"; return 1; }
    setsid "$bin" -l 127.0.0.1 -p "$PORT" -vv -g rcmd \
        -L clear,integrity,confidentiality > "$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SERVER_DESC="socks5 $("$bin" -V)"
}
# ===========================================================================

SERVER_DESC=""
if ! start_$SERVER || [ -z "$SERVER_PID" ]; then
    echo "crosscheck: could not start the $SERVER server"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! err=$(waitport "$PORT" "$SERVER_PID" 2>&1); then
    echo "crosscheck: $SERVER server did not listen on 127.0.0.1:$PORT ($err)"
    tail -n 20 "$W/sockd.out" "$SERVER_LOG" 2>/dev/null
    echo "0 passed, 1 failed"
    exit 1
fi
T1=$(date +%s.%N)
echo "crosscheck: $SERVER_DESC on 127.0.0.1:$PORT, realm $REALM, setup $(secs "$T0" "$T1")s"

# ------------------------------------------------------------------- cases
PASS=0 FAIL=0 SKIP=0 INFO=0
P="--proxy 127.0.0.1:$PORT"

# check NAME EXPECT [MATCH] [DANTE_LOG] -- CLIENT ARGS...
#   EXPECT: ok (exit 0, "gssclient: ok"), refused (exit 1, "gssclient:
#   refused"), info (any result, not counted), or dante=EXPECT,socks5=EXPECT
#   MATCH: extended regex the client's line must match ("" = none)
#   DANTE_LOG: extended regex that must appear in the server log during the
#   case, when the server is dante (the refusal happened for that reason)
check() {
    local name=$1 expect=$2 match=$3 dlog=$4
    shift 5
    case $expect in
        *=*) expect=$(echo "$expect" | tr ',' '\n' | sed -n "s/^$SERVER=//p")
             [ -n "$expect" ] || expect=info ;;
    esac
    local before=0
    [ -f "$SERVER_LOG" ] && before=$(wc -c < "$SERVER_LOG")
    local out rc
    out=$(timeout 60 $CLIENT "$@" 2>"$W/client.err")
    rc=$?
    local line
    line=$(printf '%s\n' "$out" | grep '^gssclient:' | tail -n 1)
    [ -n "$line" ] || line="(no result line, exit $rc) $(tail -n 2 "$W/client.err" | tr '\n' ' ')"
    local ok=1 why=""
    case $expect in
        ok) [ $rc = 0 ] && [ "${line#gssclient: ok}" != "$line" ] ||
                { ok=0; why="expected ok"; } ;;
        refused) [ $rc = 1 ] && [ "${line#gssclient: refused}" != "$line" ] ||
                { ok=0; why="expected refused"; } ;;
        info) ;;
    esac
    if [ $ok = 1 ] && [ -n "$match" ] && ! printf '%s' "$line" | grep -Eq -- "$match"; then
        ok=0; why="expected /$match/"
    fi
    if [ $ok = 1 ] && [ -n "$dlog" ] && [ "$SERVER" = dante ] && [ "$expect" != info ]; then
        local seen=0
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            if tail -c +"$((before + 1))" "$SERVER_LOG" 2>/dev/null | grep -Eq -- "$dlog"; then
                seen=1; break
            fi
            sleep 0.1
        done
        [ $seen = 1 ] || { ok=0; why="dante log lacks /$dlog/"; }
    fi
    if [ "$expect" = info ]; then
        INFO=$((INFO + 1))
        echo "INFO $name: $line"
    elif [ $ok = 1 ]; then
        PASS=$((PASS + 1))
        echo "PASS $name: $line"
    else
        FAIL=$((FAIL + 1))
        echo "FAIL $name ($why): $line"
        [ "$VERBOSE" = 1 ] && sed 's/^/    client: /' "$W/client.err"
        [ -f "$SERVER_LOG" ] && tail -c +"$((before + 1))" "$SERVER_LOG" |
            grep -v ' debug: ' | tail -n 3 | cut -c1-300 | sed 's/^/    server: /'
    fi
}

skip() {
    SKIP=$((SKIP + 1))
    echo "SKIP $1: $2"
}

MiB=1048576
UDPSIZES=1,100,1400,8192,60000

# --- working sessions: levels 0 (non-RFC clear), 1, 2; TCP and UDP
for l in 0 1 2; do
    check "tcp-level$l" ok "level=$l tcp bytes=$MiB" "" -- \
        $P --level $l --connect "$TCP_ECHO" --bytes $MiB
done
for l in 0 1 2; do
    check "udp-level$l" ok "level=$l udp datagrams=10 " "" -- \
        $P --level $l --udp "$UDP_ECHO" --udp-sizes $UDPSIZES --count 2
done
# small tokens: many 01 03 messages for one payload (stream reassembly)
check "tcp-level2-small-tokens" ok "level=2 tcp bytes=200000" "" -- \
    $P --level 2 --connect "$TCP_ECHO" --bytes 200000 --max-token 600
check "methods-00-01" ok "level=2 tcp" "" -- \
    $P --methods 00,01 --level 2 --connect "$TCP_ECHO" --bytes 10000
check "method-00-only" refused "greeting: 05 ff" "" -- \
    $P --methods 00 --connect "$TCP_ECHO"
# RFC 1961 3.3 lets a client go on after its final token; Dante's server
# still answers it with 01 01 00 00 (empty token).  Informational.
check "no-mutual-final-reply" info "" "" -- \
    $P --no-mutual --level 2 --connect "$TCP_ECHO" --bytes 10000

# --- refusals
check "no-ticket" refused "" "" -- \
    $P --no-ticket --connect "$TCP_ECHO"
check "wrong-principal" refused "context: " "not found in keytab" -- \
    $P --service rcmd@otherhost --connect "$TCP_ECHO"
check "tamper-level-token" refused "level: " "Message Integrity Check|malformed" -- \
    $P --level 0 --tamper=level --connect "$TCP_ECHO"
check "tamper-request-level1" refused "request: " "Message Integrity Check" -- \
    $P --level 1 --tamper=request --connect "$TCP_ECHO"
check "tamper-request-level2" refused "request: " "Message Integrity Check" -- \
    $P --level 2 --tamper=request --connect "$TCP_ECHO"
check "tamper-data-level2" refused "data: " "Message Integrity Check" -- \
    $P --level 2 --tamper=data --connect "$TCP_ECHO"
check "tamper-udp-level2" refused "udp: tampered datagram dropped" "Message Integrity Check" -- \
    $P --level 2 --tamper=udp --udp "$UDP_ECHO"
# Level 3: Dante refuses it; socks5 answers with the strongest level it
# allows, 2 here (socks5.1, GSS-API).
if [ "$SERVER" = dante ]; then
    check "level3-selective" refused "level: " "per-message \\(0x3\\)" -- \
        $P --level 3 --connect "$TCP_ECHO"
else
    check "level3-selective" ok "" "" -- \
        $P --level 3 --expect-level 2 --connect "$TCP_ECHO"
fi
check "unwrapped-level-nec" refused "level: " "gss_unwrap" -- \
    $P --level 2 --unwrapped-level --connect "$TCP_ECHO"
check "bad-version" refused "context: " "version on gssapi packet from client: 2" -- \
    $P --bad-version --connect "$TCP_ECHO"
check "stop-mid-exchange" refused "context: " "eof from local client" -- \
    $P --stop-mid-exchange --connect "$TCP_ECHO"
check "oversize-token" refused "context: " "gss_accept_sec_context" -- \
    $P --oversize-token --connect "$TCP_ECHO"
check "replayed-ap-req" refused "context\\(replay\\): " "replay" -- \
    $P --replay --connect "$TCP_ECHO" --bytes 1000
if [ -n "$STRICT_SOURCE" ]; then
    for l in 0 1; do
        check "level$l-not-allowed" refused "level: " "client requests different authentication" -- \
            $P --source "$STRICT_SOURCE" --level $l --connect "$TCP_ECHO"
    done
    check "level2-allowed-strict" ok "level=2 tcp" "" -- \
        $P --source "$STRICT_SOURCE" --level 2 --connect "$TCP_ECHO" --bytes 10000
else
    skip "level-not-allowed" "server under test has no per-client level policy configured"
fi

# --- Dante deviations from RFC 1961: Dante ignores conf_state from
# gss_unwrap (accepts integrity-only tokens at level 2) and the supplementary
# GSS_S_DUPLICATE_TOKEN status (relays a replayed data token).  Informational
# against Dante; our server must refuse them.
check "downgrade-request-level2" "dante=info,socks5=refused" "" "" -- \
    $P --level 2 --downgrade=request --connect "$TCP_ECHO"
check "downgrade-data-level2" "dante=info,socks5=refused" "" "" -- \
    $P --level 2 --downgrade=data --connect "$TCP_ECHO"
check "replayed-data-token" "dante=info,socks5=refused" "" "" -- \
    $P --level 2 --replay-data --connect "$TCP_ECHO"

# --- still serving after all that
check "still-serving" ok "level=2 tcp bytes=$MiB" "" -- \
    $P --level 2 --connect "$TCP_ECHO" --bytes $MiB

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    FAIL=$((FAIL + 1))
    echo "FAIL server-alive: the server exited"
fi

T2=$(date +%s.%N)
echo "crosscheck: cases took $(secs "$T1" "$T2")s"
if [ $SKIP -gt 0 ]; then
    echo "$PASS passed, $FAIL failed, $SKIP skipped"
else
    echo "$PASS passed, $FAIL failed"
fi
[ $FAIL = 0 ]
