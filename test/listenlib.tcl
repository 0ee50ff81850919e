# listenlib.tcl -- helpers for the listening-socket tests (listeners.test,
# activation.test).  Sourced after lib.tcl.
#
#   listen_socks pid          the TCP sockets pid holds that listen, as a
#                             sorted list of "127.0.0.1:PORT" / "[::1]:PORT"
#                             (from /proc/PID/fd and /proc/net/tcp{,6})
#   listen_relay host port ?seed?
#                             a client through the proxy at host:port:
#                             greeting, CONNECT to the echo target, 20000
#                             bytes echoed byte-exact; "ok" or what failed
#   listen_lookup host port   a CONNECT to "localhost" (a name: a resolver
#                             helper looks it up, forked for it if none
#                             runs) through the proxy at host:port:
#                             "answered" (any REP), or "eof"/"timeout"
#   listen_lines text         the "socks5: listening on ADDR[ (from the
#                             launcher)]" lines of a log, as a list of
#                             {ADDR launcher|own}
#   listen_wait h n ?ms?      wait for n such lines in h's log; the lines,
#                             or an error (with the log) when the server
#                             exits or the time is up
#   listen_refused host port  1 when a TCP connect to host:port is refused
#   listen_free_port hosts    a port free on every address in hosts
#   listen_addr_port a        {HOST PORT} of "127.0.0.1:P" or "[::1]:P"

# ::listenlib::proc_addr hex -- "127.0.0.1:P" or "[::1]:P" from a
# /proc/net/tcp{,6} local_address field (address words in host order).
namespace eval ::listenlib {}

# These files read the sockets one server process holds: against a
# "-w N" command (make test-workers) they test the process alone, without
# -w (test/workers.test covers the workers' listeners).
if {[set ::listenlib::w [lsearch -exact $::SOCKS5 -w]] >= 0} {
    set ::SOCKS5 [lreplace $::SOCKS5 $::listenlib::w [expr {$::listenlib::w + 1}]]
}
proc ::listenlib::proc_addr {field} {
    lassign [split $field :] a p
    set port [scan $p %x]
    set little [expr {$::tcl_platform(byteOrder) eq "littleEndian"}]
    set bytes ""
    foreach {w} [regexp -all -inline {[0-9A-Fa-f]{8}} $a] {
        set b [binary format H8 $w]
        if {$little} {
            set b [string reverse $b]
        }
        append bytes $b
    }
    if {[string length $bytes] == 4} {
        binary scan $bytes cu4 o
        return [join $o .]:$port
    }
    return "\[[ipv6_text $bytes]\]:$port"
}

proc listen_socks {pid} {
    set inodes {}
    foreach fd [glob -nocomplain /proc/$pid/fd/*] {
        if {![catch {file readlink $fd} l] &&
                [regexp {^socket:\[(\d+)\]$} $l -> ino]} {
            lappend inodes $ino
        }
    }
    set out {}
    foreach f {/proc/net/tcp /proc/net/tcp6} {
        foreach line [lrange [split [::lib::readfile $f] \n] 1 end] {
            set w [regexp -all -inline {\S+} $line]
            # sl local rem st queues timer retrnsmt uid timeout inode
            if {[llength $w] < 10 || [lindex $w 3] ne "0A"} {
                continue
            }
            if {[lindex $w 9] in $inodes} {
                lappend out [::listenlib::proc_addr [lindex $w 1]]
            }
        }
    }
    return [lsort $out]
}

proc listen_addr_port {a} {
    if {[regexp {^\[(.*)\]:(\d+)$} $a -> h p] ||
            [regexp {^([^:]+):(\d+)$} $a -> h p]} {
        return [list $h $p]
    }
    error "not ADDR:PORT: $a"
}

proc listen_relay {host port {seed 1}} {
    set e [echo_target]
    if {[catch {sock_open $host $port} c]} {
        return "connect: $c"
    }
    set out ok
    if {[catch {
        socks_handshake $c
        set r [socks_connect $c [dict get $e host] [dict get $e port]]
        if {[dict get $r rep] != 0} {
            error "CONNECT: [dict get $r hex]"
        }
        set data [pattern 20000 $seed]
        send_bytes $c $data
        lassign [recv_raw $c 20000 5000] st got
        if {$st ne "ok" || $got ne $data} {
            error "echo: $st, [string length $got] bytes,\
                    exact [expr {$got eq $data}]"
        }
    } msg]} {
        set out $msg
    }
    sock_close $c
    return $out
}

proc listen_lookup {host port} {
    set e [echo_target]
    set c [sock_open $host $port]
    set out eof
    catch {
        socks_handshake $c
        set r [socks_connect $c localhost [dict get $e port]]
        set out [expr {[dict get $r status] eq "ok" ? "answered" :
                [dict get $r status]}]
    }
    sock_close $c
    return $out
}

proc listen_lines {text} {
    set out {}
    foreach {-> a l} [regexp -all -inline -line \
            {^socks5: listening on ((?:descriptor )?\S+)( \(from the launcher\))?$} $text] {
        lappend out [list $a [expr {$l eq "" ? "own" : "launcher"}]]
    }
    return $out
}

proc listen_wait {h n {timeout 5000}} {
    set pid [dict get $h pid]
    set ok [wait_until {[llength [listen_lines [server_log $h]]] >= $n ||
            [::lib::exited $pid]} $timeout]
    set lines [listen_lines [server_log $h]]
    if {[llength $lines] < $n} {
        set why [expr {[::lib::exited $pid] ? "server exited\
                (status $::lib::status($pid))" : "timeout"}]
        error "$why with [llength $lines] of $n listening lines:\
                [server_log $h]"
    }
    return $lines
}

proc listen_refused {host port} {
    if {[catch {socket $host $port} s]} {
        return 1
    }
    close $s
    return 0
}

proc listen_free_port {hosts} {
    for {set i 0} {$i < 50} {incr i} {
        set p [free_port [lindex $hosts 0]]
        set ok 1
        foreach h [lrange $hosts 1 end] {
            if {[catch {socket -server ::lib::noop -myaddr $h $p} s]} {
                set ok 0
                break
            }
            close $s
        }
        if {$ok} {
            return $p
        }
    }
    error "no port free on all of $hosts"
}
