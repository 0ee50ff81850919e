# lib.tcl -- shared helpers for the socks5 black-box test suite.
#
# Sourced by every test/*.test file.  Provides: starting/stopping the server
# under test, raw client sockets with deadline-bounded reads, SOCKS5 request
# builders and reply parsers, in-process target servers (echo, sink, source,
# hold, close), an inetd-mode session helper and cleanup of everything started.
#
# The server command comes from the environment variable SOCKS5 (a Tcl list /
# whitespace-separated words, e.g. "qemu-mips ./socks5.mips"); the default is
# the socks5 binary in the parent directory of test/.
#
# Timeouts are in milliseconds and are multiplied by SOCKS5_TEST_SLOW (default
# 1) so that slow targets (emulators, valgrind) can stretch them.
#
# Conventions:
#   * Client channels are binary, unbuffered and non-blocking; every wait
#     services the Tcl event loop, so in-process target servers keep running
#     while a test waits for the proxy.
#   * Byte strings in tests are written as upper-case hex pairs separated by
#     single spaces ("05 01 00").  Reads that end early append a marker word:
#     "eof" (peer closed, by FIN or reset) or "timeout".

package require Tcl 8.6
package require tcltest 2.2
namespace import -force ::tcltest::*

namespace eval ::lib {
    variable testdir [file dirname [file normalize [info script]]]
    variable slow 1
    variable servers {}     ;# pids of running servers started by server_start
    variable pipes          ;# pid -> status pipe of a running server
    array set pipes {}
    variable status         ;# pid -> exit status once reaped
    array set status {}
    variable targets {}     ;# names of running target servers
    variable tmpdir ""
    variable seq 0
    variable wake           ;# per-channel wake-up flags for waits
    array set wake {}
    variable last_close ""  ;# how the last read ended: eof | reset
    variable echo ""        ;# lazily started shared echo target
}

if {[info exists ::env(SOCKS5)] && [string trim $::env(SOCKS5)] ne ""} {
    set ::SOCKS5 $::env(SOCKS5)
} else {
    set ::SOCKS5 [list [file join [file dirname $::lib::testdir] socks5]]
}
if {[info exists ::env(SOCKS5_TEST_SLOW)] &&
        [string is double -strict $::env(SOCKS5_TEST_SLOW)]} {
    set ::lib::slow $::env(SOCKS5_TEST_SLOW)
}

# ---------------------------------------------------------------------------
# Compile-time delays
#
# socks5.c's tunables (#ifndef SOCKS5_NAME at its top) are read from the
# source next to test/, so an assertion about a delay follows the build.
# A file that waits on one of these delays calls quick_server first: when
# the environment names a quick build (SOCKS5_QUICK, a command like SOCKS5,
# built with the -D values in SOCKS5_QUICK_DEFS, e.g.
# "-DSOCKS5_AUTH_DELAY_MS=500"; see QUICKDEFS in the Makefile), the file's
# servers are that build and tunable answers with its values; otherwise
# $SOCKS5 with socks5.c's defaults.
#
# tunable NAME -- the value of SOCKS5_NAME for the servers this file starts
# (e.g. [tunable AUTH_DELAY_MS] -> 1000); errors for an unknown name.
proc tunable {name} {
    if {![info exists ::lib::tunables]} {
        array set ::lib::tunables {}
        set src [::lib::readfile [file join [file dirname $::lib::testdir] socks5.c]]
        foreach {-> n v} [regexp -all -inline -line \
                {^#define[ \t]+SOCKS5_([A-Z0-9_]+)[ \t]+([0-9]+)\y} $src] {
            if {![info exists ::lib::tunables($n)]} {
                set ::lib::tunables($n) $v
            }
        }
    }
    if {![info exists ::lib::tunables($name)]} {
        error "tunable: SOCKS5_$name not found in socks5.c"
    }
    return $::lib::tunables($name)
}

# quick_server -- use the quick build (when there is one) for the servers
# this file starts; returns the command.
proc quick_server {} {
    tunable AUTH_DELAY_MS       ;# the defaults first
    if {[info exists ::env(SOCKS5_QUICK)] &&
            [string trim $::env(SOCKS5_QUICK)] ne ""} {
        set ::SOCKS5 $::env(SOCKS5_QUICK)
        set defs {}
        if {[info exists ::env(SOCKS5_QUICK_DEFS)]} {
            set defs $::env(SOCKS5_QUICK_DEFS)
        }
        foreach d $defs {
            if {![regexp {^-DSOCKS5_([A-Z0-9_]+)=([0-9]+)$} $d -> n v]} {
                error "SOCKS5_QUICK_DEFS: not -DSOCKS5_NAME=NUMBER: $d"
            }
            set ::lib::tunables($n) $v
        }
    }
    return $::SOCKS5
}

# Command-line options for tcltest (e.g. -match greeting-1.*) pass through.
if {[llength $::argv]} {
    tcltest::configure {*}$::argv
}

# ---------------------------------------------------------------------------
# Time, waiting, temporary files

# ms n -- n milliseconds scaled by SOCKS5_TEST_SLOW.
proc ms {n} {
    return [expr {int($n * $::lib::slow)}]
}

# pause ms -- sleep while servicing events (never use a bare long sleep).
proc pause {n} {
    set v ::lib::wake(pause[incr ::lib::seq])
    after $n [list set $v 1]
    vwait $v
    unset $v
}

# wait_until script ?timeout_ms? -- evaluate script in the caller every 10 ms
# (servicing events) until it is true; returns 1, or 0 at the deadline.
proc wait_until {script {timeout 5000}} {
    set deadline [expr {[clock milliseconds] + [ms $timeout]}]
    while {1} {
        if {[uplevel 1 [list expr $script]]} {
            return 1
        }
        if {[clock milliseconds] >= $deadline} {
            return 0
        }
        pause 10
    }
}

# tmpdir -- per-process temporary directory, removed at cleanup.
proc tmpdir {} {
    if {$::lib::tmpdir eq ""} {
        set base /tmp
        if {[info exists ::env(TMPDIR)] && [file isdirectory $::env(TMPDIR)]} {
            set base $::env(TMPDIR)
        }
        set dir [file join $base socks5-test-[pid]-[clock clicks]]
        file mkdir $dir
        set ::lib::tmpdir $dir
    }
    return $::lib::tmpdir
}

# tmpfile name ?contents? -- path of a fresh file in tmpdir (written with the
# given contents, binary, when supplied).
proc tmpfile {name {contents ""}} {
    set path [file join [tmpdir] [incr ::lib::seq]-$name]
    set f [open $path w]
    fconfigure $f -translation binary
    puts -nonewline $f $contents
    close $f
    return $path
}

proc ::lib::readfile {path} {
    if {[catch {open $path r} f]} {
        return ""
    }
    fconfigure $f -translation binary
    set data [read $f]
    close $f
    return $data
}

# Record a pid for the runner (all.tcl) so that it can kill servers orphaned
# by a test file that crashed.
proc ::lib::register_pid {pid} {
    if {[info exists ::env(SOCKS5_TEST_PIDFILE)]} {
        catch {
            set f [open $::env(SOCKS5_TEST_PIDFILE) a]
            puts $f $pid
            close $f
        }
    }
}

# ---------------------------------------------------------------------------
# Processes

# Has process pid (started through the status pipe) exited?  When it has,
# reap it and store its status in ::lib::status(pid).
proc ::lib::exited {pid} {
    variable pipes
    variable status
    if {[info exists status($pid)]} {
        return 1
    }
    set gone 0
    set pipe $pipes($pid)
    catch {read $pipe}
    if {[eof $pipe]} {
        set gone 1
    } elseif {[catch {open /proc/$pid/stat r} f] == 0} {
        if {[catch {read $f} stat]} {
            set stat ""		;# it ended while we read (ESRCH)
        }
        close $f
        if {[regexp {\) ([A-Za-z]) } $stat -> state] && $state in {Z X}} {
            set gone 1
        }
    } elseif {[file isdirectory /proc/self]} {
        set gone 1
    }
    if {!$gone} {
        return 0
    }
    fconfigure $pipe -blocking 1
    set status($pid) 0
    if {[catch {close $pipe} msg opts]} {
        set ec [dict get $opts -errorcode]
        switch -- [lindex $ec 0] {
            CHILDSTATUS { set status($pid) [lindex $ec 2] }
            CHILDKILLED { set status($pid) [lindex $ec 2] }
            default     { set status($pid) "error: $msg" }
        }
    }
    unset pipes($pid)
    return 1
}

