# udplib.tcl -- UDP helpers for test files (the same as in udp.test, which
# keeps its own copy): sockets in this process (tcl-udp), datagrams in
# SOCKS5 UDP format and UDP ASSOCIATE.  Sourced after lib.tcl; needs the
# Tcl package udp.
#
#   udp_sock ?ipv6?           socket; datagrams queue in ::udp_rx(chan)
#   udp_send chan host port bytes
#   udp_recv chan ?ms?        next {host port data}, or ""
#   udp_sink ?ipv6?           socket that only records into ::udp_seen(chan)
#   udp_close chan
#   udp_dgram host port data ?frag?   RSV RSV FRAG ATYP ADDR PORT DATA
#   udp_dgram_name name port data     the same with a DOMAINNAME
#   udp_assoc srv ?host port?  UDP ASSOCIATE: dict ctl rhost rport reply

package require udp

set ::udp_chans {}

proc udp_sock {{family ipv4}} {
    if {$family eq "ipv6"} {
        set s [udp_open 0 ipv6]
    } else {
        set s [udp_open 0]
    }
    fconfigure $s -translation binary -buffering none -blocking 0
    set ::udp_rx($s) {}
    fileevent $s readable [list udp_readable $s]
    lappend ::udp_chans $s
    return $s
}

proc udp_readable {s} {
    if {[catch {read $s} data] || $data eq ""} {
        return
    }
    lappend ::udp_rx($s) [list {*}[fconfigure $s -peer] $data]
}

proc udp_sink {{family ipv4}} {
    set s [udp_sock $family]
    set ::udp_seen($s) {}
    fileevent $s readable [list udp_sink_readable $s]
    return $s
}

proc udp_sink_readable {s} {
    if {[catch {read $s} data] || $data eq ""} {
        return
    }
    lappend ::udp_seen($s) [list {*}[fconfigure $s -peer] $data]
}

proc udp_port {s} {
    return [fconfigure $s -myport]
}

proc udp_send {s host port bytes} {
    fconfigure $s -remote [list $host $port]
    puts -nonewline $s $bytes
}

proc udp_recv {s {timeout 2000}} {
    if {![wait_until {[llength $::udp_rx($s)] > 0} $timeout]} {
        return ""
    }
    set d [lindex $::udp_rx($s) 0]
    set ::udp_rx($s) [lrange $::udp_rx($s) 1 end]
    return $d
}

proc udp_close {s} {
    catch {close $s}
    set ::udp_chans [lsearch -all -inline -not -exact $::udp_chans $s]
    unset -nocomplain ::udp_rx($s) ::udp_seen($s)
}

proc udp_cleanup {} {
    foreach s $::udp_chans {
        catch {close $s}
    }
    set ::udp_chans {}
}

proc udp_dgram {host port data {frag 0}} {
    return [binary format ccc 0 0 $frag][socks_addr $host][binary format S $port]$data
}

proc udp_dgram_name {name port data} {
    set b [encoding convertto utf-8 $name]
    return [binary format ccccc 0 0 0 3 [string length $b]]$b[binary format S $port]$data
}

# udp_assoc srv ?host? ?port? -- greeting + UDP ASSOCIATE naming host:port
# (default 0.0.0.0:0); returns a dict: ctl (control channel), rhost and
# rport (the relay), reply.  Errors unless the greeting and REP are 00.
proc udp_assoc {srv {host 0.0.0.0} {port 0}} {
    set c [sock_open [dict get $srv host] [dict get $srv port]]
    send_bytes $c [greeting 0][socks_request udp $host $port]
    set g [recv_exact $c 2]
    if {$g ne "05 00"} {
        sock_close $c
        error "greeting refused: $g"
    }
    set r [socks_reply $c 5000]
    if {[dict get $r rep] != 0} {
        sock_close $c
        error "UDP ASSOCIATE failed: [dict get $r hex]"
    }
    return [dict create ctl $c rhost [dict get $r addr] \
            rport [dict get $r port] reply $r]
}
