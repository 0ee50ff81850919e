# fakedns.tcl -- a fake DNS responder on loopback and a server that uses
# it, for test files whose names must resolve slowly, late or not at all
# without any query leaving the host.  Sourced after lib.tcl:
#
#   source [file join $::lib::testdir fakedns.tcl]
#   fakedns_setup TABLE   ;# sets the constraint dnsFixture (or prints why not)
#   set h [ns_server ARGS...]   ;# server_start inside the namespace
#   fakedns_answers NAME ?TYPE? ;# how many answers the responder sent
#   fakedns_stop
#
# TABLE is a dict: glob pattern (lower case) -> {ADDR DELAY_MS ?LATER_MS?}.
# An A query for a name matching a pattern is answered with the IPv4
# address ADDR (TTL 1) after DELAY_MS for the first query of that name and
# type, after LATER_MS (default DELAY_MS) for later ones; an AAAA query
# gets an empty NOERROR answer with the same delays.  Every other name:
# NXDOMAIN at once.  The first matching pattern counts.
#
# The responder is a tclsh child (tcl-udp) on UDP port 53 of the wildcard
# address that answers only loopback peers and logs each query and answer
# on its stderr (a file).  The server runs in a private mount namespace in
# which /etc/resolv.conf is bind-mounted over by a file naming it:
#     unshare -m sh -c 'mount --bind FAKE /etc/resolv.conf && exec SERVER'
# Needs root (port 53, mount); the tests are skipped otherwise.  (The same
# technique as slowdns.test, with a configurable table.)

set ::fakedns_script {
package require udp
lassign $argv table mode
proc log {msg} {
    puts stderr "[clock milliseconds] $msg"
    flush stderr
}
set s ""
set opt [expr {$mode eq "reuse" ? "reuse" : ""}]
if {[catch {udp_open 53 {*}$opt} s]} {
    set err $s
    set s ""
}
if {$s eq ""} {
    puts "error udp_open 53: $err"
    flush stdout
    exit 1
}
fconfigure $s -translation binary -buffering none -blocking 0
proc name_of {pkt} {
    # -> {name qtype end-of-question offset}, or "" when malformed
    set off 12
    set labels {}
    while {1} {
        if {$off >= [string length $pkt]} { return "" }
        binary scan $pkt @${off}cu len
        incr off
        if {$len == 0} break
        if {$len > 63} { return "" }
        lappend labels [string range $pkt $off [expr {$off + $len - 1}]]
        incr off $len
    }
    if {$off + 4 > [string length $pkt]} { return "" }
    binary scan $pkt @${off}Su qtype
    incr off 4
    return [list [string tolower [join $labels .]] $qtype $off]
}
proc reply {pkt qend rcode addr} {
    binary scan $pkt SuSu id flags
    set flags [expr {0x8000 | ($flags & 0x7900) | 0x0400 | 0x0080 | $rcode}]
    set out [binary format S6 [list $id $flags 1 [expr {$addr ne ""}] 0 0]]
    append out [string range $pkt 12 [expr {$qend - 1}]]
    if {$addr ne ""} {
        append out [binary format SSSISc4 0xC00C 1 1 1 4 [split $addr .]]
    }
    return $out
}
proc send {s peer data what} {
    if {[catch {
        fconfigure $s -remote $peer
        puts -nonewline $s $data
    } msg]} {
        log "send to $peer failed: $msg"
        return
    }
    log "answered $what"
}
proc query {s} {
    if {[catch {read $s} pkt] || $pkt eq ""} return
    set peer [fconfigure $s -peer]
    if {![string match 127.* [lindex $peer 0]]} {
        log "ignored packet from $peer"
        return
    }
    if {[string length $pkt] < 12} return
    set q [name_of $pkt]
    if {$q eq ""} return
    lassign $q name qtype qend
    set entry ""
    dict for {pat e} $::table {
        if {[string match $pat $name]} {
            set entry $e
            break
        }
    }
    if {$entry eq ""} {
        log "query $name type $qtype from $peer: NXDOMAIN"
        send $s $peer [reply $pkt $qend 3 ""] "$name type $qtype NXDOMAIN"
        return
    }
    lassign $entry addr delay later
    if {$later eq ""} { set later $delay }
    set n [incr ::seen($name,$qtype)]
    set wait [expr {$n == 1 ? $delay : $later}]
    set r [reply $pkt $qend 0 [expr {$qtype == 1 ? $addr : ""}]]
    log "query $name type $qtype from $peer: answer in $wait ms"
    after $wait [list send $s $peer $r "$name type $qtype"]
}
fileevent $s readable [list query $s]
fconfigure stdin -blocking 0
fileevent stdin readable {
    read stdin
    if {[eof stdin]} { exit 0 }
}
puts ready
flush stdout
vwait forever
}

set ::fakedns_skip ""
set ::fakedns_pid ""
set ::fakedns_pipe ""
set ::fakedns_log ""