# Start a command with stdin from /dev/null, stderr to errfile and stdout
# into a pipe that tells us when it exits.  Returns the pid.
proc ::lib::spawn {cmd errfile} {
    variable pipes
    if {[auto_execok [lindex $cmd 0]] eq ""} {
        error "cannot execute [lindex $cmd 0] (set SOCKS5 or run make)"
    }
    set pipe [open |[list {*}$cmd < /dev/null 2> $errfile] r]
    fconfigure $pipe -blocking 0 -translation binary
    set pid [lindex [pid $pipe] 0]
    set pipes($pid) $pipe
    register_pid $pid
    return $pid
}

# Send signal sig to pid, wait (deadline) for it to exit; SIGKILL after the
# deadline.  Returns the exit code, or the signal name if it died by signal.
proc ::lib::terminate {pid {sig TERM} {timeout 5000}} {
    variable status
    if {![exited $pid]} {
        catch {exec kill -$sig $pid}
        if {![wait_until {[::lib::exited $pid]} $timeout]} {
            catch {exec kill -KILL $pid}
            wait_until {[::lib::exited $pid]} 5000
        }
    }
    if {[info exists status($pid)]} {
        return $status($pid)
    }
    return unknown
}

# server_start ?args? -- start "$SOCKS5 -l 127.0.0.1 -p 0 -v args" (-l, -p and
# -v are only added when args do not give them), wait up to 5 s for the
# "socks5: listening on ADDR:PORT" line and return a handle dict with keys
# pid, host, port, log.
proc server_start {args} {
    set argv {}
    if {"-l" ni $args} { lappend argv -l 127.0.0.1 }
    if {"-p" ni $args} { lappend argv -p 0 }
    if {[lsearch -regexp $args {^-[46dhiv]*v[46dhiv]*$}] < 0} {
        lappend argv -v
    }
    set log [tmpfile server.log]
    set pid [::lib::spawn [list {*}$::SOCKS5 {*}$argv {*}$args] $log]
    lappend ::lib::servers $pid
    set h [dict create pid $pid log $log host "" port 0]
    set re {socks5: listening on (?:\[([^\]]+)\]|([^\s:]+)):(\d+)}
    set deadline [expr {[clock milliseconds] + [ms 5000]}]
    while {1} {
        if {[regexp $re [::lib::readfile $log] -> h6 h4 port]} {
            dict set h host [expr {$h6 ne "" ? $h6 : $h4}]
            dict set h port $port
            return $h
        }
        if {[::lib::exited $pid]} {
            set code [server_stop $h]
            error "server exited (status $code) before listening:\
                    [::lib::readfile $log]"
        }
        if {[clock milliseconds] >= $deadline} {
            server_stop $h
            error "no 'listening on' line within 5 s: [::lib::readfile $log]"
        }
        pause 10
    }
}

# server_lookup h -- a CONNECT to localhost port 9 through server h: one
# name lookup, which forks a resolver helper when none is idle (the reply
# does not matter).
proc server_lookup {h} {
    set c [sock_open [dict get $h host] [dict get $h port]]
    catch {
        socks_handshake $c
        socks_connect $c localhost 9
    }
    sock_close $c
}

# child_pids pid -- the pids whose parent is pid (its resolver helpers).
proc child_pids {pid} {
    set kids {}
    foreach d [glob -nocomplain /proc/\[0-9\]*] {
        if {[catch {::lib::readfile $d/stat} st]} continue
        if {[regexp {\) \S+ (\d+) } $st -> ppid] && $ppid == $pid} {
            lappend kids [file tail $d]
        }
    }
    return $kids
}

