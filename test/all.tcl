# all.tcl -- run the socks5 black-box test suite.
#
# Usage: tclsh test/all.tcl ?pattern ...? ?-tcltestoption value ...?
#
#   pattern   glob matched against the file names in test/ (a missing
#             ".test" suffix is implied), e.g. "greeting*" or "auth"; default:
#             every *.test file.
#   -option value   passed on to tcltest in each file, e.g. -match auth-1.*
#
# Every file runs in its own tclsh child process, so one crashing or hanging
# file cannot hide the results of the others.  Environment:
#   SOCKS5                    server command (default: ../socks5 from here)
#   SOCKS5_TEST_SLOW          timeout multiplier for slow targets (default 1)
#   SOCKS5_TEST_FILE_TIMEOUT  seconds allowed per file (default 300)
#
# The last line of output is always "N passed, N failed, N skipped"; the exit
# status is non-zero when anything failed (a file that crashes or times out
# counts as one failure).

set testdir [file dirname [file normalize [info script]]]

set patterns {}
set options {}
for {set i 0} {$i < [llength $argv]} {incr i} {
    set a [lindex $argv $i]
    if {[string match -* $a]} {
        lappend options $a [lindex $argv [incr i]]
    } else {
        lappend patterns $a
    }
}
if {![llength $patterns]} {
    set patterns {*}
}

set files {}
foreach f [lsort [glob -nocomplain -directory $testdir *.test]] {
    set tail [file tail $f]
    foreach p $patterns {
        if {[string match $p $tail] || [string match $p.test $tail]} {
            lappend files $f
            break
        }
    }
}

set filetimeout 300
if {[info exists env(SOCKS5_TEST_FILE_TIMEOUT)] &&
        [string is integer -strict $env(SOCKS5_TEST_FILE_TIMEOUT)]} {
    set filetimeout $env(SOCKS5_TEST_FILE_TIMEOUT)
}
set slow 1
if {[info exists env(SOCKS5_TEST_SLOW)] &&
        [string is double -strict $env(SOCKS5_TEST_SLOW)]} {
    set slow $env(SOCKS5_TEST_SLOW)
}
set filetimeout [expr {int($filetimeout * $slow)}]

# Kill server processes that a crashed test file left behind.  Only pids the
# child recorded in its pid file are considered, and only while they are
# still running the command under test.
proc reap_orphans {pidfile} {
    if {[catch {open $pidfile r} f]} {
        return
    }
    set pids [read $f]
    close $f
    file delete $pidfile
    set cmd [file tail [lindex $::env(SOCKS5) 0]]
    foreach pid $pids {
        if {[catch {open /proc/$pid/cmdline r} f]} {
            continue
        }
        set cmdline [string map {\0 " "} [read $f]]
        close $f
        if {[string first $cmd $cmdline] >= 0} {
            catch {exec kill -KILL $pid}
        }
    }
}

# Run one test file; returns {output timedout}.
proc run_file {file options} {
    global filetimeout
    set pipe [open |[list [info nameofexecutable] $file {*}$options 2>@1] r]
    fconfigure $pipe -blocking 0 -translation auto
    set ::out ""
    set ::done 0
    fileevent $pipe readable [list apply {{pipe} {
        append ::out [read $pipe]
        if {[eof $pipe]} {
            set ::done 1
        }
    }} $pipe]
    set timer [after [expr {$filetimeout * 1000}] {set ::done timeout}]
    vwait ::done
    after cancel $timer
    set timedout [expr {$::done eq "timeout"}]
    if {$timedout} {
        foreach pid [pid $pipe] {
            catch {exec kill -KILL $pid}
        }
    }
    fconfigure $pipe -blocking 1
    catch {close $pipe}
    return [list $::out $timedout]
}

if {![info exists env(SOCKS5)] || [string trim $env(SOCKS5)] eq ""} {
    set env(SOCKS5) [list [file join [file dirname $testdir] socks5]]
}
puts "server: $env(SOCKS5)"

set passed 0
set failed 0
set skipped 0
set badfiles {}
foreach file $files {
    set tail [file tail $file]
    set env(SOCKS5_TEST_PIDFILE) [file join /tmp socks5-test-pids-[pid]-[file rootname $tail]]
    file delete $env(SOCKS5_TEST_PIDFILE)
    set start [clock milliseconds]
    lassign [run_file $file $options] out timedout
    reap_orphans $env(SOCKS5_TEST_PIDFILE)
    set secs [format %.1f [expr {([clock milliseconds] - $start) / 1000.0}]]
    set re {Total\s+(\d+)\s+Passed\s+(\d+)\s+Skipped\s+(\d+)\s+Failed\s+(\d+)}
    if {!$timedout && [regexp $re $out -> t p s f]} {
        incr passed $p
        incr skipped $s
        incr failed $f
        puts [format "%-20s %3d passed, %d failed, %d skipped (%ss)" \
                $tail $p $f $s $secs]
        if {$f > 0} {
            lappend badfiles $tail
            puts [string trimright $out]
            puts ""
        }
    } else {
        incr failed
        lappend badfiles $tail
        set why [expr {$timedout ? "timed out after ${filetimeout}s" : "crashed"}]
        puts [format "%-20s %s (%ss), output:" $tail $why $secs]
        puts [string trimright $out]
        puts ""
    }
}

if {![llength $files]} {
    puts stderr "no test files match: $patterns"
    incr failed
}
if {[llength $badfiles]} {
    puts "files with failures: [join $badfiles {, }]"
}
puts "$passed passed, $failed failed, $skipped skipped"
exit [expr {$failed > 0}]