# Loopback address for resolv.conf: 127.0.0.1 unless some other socket is
# bound to it on port 53 (it would get the queries instead of our wildcard
# socket); then another 127.0.0.x.
proc fakedns_address {} {
    set taken {}
    catch {
        set f [open /proc/net/udp r]
        foreach line [lrange [split [read $f] \n] 1 end] {
            if {[regexp {^\s*\d+:\s+([0-9A-F]{8}):0035\s} $line -> a]} {
                lappend taken [join [lreverse [scan $a %2x%2x%2x%2x]] .]
            }
        }
        close $f
    }
    foreach a {127.0.0.1 127.0.0.54 127.0.0.99 127.1.2.3} {
        if {$a ni $taken} {
            return $a
        }
    }
    return 127.0.0.1
}

# fakedns_start table -- start the responder; sets ::fakedns_pid, or
# ::fakedns_skip.  Port 53 is bound without SO_REUSEADDR first, for 20 s
# if need be, so that a concurrent run holding it (this fixture or
# slowdns.test) is waited for rather than shared; then with it (another
# resolver bound to one loopback address, e.g. systemd-resolved's
# 127.0.0.53, needs it), for 20 s more.
proc fakedns_start {table} {
    set script [tmpfile fakedns.tcl $::fakedns_script]
    set ::fakedns_log [tmpfile fakedns.log]
    set reuse_at [expr {[clock milliseconds] + 20000}]
    set deadline [expr {[clock milliseconds] + 40000}]
    while {1} {
        set mode [expr {[clock milliseconds] < $reuse_at ? "plain" : "reuse"}]
        set pipe [open |[list [info nameofexecutable] $script $table $mode \
                2>> $::fakedns_log] r+]
        fconfigure $pipe -blocking 0 -buffering line
        set line ""
        wait_until {[gets $pipe line] >= 0 || [eof $pipe]} 5000
        if {$line eq "ready"} {
            set ::fakedns_pipe $pipe
            set ::fakedns_pid [lindex [pid $pipe] 0]
            ::lib::register_pid $::fakedns_pid
            return
        }
        catch {exec kill [lindex [pid $pipe] 0]}
        fconfigure $pipe -blocking 1
        catch {close $pipe}
        if {[clock milliseconds] >= $deadline} {
            set ::fakedns_skip "DNS responder cannot listen on UDP port 53:\
                    [expr {$line eq "" ? [::lib::readfile $::fakedns_log] : $line}]"
            return
        }
        pause 500
    }
}

# fakedns_setup table -- decide whether the fixture can run, start the
# responder and set the constraint dnsFixture.
proc fakedns_setup {table} {
    if {![testConstraint root]} {
        set ::fakedns_skip "not root (needs UDP port 53 and mount in a namespace)"
    } elseif {[auto_execok unshare] eq ""} {
        set ::fakedns_skip "unshare(1) not installed"
    } elseif {[catch {package require udp}]} {
        set ::fakedns_skip "Tcl package udp (tcl-udp) not installed"
    } else {
        set ::fakedns_resolv [tmpfile resolv.conf \
                "nameserver [fakedns_address]\noptions timeout:10 attempts:1\n"]
        set probe {mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf}
        if {[catch {exec unshare -m sh -c $probe $::fakedns_resolv 2>@1} out] ||
                $out ne [string trimright [::lib::readfile $::fakedns_resolv]]} {
            set ::fakedns_skip "unshare -m / mount --bind failed: $out"
        } else {
            fakedns_start $table
        }
    }
    testConstraint dnsFixture [expr {$::fakedns_skip eq ""}]
    if {$::fakedns_skip ne ""} {
        puts "[file rootname [file tail [info script]]]: DNS tests skipped:\
                $::fakedns_skip"
    }
}

# ns_command cmd -- cmd (a list) wrapped to run in the namespace with the
# fake resolv.conf (the pid stays the same: unshare and sh exec).
proc ns_command {cmd} {
    return [list unshare -m sh -c \
            {mount --bind "$0" /etc/resolv.conf && exec "$@"} \
            $::fakedns_resolv {*}$cmd]
}

# ns_server ?args? -- server_start inside the namespace.
proc ns_server {args} {
    set saved $::SOCKS5
    set ::SOCKS5 [ns_command $saved]
    try {
        return [server_start {*}$args]
    } finally {
        set ::SOCKS5 $saved
    }
}

# fakedns_answers name ?type? -- answers the responder has sent for name
# (type 1 = A, 28 = AAAA; default: any type).
proc fakedns_answers {name {type *}} {
    set n 0
    foreach line [split [::lib::readfile $::fakedns_log] \n] {
        if {[string match "* answered $name type $type" $line]} {
            incr n
        }
    }
    return $n
}

proc fakedns_stop {} {
    if {$::fakedns_pid ne ""} {
        catch {exec kill $::fakedns_pid}
        catch {close $::fakedns_pipe}
        set ::fakedns_pid ""
    }
}