# server_start_launched launcher ?args? -- as server_start, with the server
# started by a launcher command that passes it its listening sockets
# (test/sdlaunch.py): no -l or -p is added.
proc server_start_launched {launcher args} {
    set log [tmpfile server.log]
    set pid [::lib::spawn [list {*}$launcher {*}$::SOCKS5 -v {*}$args] $log]
    lappend ::lib::servers $pid
    set h [dict create pid $pid log $log host "" port 0]
    set re {socks5: listening on (?:\[([^\]]+)\]|([^\s:]+)):(\d+)}
    if {![wait_until {[regexp $re [::lib::readfile $log] -> h6 h4 port]} 5000]} {
        server_stop $h
        error "no 'listening on' line within 5 s: [::lib::readfile $log]"
    }
    dict set h host [expr {$h6 ne "" ? $h6 : $h4}]
    dict set h port $port
    return $h
}

# server_start_quiet port ?args? -- start the server WITHOUT -v on a fixed
# port (e.g. from free_port) and wait until it accepts connections.
proc server_start_quiet {port args} {
    set argv {}
    if {"-l" ni $args} { lappend argv -l 127.0.0.1 }
    set log [tmpfile server.log]
    set pid [::lib::spawn [list {*}$::SOCKS5 {*}$argv -p $port {*}$args] $log]
    lappend ::lib::servers $pid
    set idx [lsearch -exact $args -l]
    set host [expr {$idx < 0 ? "127.0.0.1" : [lindex $args $idx+1]}]
    set h [dict create pid $pid log $log host $host port $port]
    set deadline [expr {[clock milliseconds] + [ms 5000]}]
    while {[catch {socket $host $port} s]} {
        if {[::lib::exited $pid] || [clock milliseconds] >= $deadline} {
            set code [server_stop $h]
            error "server (status $code) not accepting on $host:$port:\
                    [::lib::readfile $log]"
        }
        pause 20
    }
    close $s
    return $h
}

# server_stop h ?sig? -- send SIGTERM (or sig) by pid, wait for the exit and
# return the exit code (a signal name such as SIGKILL if killed by a signal).
proc server_stop {h {sig TERM}} {
    set pid [dict get $h pid]
    set code [::lib::terminate $pid $sig]
    set ::lib::servers [lsearch -all -inline -not -exact $::lib::servers $pid]
    return $code
}

# server_running h -- 1 while the server process has not exited.
proc server_running {h} {
    return [expr {![::lib::exited [dict get $h pid]]}]
}

# server_exit_code h ?timeout_ms? -- wait for the server to exit by itself and
# return its exit status, or "timeout".
proc server_exit_code {h {timeout 5000}} {
    set pid [dict get $h pid]
    if {![wait_until {[::lib::exited $pid]} $timeout]} {
        return timeout
    }
    set ::lib::servers [lsearch -all -inline -not -exact $::lib::servers $pid]
    return $::lib::status($pid)
}

# server_log h -- the server's stderr so far.
proc server_log {h} {
    return [::lib::readfile [dict get $h log]]
}

# server_log_mark h -- current log size; pass it as offset to server_wait_log
# to only look at lines written afterwards.
proc server_log_mark {h} {
    return [string length [server_log $h]]
}

# server_wait_log h re ?timeout_ms? ?offset? -- poll the log until regexp re
# matches (after byte offset); returns the matched text, errors on timeout.
proc server_wait_log {h re {timeout 3000} {offset 0}} {
    set deadline [expr {[clock milliseconds] + [ms $timeout]}]
    while {1} {
        set log [string range [server_log $h] $offset end]
        if {[regexp -- $re $log match]} {
            return $match
        }
        if {[clock milliseconds] >= $deadline} {
            error "timeout waiting for /$re/ in server log:\n$log"
        }
        pause 10
    }
}

# server_run ?args? ?-timeout ms? -- run "$SOCKS5 args" to completion (for
# command-line tests) and return a dict: code, stdout, stderr.  A process
# still running at the deadline is killed and code is "timeout".
proc server_run {args} {
    set timeout 5000
    if {[set i [lsearch -exact $args -timeout]] >= 0} {
        set timeout [lindex $args $i+1]
        set args [lreplace $args $i $i+1]
    }
    set err [tmpfile run.stderr]
    set pid [::lib::spawn [list {*}$::SOCKS5 {*}$args] $err]
    set pipe $::lib::pipes($pid)
    set out ""
    set deadline [expr {[clock milliseconds] + [ms $timeout]}]
    while {1} {
        if {![catch {read $pipe} chunk]} {
            append out $chunk
        }
        if {[eof $pipe] || [clock milliseconds] >= $deadline} {
            break
        }
        pause 10
    }
    if {[eof $pipe]} {
        set code [::lib::terminate $pid TERM]
    } else {
        ::lib::terminate $pid KILL
        set code timeout
    }
    return [dict create code $code stdout $out stderr [::lib::readfile $err]]
}

# ---------------------------------------------------------------------------
# Client sockets and byte I/O

# hex bytes -- "05 00" style upper-case hex of a byte string.
proc hex {bytes} {
    binary scan $bytes H* h
    return [string toupper [regsub -all {..(?=.)} $h {& }]]
}

# unhex "05 01 00" -- the byte string for spaced (or unspaced) hex.
proc unhex {h} {
    return [binary format H* [string map {" " "" "\n" "" "\t" ""} $h]]
}

# sock_open host port -- TCP connection as a binary, unbuffered, non-blocking
# channel.
proc sock_open {host port} {
    set chan [socket $host $port]
    fconfigure $chan -translation binary -buffering none -blocking 0
    return $chan
}

# sock_close chan -- close, ignoring errors (peer may have reset).
proc sock_close {chan} {
    catch {close $chan}
    array unset ::lib::wake $chan
}

# sock_shutdown chan -- half-close: send FIN, keep reading.
proc sock_shutdown {chan} {
    wait_until {[chan pending output $chan] <= 0} 5000
    close $chan write
}

# send_hex chan "05 01 00" -- write bytes given as hex.
proc send_hex {chan h} {
    send_bytes $chan [unhex $h]
}

# send_bytes chan bytes -- write a byte string (queued if the socket buffer is
# full; the queue drains while waits service the event loop).
proc send_bytes {chan bytes} {
    puts -nonewline $chan $bytes
}

# Sleep until chan is readable or ms have passed.
proc ::lib::wait_readable {chan n} {
    set v ::lib::wake($chan)
    set $v 0
    fileevent $chan readable [list set $v 1]
    set id [after $n [list set $v 2]]
    vwait $v
    after cancel $id
    catch {fileevent $chan readable {}}
}

# recv_raw chan n ?timeout_ms? -- read exactly n bytes; returns {status data}
# with status ok, eof (peer closed or reset; see ::lib::last_close) or timeout.
proc recv_raw {chan n {timeout 3000}} {
    set data ""
    set deadline [expr {[clock milliseconds] + [ms $timeout]}]
    while {[string length $data] < $n} {
        set want [expr {min($n - [string length $data], 1 << 20)}]
        if {[catch {read $chan $want} chunk]} {
            set ::lib::last_close reset
            return [list eof $data]
        }
        append data $chunk
        if {[string length $data] >= $n} {
            break
        }
        if {[eof $chan]} {
            set ::lib::last_close eof
            return [list eof $data]
        }
        set left [expr {$deadline - [clock milliseconds]}]
        if {$left <= 0} {
            return [list timeout $data]
        }
        if {$chunk eq ""} {
            ::lib::wait_readable $chan $left
        }
    }
    return [list ok $data]
}

# recv_exact chan n ?timeout_ms? -- read exactly n bytes and return them as
# hex; if the peer closes or the deadline passes first, the bytes read so far
# followed by the word "eof" or "timeout" (e.g. "05 eof", or just "eof").
proc recv_exact {chan n {timeout 3000}} {
    lassign [recv_raw $chan $n $timeout] st data
    return [::lib::marked $st $data]
}

proc ::lib::marked {st data} {
    set out [hex $data]
    if {$st ne "ok"} {
        set out [string trim "$out $st"]
    }
    return $out
}

# recv_all chan ?timeout_ms? -- read until the peer closes; returns
# {status data} with status eof or timeout.
proc recv_all {chan {timeout 3000}} {
    return [recv_raw $chan 0x7fffffff $timeout]
}

# recv_rest chan ?timeout_ms? -- everything until the peer closes, as hex
# plus the end marker: "05 FF eof"; "eof" alone means closed without reply.
proc recv_rest {chan {timeout 3000}} {
    lassign [recv_all $chan $timeout] st data
    return [::lib::marked $st $data]
}

# expect_closed chan ?timeout_ms? -- 1 if the server closes the connection
# (EOF or reset) within the timeout, else 0.  Bytes read meanwhile are
# discarded (left in ::lib::discarded).
proc expect_closed {chan {timeout 3000}} {
    lassign [recv_all $chan $timeout] st ::lib::discarded
    return [expr {$st eq "eof"}]
}

# expect_open chan ?ms? -- 1 if the connection is still open and silent after
# ms (default 300): neither data nor close arrived.
proc expect_open {chan {timeout 300}} {
    lassign [recv_raw $chan 1 $timeout] st data
    return [expr {$st eq "timeout"}]
}

# sock_port chan -- local port of a client channel.
proc sock_port {chan} {
    return [lindex [fconfigure $chan -sockname] 2]
}

# free_port ?host? -- a port nobody listens on right now.
proc free_port {{host 127.0.0.1}} {
    set s [socket -server ::lib::noop -myaddr $host 0]
    set port [lindex [fconfigure $s -sockname] 2]
    close $s
    return $port
}
proc ::lib::noop {args} {
    catch {close [lindex $args 0]}
}

# pattern n ?seed? -- n deterministic pseudo-random bytes: a 65521-byte
# (prime) LCG block per seed, repeated; shorter patterns are prefixes of
# longer ones with the same seed.
proc pattern {n {seed 1}} {
    # ::lib::patterns(seed) = {lcg-state bytes-so-far}, extended on demand
    if {![info exists ::lib::patterns($seed)]} {
        set ::lib::patterns($seed) [list [expr {$seed & 0x7fffffff}] ""]
    }
    lassign $::lib::patterns($seed) x block
    set want [expr {min($n, 65521)}]
    if {[string length $block] < $want} {
        set out {}
        for {set i [string length $block]} {$i < $want} {incr i} {
            set x [expr {($x * 1103515245 + 12345) & 0x7fffffff}]
            lappend out [expr {($x >> 16) & 0xff}]
        }
        append block [binary format c* $out]
        set ::lib::patterns($seed) [list $x $block]
    }
    if {$n <= [string length $block]} {
        return [string range $block 0 $n-1]
    }
    set reps [expr {$n / 65521 + 1}]
    return [string range [string repeat $block $reps] 0 $n-1]
}

# ---------------------------------------------------------------------------
# Addresses and SOCKS5 messages

proc is_ipv4 {s} {
    if {![regexp {^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$} $s -> a b c d]} {
        return 0
    }
    foreach o [list $a $b $c $d] {
        if {[scan $o %d] > 255} { return 0 }
    }
    return 1
}

# ipv6_bytes addr -- 16-byte binary form of an IPv6 literal (supports "::"
# and a trailing dotted IPv4 part).
proc ipv6_bytes {addr} {
    if {[regexp {^(.*:)(\d+\.\d+\.\d+\.\d+)$} $addr -> head v4]} {
        binary scan [ipv4_bytes $v4] SuSu g1 g2
        set addr [format %s%x:%x $head $g1 $g2]
    }
    set halves [split [string map {:: \x01} $addr] \x01]
    if {[llength $halves] > 2} {
        error "bad IPv6 address $addr"
    }
    set left [expr {[lindex $halves 0] eq "" ? {} : [split [lindex $halves 0] :]}]
    set right {}
    if {[llength $halves] == 2} {
        set right [expr {[lindex $halves 1] eq "" ? {} : [split [lindex $halves 1] :]}]
        set fill [expr {8 - [llength $left] - [llength $right]}]
        if {$fill < 1} { error "bad IPv6 address $addr" }
        set groups [concat $left [lrepeat $fill 0] $right]
    } else {
        set groups $left
    }
    if {[llength $groups] != 8} {
        error "bad IPv6 address $addr"
    }
    set words {}
    foreach g $groups {
        if {![regexp {^[0-9a-fA-F]{1,4}$} $g]} { error "bad IPv6 address $addr" }
        lappend words [expr {"0x$g"}]
    }
    return [binary format S8 $words]
}

proc ipv4_bytes {addr} {
    return [binary format c4 [split $addr .]]
}

# ipv6_text bytes -- RFC 5952 text form of 16 bytes (as Tcl prints them).
proc ipv6_text {bytes} {
    binary scan $bytes Su8 w
    # longest run (>= 2) of zero groups, first one on ties
    set best -1; set bestlen 0; set start -1
    for {set i 0} {$i <= 8} {incr i} {
        if {$i < 8 && [lindex $w $i] == 0} {
            if {$start < 0} { set start $i }
        } elseif {$start >= 0} {
            if {$i - $start > $bestlen} {
                set best $start
                set bestlen [expr {$i - $start}]
            }
            set start -1
        }
    }
    set hexw {}
    foreach x $w { lappend hexw [format %x $x] }
    if {$bestlen < 2} {
        return [join $hexw :]
    }
    set l [join [lrange $hexw 0 $best-1] :]
    set r [join [lrange $hexw [expr {$best + $bestlen}] end] :]
    return "${l}::$r"
}

# socks_addr host -- ATYP + address bytes: IPv4 literal -> 01, IPv6 literal
# (contains ':') -> 04, anything else -> 03 DOMAINNAME.
proc socks_addr {host} {
    if {[is_ipv4 $host]} {
        return [binary format c 1][ipv4_bytes $host]
    } elseif {[string first : $host] >= 0} {
        return [binary format c 4][ipv6_bytes $host]
    } else {
        set name [encoding convertto utf-8 $host]
        if {[string length $name] > 255} { error "domain name too long" }
        return [binary format cc 3 [string length $name]]$name
    }
}

# socks_request cmd host port -- request bytes "05 CMD 00 ATYP ADDR PORT"
# (cmd: connect, bind, udp or a number).
proc socks_request {cmd host port} {
    set codes {connect 1 bind 2 udp 3}
    set c [expr {[dict exists $codes $cmd] ? [dict get $codes $cmd] : $cmd}]
    return [binary format ccc 5 $c 0][socks_addr $host][binary format S $port]
}

# greeting ?methods? -- greeting bytes offering the given method numbers.
proc greeting {{methods {0}}} {
    return [binary format cc 5 [llength $methods]][binary format c* $methods]
}

# userpass_request user pass ?ver? -- RFC 1929 sub-negotiation request.
proc userpass_request {user pass {ver 1}} {
    set u [encoding convertto utf-8 $user]
    set p [encoding convertto utf-8 $pass]
    return [binary format cc $ver [string length $u]]$u[binary format c [string length $p]]$p
}

# socks_handshake chan ?user pass? -- greeting (method 00, or 02 plus the
# RFC 1929 exchange when credentials are given).  Returns the reply hex
# ("05 00" or "05 02 01 00"); errors if the server does not accept.
proc socks_handshake {chan args} {
    if {[llength $args] == 0} {
        send_bytes $chan [greeting 0]
        set r [recv_exact $chan 2]
        if {$r ne "05 00"} { error "greeting refused: $r" }
        return $r
    }
    if {[llength $args] != 2} {
        error "usage: socks_handshake chan ?user pass?"
    }
    lassign $args user pass
    send_bytes $chan [greeting 2]
    set r [recv_exact $chan 2]
    if {$r ne "05 02"} { error "greeting refused: $r" }
    send_bytes $chan [userpass_request $user $pass]
    set a [recv_exact $chan 2]
    if {$a ne "01 00"} { error "authentication refused: $a" }
    return "$r $a"
}

# socks_reply chan ?timeout_ms? -- read and parse one reply.  Returns a dict:
# status (ok|eof|timeout|bad-atyp), rep, atyp (integers, -1 if unread),
# addr (text), port, hex (all bytes read).
proc socks_reply {chan {timeout 5000}} {
    set r [dict create status ok rep -1 atyp -1 addr "" port -1 hex ""]
    lassign [recv_raw $chan 4 $timeout] st head
    dict set r hex [::lib::marked $st $head]
    if {$st ne "ok"} {
        return [dict set r status $st]
    }
    binary scan $head cucucucu ver rep rsv atyp
    dict set r rep $rep
    dict set r atyp $atyp
    switch -- $atyp {
        1 { set n 4 }
        4 { set n 16 }
        3 {
            lassign [recv_raw $chan 1 $timeout] st l
            if {$st ne "ok"} {
                dict set r hex [::lib::marked $st $head]
                return [dict set r status $st]
            }
            append head $l
            set n [scan [hex $l] %x]
        }
        default { return [dict set r status bad-atyp] }
    }
    lassign [recv_raw $chan [expr {$n + 2}] $timeout] st rest
    append head $rest
    dict set r hex [::lib::marked $st $head]
    if {$st ne "ok"} {
        return [dict set r status $st]
    }
    set a [string range $rest 0 end-2]
    binary scan [string range $rest end-1 end] Su port
    dict set r port $port
    switch -- $atyp {
        1 { binary scan $a cu4 o; dict set r addr [join $o .] }
        4 { dict set r addr [ipv6_text $a] }
        3 { dict set r addr $a }
    }
    return $r
}

# socks_connect chan host port ?timeout_ms? -- send a CONNECT request (ATYP
# chosen from the host string) and return the parsed reply (see socks_reply).
proc socks_connect {chan host port {timeout 5000}} {
    send_bytes $chan [socks_request connect $host $port]
    return [socks_reply $chan $timeout]
}

# proxy_connect srv host port ?user pass? -- new client through server srv:
# handshake + CONNECT; returns the channel, errors unless REP is 00.
proc proxy_connect {srv host port args} {
    set c [sock_open [dict get $srv host] [dict get $srv port]]
    if {[catch {
        socks_handshake $c {*}$args
        set r [socks_connect $c $host $port]
        if {[dict get $r rep] != 0} {
            error "CONNECT $host:$port failed: [dict get $r hex]"
        }
    } msg]} {
        sock_close $c
        error $msg
    }
    return $c
}

# ---------------------------------------------------------------------------
# In-process target servers
#
# target_start mode ?host? ?arg? -- listen on host (default 127.0.0.1),
# port chosen by the kernel; returns a handle dict: name, host, port.
# Modes:
#   echo   echo everything back; on EOF flush and close (half-close aware)
#   sink   read and count everything, close on EOF
#   source send arg bytes of [pattern arg] and close (input is discarded)
#   hold   accept, read and discard, never send, never close
#   close  accept and close at once
# Bookkeeping (target_info h key): accepted (count), peers (list of
# {addr port} as seen by the target, i.e. the proxy's outgoing sockets),
# rx (bytes received), eofs (connections that reached EOF), data (bytes
# received by sink, all connections concatenated).

proc target_start {mode {host 127.0.0.1} {arg 0}} {
    set name ::lib::tgt[incr ::lib::seq]
    upvar #0 $name t
    array set t [list mode $mode arg $arg accepted 0 peers {} rx 0 eofs 0 \
            data "" conns {} listen {}]
    set l [socket -server [list ::lib::target_accept $name] -myaddr $host 0]
    lappend t(listen) $l
    lappend ::lib::targets $name
    return [dict create name $name host $host port [lindex [fconfigure $l -sockname] 2]]
}

# target_also_listen h host -- additionally listen on host with the same port
# (e.g. ::1 next to 127.0.0.1); returns 1 on success, 0 if the port is taken.
proc target_also_listen {h host} {
    set name [dict get $h name]
    upvar #0 $name t
    if {[catch {socket -server [list ::lib::target_accept $name] \
            -myaddr $host [dict get $h port]} l]} {
        return 0
    }
    lappend t(listen) $l
    return 1
}

proc target_info {h key} {
    upvar #0 [dict get $h name] t
    return $t($key)
}

proc target_stop {h} {
    set name [dict get $h name]
    upvar #0 $name t
    if {![info exists t]} return
    foreach s [concat $t(listen) $t(conns)] {
        catch {close $s}
    }
    unset t
    set ::lib::targets [lsearch -all -inline -not -exact $::lib::targets $name]
}

proc ::lib::target_accept {name s addr port} {
    upvar #0 $name t
    incr t(accepted)
    lappend t(peers) [list $addr $port]
    fconfigure $s -translation binary -blocking 0 -buffering full -buffersize 65536
    switch -- $t(mode) {
        close {
            close $s
            return
        }
        source {
            puts -nonewline $s [pattern $t(arg)]
            flush $s
            fileevent $s writable [list ::lib::target_sent $name $s]
        }
    }
    lappend t(conns) $s
    fileevent $s readable [list ::lib::target_readable $name $s]
}

proc ::lib::target_drop {name s} {
    upvar #0 $name t
    catch {close $s}
    set t(conns) [lsearch -all -inline -not -exact $t(conns) $s]
}

proc ::lib::target_readable {name s} {
    upvar #0 $name t
    if {[catch {read $s 65536} data]} {
        target_drop $name $s
        return
    }
    incr t(rx) [string length $data]
    switch -- $t(mode) {
        echo {
            if {[catch {puts -nonewline $s $data; flush $s}]} {
                target_drop $name $s
                return
            }
        }
        sink {
            append t(data) $data
        }
    }
    if {[eof $s]} {
        incr t(eofs)
        fileevent $s readable {}
        if {$t(mode) eq "hold"} {
            return
        }
        # Non-blocking close: Tcl flushes pending output in the background
        # and then closes, so echoed data is not lost.
        target_drop $name $s
        return
    }
    if {$t(mode) eq "echo" && [chan pending output $s] > (1 << 20)} {
        # flow control: stop reading until the echo backlog drains
        fileevent $s readable {}
        fileevent $s writable [list ::lib::target_drained $name $s]
    }
}

# source mode: once everything is written, send FIN (keep reading).
proc ::lib::target_sent {name s} {
    if {[chan pending output $s] > 0} {
        return
    }
    fileevent $s writable {}
    catch {close $s write}
}

proc ::lib::target_drained {name s} {
    if {[chan pending output $s] > (1 << 16)} {
        return
    }
    fileevent $s writable {}
    fileevent $s readable [list ::lib::target_readable $name $s]
}

# echo_target -- the shared echo target of this test file (127.0.0.1).
proc echo_target {} {
    if {$::lib::echo eq ""} {
        set ::lib::echo [target_start echo]
    }
    return $::lib::echo
}

# server_alive srv ?user pass? -- 1 if the server process still runs and a
# fresh client can CONNECT through it to the echo target and get data
# echoed; otherwise an error describing what went wrong.
proc server_alive {srv args} {
    if {![server_running $srv]} {
        error "server exited with status [server_exit_code $srv 0]"
    }
    set e [echo_target]
    set c [proxy_connect $srv [dict get $e host] [dict get $e port] {*}$args]
    send_bytes $c ping
    set r [recv_exact $c 4]
    sock_close $c
    if {$r ne [hex ping]} {
        error "echo through proxy returned $r"
    }
    return 1
}

# ---------------------------------------------------------------------------
# inetd mode
#
# inetd_session ?args? -- run one "$SOCKS5 -i args" session the way inetd
# would: a Tcl listening socket accepts our own client connection and the
# accepted socket becomes the server's stdin and stdout.  (A small sh wrapper
# keeps the server's exit status: Tcl's "exec &" would lose it.)  Returns a
# dict: chan (our client end, binary/non-blocking), pid (the server), log
# (its stderr, expected to stay empty), and internal keys for inetd_wait.
#
# inetd_wait h ?timeout_ms? -- wait for the server to exit by itself and
# return its exit status ("timeout" if it does not; it is then killed).

proc inetd_session {args} {
    set ::lib::inetd_acc ""
    set l [socket -server {apply {{s a p} {set ::lib::inetd_acc $s}}} \
            -myaddr 127.0.0.1 0]
    set chan [sock_open 127.0.0.1 [lindex [fconfigure $l -sockname] 2]]
    if {![wait_until {$::lib::inetd_acc ne ""} 5000]} {
        close $l
        error "inetd_session: accept failed"
    }
    close $l
    set acc $::lib::inetd_acc
    set log [tmpfile inetd.log]
    set script {exec 3<&0; "$@" <&3 >&3 3<&- & echo $!; wait $!; echo $?}
    set pipe [open |[list sh -c $script sh {*}$::SOCKS5 -i {*}$args \
            <@ $acc 2> $log] r]
    close $acc
    fconfigure $pipe -blocking 1
    gets $pipe pid
    fconfigure $pipe -blocking 0
    ::lib::register_pid $pid
    lappend ::lib::inetd $pipe $pid
    return [dict create chan $chan pid $pid log $log pipe $pipe]
}

proc inetd_wait {h {timeout 5000}} {
    set pipe [dict get $h pipe]
    set line ""
    set ok [wait_until {[gets $pipe line] >= 0 || [eof $pipe]} $timeout]
    if {!$ok} {
        catch {exec kill -KILL [dict get $h pid]}
        wait_until {[gets $pipe line] >= 0 || [eof $pipe]} 5000
        set line timeout
    }
    fconfigure $pipe -blocking 1
    catch {close $pipe}
    set ::lib::inetd [lsearch -all -inline -not -exact $::lib::inetd $pipe]
    return $line
}

# ---------------------------------------------------------------------------
# Constraints and cleanup

testConstraint ipv6 [expr {![catch {
    close [socket -server ::lib::noop -myaddr ::1 0]
}]}]
testConstraint root [expr {[exec id -u] == 0}]
# oneProcess: the server under test is one process (no "-w N", N > 1, in
# $SOCKS5): tests that read its table size, its refusals, its status line
# or its children by pid depend on that, and say so.
set ::lib::workers 1
if {[set i [lsearch -exact $::SOCKS5 -w]] >= 0} {
    set ::lib::workers [lindex $::SOCKS5 [expr {$i + 1}]]
}
testConstraint oneProcess [expr {$::lib::workers == 1}]

# Features a router build may leave out (socks5.c's SOCKS5_NO_UDP,
# _NO_BIND, _NO_RULES, _NO_AUTH): "-V" names them, "socks5 1.0.0 (without
# udp bind)".  Constraints udp, bind, rules and auth hold when the build
# has the feature, without_udp and so on when it has not; a test of a
# left-out feature is skipped, and the skip counts name the feature.
set ::lib::without {}
if {![catch {exec {*}$::SOCKS5 -V 2>@1} v] &&
        [regexp {\(without ([a-z ]+)\)} $v -> w]} {
    set ::lib::without $w
}
foreach f {udp bind rules auth} {
    testConstraint $f [expr {$f ni $::lib::without}]
    testConstraint without_$f [expr {$f in $::lib::without}]
}

# requires feature... -- every test that follows in this file needs the
# features (a file about UDP, about logins): each gets them as constraints.
proc requires {args} {
    if {[info commands ::lib::tcltest_test] eq ""} {
        rename ::test ::lib::tcltest_test
        proc ::test {name desc args} {
            set need $::lib::required
            if {[string match -* [lindex $args 0]]} {
                set i [lsearch -exact $args -constraints]
                if {$i >= 0} {
                    lset args [expr {$i + 1}] \
                        [concat [lindex $args [expr {$i + 1}]] $need]
                } else {
                    set args [linsert $args 0 -constraints $need]
                }
            } elseif {[llength $args] == 3} {
                lset args 0 [concat [lindex $args 0] $need]
            } else {
                set args [linsert $args 0 $need]
            }
            uplevel 1 [list ::lib::tcltest_test $name $desc {*}$args]
        }
    }
    lappend ::lib::required {*}$args
}
set ::lib::required {}
set ::lib::inetd {}

# Kill everything this process started and remove temporary files.
proc ::lib::cleanup {} {
    foreach pid $::lib::servers {
        catch {::lib::terminate $pid TERM 2000}
    }
    set ::lib::servers {}
    foreach {pipe pid} $::lib::inetd {
        catch {exec kill -KILL $pid}
        catch {close $pipe}
    }
    set ::lib::inetd {}
    foreach t $::lib::targets {
        catch {target_stop [dict create name $t]}
    }
    if {$::lib::tmpdir ne ""} {
        catch {file delete -force $::lib::tmpdir}
        set ::lib::tmpdir ""
    }
}

# finish -- call at the end of every .test file: cleanup + tcltest report.
proc finish {} {
    ::lib::cleanup
    tcltest::cleanupTests
}

# Make sure an explicit exit also cleans up.
if {[info commands ::lib::real_exit] eq ""} {
    rename ::exit ::lib::real_exit
    proc ::exit {{code 0}} {
        catch ::lib::cleanup
        ::lib::real_exit $code
    }
}

# main_server ?args? -- start the file's main server into ::srv; on failure
# ::srv stays empty and client/srv_port report the startup error in each test.
proc main_server {args} {
    set ::srv ""
    if {[catch {server_start {*}$args} h]} {
        set ::srv_error $h
        return ""
    }
    set ::srv $h
    return $h
}

# client ?srv? -- a new raw connection to srv (default: the main server).
proc client {{srv ""}} {
    if {$srv eq ""} {
        if {![info exists ::srv] || $::srv eq ""} {
            error "server not running: [expr {[info exists ::srv_error] ? $::srv_error : {main_server not called}}]"
        }
        set srv $::srv
    }
    return [sock_open [dict get $srv host] [dict get $srv port]]
}

# ---------------------------------------------------------------------------
# Process accounting and the status line (SIGUSR1)

# clock_ticks -- clock ticks per second for /proc/PID/stat (CLK_TCK).
proc clock_ticks {} {
    if {![info exists ::lib::ticks]} {
        if {[catch {exec getconf CLK_TCK} t] || ![string is integer -strict $t]} {
            set t 100
        }
        set ::lib::ticks $t
    }
    return $::lib::ticks
}

# cpu_ticks pid -- utime + stime of pid in clock ticks ("" when it is gone).
proc cpu_ticks {pid} {
    set st [::lib::readfile /proc/$pid/stat]
    if {$st eq ""} {
        return ""
    }
    set f [split [string range $st [string last ")" $st]+2 end]]
    return [expr {[lindex $f 11] + [lindex $f 12]}]
}

# cpu_share pid ?ms? -- the share of one core pid used over the next ms
# (default 2000) of wall time, e.g. 0.01 for 1 %; "gone" if it exited.
proc cpu_share {pid {n 2000}} {
    set a [cpu_ticks $pid]
    set t0 [clock milliseconds]
    pause $n
    set b [cpu_ticks $pid]
    set t1 [clock milliseconds]
    if {$a eq "" || $b eq ""} {
        return gone
    }
    return [format %.3f [expr {($b - $a) / double([clock_ticks]) /
            (($t1 - $t0) / 1000.0)}]]
}

# fd_count pid -- number of descriptors pid has open.
proc fd_count {pid} {
    return [llength [glob -nocomplain /proc/$pid/fd/*]]
}

# The status line a server logs on SIGUSR1, always (without -v too):
#   socks5: status sessions=ACTIVE/TABLE greeting=N auth=N request=N
#   authwait=N resolve=N connect=N bind=N relay=N udp=N closing=N
#   spill=FREE/TOTAL udpbufs=FREE/TOTAL queued=N resolving=N fds=OPEN/LIMIT
#   helpers=ALIVE/TOTAL
set ::lib::status_re {^socks5: status sessions=(\d+)/(\d+) greeting=(\d+) auth=(\d+) request=(\d+) authwait=(\d+) resolve=(\d+) connect=(\d+) bind=(\d+) relay=(\d+) udp=(\d+) closing=(\d+) spill=(\d+)/(\d+) udpbufs=(\d+)/(\d+) queued=(\d+) resolving=(\d+) fds=(\d+)/(\d+) helpers=(\d+)/(\d+)$}
set ::lib::status_keys {sessions table greeting auth request authwait resolve
    connect bind relay udp closing spill spill_total udpbufs udpbufs_total
    queued resolving fds fds_limit helpers helpers_total}

# status_parse line -- the status line as a dict (keys above; "line" holds
# the line itself); errors when the line does not have the exact format.
proc status_parse {line} {
    set vals [lrange [regexp -inline -- $::lib::status_re $line] 1 end]
    if {![llength $vals]} {
        error "malformed status line: $line"
    }
    set d [dict create line $line]
    foreach k $::lib::status_keys v $vals {
        dict set d $k $v
    }
    return $d
}

# ::lib::handles_usr1 pid -- 1 if pid catches (or blocks) SIGUSR1, i.e.
# sending it does not kill the process.
proc ::lib::handles_usr1 {pid} {
    set st [::lib::readfile /proc/$pid/status]
    foreach k {SigCgt SigBlk SigIgn} {
        set m($k) 0
        regexp "$k:\\s+(\[0-9a-fA-F\]+)" $st -> m($k)
    }
    # SIGUSR1 is signal 10: bit 9
    set bit [expr {1 << 9}]
    return [expr {(("0x$m(SigCgt)" | "0x$m(SigBlk)") & $bit) != 0}]
}

# server_status h ?timeout_ms? -- send SIGUSR1 to the server and return its
# next status line parsed (see status_parse).  Errors when the server does
# not handle SIGUSR1 (it would be killed: no signal is sent then), when no
# status line appears in time, or when it is malformed.
proc server_status {h {timeout 3000}} {
    set pid [dict get $h pid]
    # (a server found through its port may not have set up its signal
    # handlers yet)
    if {![wait_until {[::lib::handles_usr1 $pid]} 1000]} {
        error "no status line: the server (pid $pid) does not handle SIGUSR1"
    }
    set mark [server_log_mark $h]
    exec kill -USR1 $pid
    set line [server_wait_log $h {socks5: status [^\n]*\n} $timeout $mark]
    return [status_parse [string trimright $line \n]]
}

# server_status_until h cond ?timeout_ms? -- ask for the status line every
# 100 ms until the expression cond, evaluated in the caller with the
# variable st set to the parsed line, is true.  Returns the last parsed
# line (the caller checks it: at the deadline cond may still be false).
proc server_status_until {h cond {timeout 5000}} {
    upvar 1 st st
    set deadline [expr {[clock milliseconds] + [ms $timeout]}]
    while {1} {
        set st [server_status $h]
        if {[uplevel 1 [list expr $cond]] ||
                [clock milliseconds] >= $deadline} {
            return $st
        }
        pause 100
    }
}

# status_settled h st0 keys -- after a load: wait (at most 5 s) for the
# status line to say sessions=0, then report the fields named in keys as a
# list, comparing with st0 (the parsed line right after startup, "" if there
# was none): "sessions=N", "spill=free" (or "spill=FREE/TOTAL"), "fds=same"
# (or "fds=N startup=M"; the helpers' sockets not counted), any other key as
# "key=VALUE".  Without a status
# line the list is {status: WHY}.
proc status_settled {h st0 keys} {
    if {[catch {server_status_until $h {[dict get $st sessions] == 0} 5000} st]} {
        return [list "status: $st"]
    }
    if {$st0 eq ""} {
        return [list "status: none at startup"]
    }
    puts "status at startup: [dict get $st0 line]"
    puts "status now:        [dict get $st line]"
    set out {}
    foreach k $keys {
        switch -- $k {
            spill {
                if {[dict get $st spill] == [dict get $st spill_total]} {
                    lappend out spill=free
                } else {
                    lappend out spill=[dict get $st spill]/[dict get $st spill_total]
                }
            }
            fds {
                # each running resolver helper holds one descriptor; they
                # exit after SOCKS5_HELPER_IDLE_MS idle, not with the load
                if {[dict get $st fds] - [dict get $st helpers] ==
                        [dict get $st0 fds] - [dict get $st0 helpers]} {
                    lappend out fds=same
                } else {
                    lappend out "fds=[dict get $st fds] startup=[dict get $st0 fds]"
                }
            }
            default {
                lappend out $k=[dict get $st $k]
            }
        }
    }
    return $out
}
