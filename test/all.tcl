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
# file cannot hide the results of the others.  Up to TEST_JOBS files run at
# once, the slowest first (by their times in the last run, kept in
# test/tmp-bin/times when that directory exists); the output of each file
# is printed whole when it ends, a file that failed with all its output and
# its name.  Environment:
#   SOCKS5                    server command (default: ../socks5 from here)
#   SOCKS5_QUICK, SOCKS5_QUICK_DEFS  the quick build and its -D values (see
#                             the Makefile and ::lib::quick in lib.tcl)
#   TEST_JOBS                 files run at once (default: twice the number
#                             of processors: most files spend most of their
#                             time waiting on timers, the whole suite uses
#                             about half of two processors' time; 1 runs
#                             them one after another)
#   SOCKS5_TEST_SLOW          timeout multiplier for slow targets (default 1)
#   SOCKS5_TEST_FILE_TIMEOUT  seconds allowed per file (default 300)
#
# A file whose text holds the line "# suite: alone" runs while no other file
# runs (none does at present; the mark is for a file that measures the
# machine as a whole).
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

# processors -- the number of processors online (1 when unknown).
proc processors {} {
    if {![catch {exec getconf _NPROCESSORS_ONLN} n] &&
            [string is integer -strict $n] && $n > 0} {
        return $n
    }
    set n [regexp -all -line {^processor\s*:} [::readfile /proc/cpuinfo]]
    return [expr {$n > 0 ? $n : 1}]
}

proc readfile {path} {
    if {[catch {open $path r} f]} {
        return ""
    }
    set data [read $f]
    close $f
    return $data
}

set jobs [expr {2 * [processors]}]
if {[info exists env(TEST_JOBS)] && [string trim $env(TEST_JOBS)] ne ""} {
    if {![string is integer -strict $env(TEST_JOBS)] || $env(TEST_JOBS) < 1} {
        puts stderr "TEST_JOBS must be a positive integer: $env(TEST_JOBS)"
        exit 2
    }
    set jobs $env(TEST_JOBS)
}

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

# start_file file -- start a test file's child; its output collects in
# ::run(file,out) until ::run(file,done) is set (1, or "timeout").
proc start_file {file} {
    global env options filetimeout run
    set tail [file tail $file]
    # every child gets its own pid file (the variable is read at its start)
    set env(SOCKS5_TEST_PIDFILE) [file join /tmp \
            socks5-test-pids-[pid]-[file rootname $tail]]
    file delete $env(SOCKS5_TEST_PIDFILE)
    set run($file,pidfile) $env(SOCKS5_TEST_PIDFILE)
    set run($file,start) [clock milliseconds]
    set run($file,out) ""
    if {[catch {open |[list [info nameofexecutable] $file {*}$options 2>@1] r} pipe]} {
        set run($file,out) "cannot start: $pipe"
        set run($file,pipe) ""
        set run($file,timer) ""
        set run($file,done) 1
        return
    }
    set run($file,pipe) $pipe
    fconfigure $pipe -blocking 0 -translation auto
    fileevent $pipe readable [list file_readable $file]
    set run($file,timer) [after [expr {$filetimeout * 1000}] \
            [list set ::run($file,done) timeout]]
}

proc file_readable {file} {
    global run
    append run($file,out) [read $run($file,pipe)]
    if {[eof $run($file,pipe)]} {
        fileevent $run($file,pipe) readable {}
        set run($file,done) 1
    }
}

# finish_file file -- reap a child that ended (or kill it at its timeout),
# print its results whole and add them up.
proc finish_file {file} {
    global run passed failed skipped badfiles filetimeout times
    after cancel $run($file,timer)
    set timedout [expr {$run($file,done) eq "timeout"}]
    set pipe $run($file,pipe)
    if {$pipe ne ""} {
        if {$timedout} {
            foreach pid [pid $pipe] {
                catch {exec kill -KILL $pid}
            }
        }
        fconfigure $pipe -blocking 1
        catch {close $pipe}
    }
    reap_orphans $run($file,pidfile)
    set ms [expr {[clock milliseconds] - $run($file,start)}]
    set secs [format %.1f [expr {$ms / 1000.0}]]
    set tail [file tail $file]
    set out $run($file,out)
    set re {Total\s+(\d+)\s+Passed\s+(\d+)\s+Skipped\s+(\d+)\s+Failed\s+(\d+)}
    if {!$timedout && [regexp $re $out -> t p s f]} {
        dict set times $tail [expr {$ms / 1000.0}]
        incr passed $p
        incr skipped $s
        incr failed $f
        if {$f > 0} {
            lappend badfiles $tail
            puts "==== $tail: $f FAILED, output:"
            puts [string trim $out \n]
            puts "==== end of $tail"
        }
        puts [format "%-20s %3d passed, %d failed, %d skipped (%ss)" \
                $tail $p $f $s $secs]
    } else {
        incr failed
        lappend badfiles $tail
        set why [expr {$timedout ? "timed out after ${filetimeout}s" : "crashed"}]
        puts "==== $tail: $why, output:"
        puts [string trim $out \n]
        puts "==== end of $tail"
        puts [format "%-20s %s (%ss)" $tail [string toupper $why] $secs]
    }
    flush stdout
    unset -nocomplain run($file,out)
}

if {![info exists env(SOCKS5)] || [string trim $env(SOCKS5)] eq ""} {
    set env(SOCKS5) [list [file join [file dirname $testdir] socks5]]
}
puts "server: $env(SOCKS5)"
if {[info exists env(SOCKS5_QUICK)] && [string trim $env(SOCKS5_QUICK)] ne ""} {
    puts "quick build: $env(SOCKS5_QUICK) ($env(SOCKS5_QUICK_DEFS))"
}

# The slowest files first: the run then ends soon after its longest file.
set timesfile [file join $testdir tmp-bin times]
set times [dict create]
foreach {name secs} [readfile $timesfile] {
    if {[string is double -strict $secs]} {
        dict set times $name $secs
    }
}
proc weight {file} {
    set tail [file tail $file]
    if {[dict exists $::times $tail]} {
        return [dict get $::times $tail]
    }
    return 1e6      ;# not measured yet: early
}
set queue [lsort -command {apply {{a b} {
    set d [expr {[weight $b] - [weight $a]}]
    expr {$d > 0 ? 1 : $d < 0 ? -1 : [string compare $a $b]}
}}} $files]
set alone {}
foreach file $queue {
    if {[regexp -line {^# suite: alone$} [readfile $file]]} {
        lappend alone $file
    }
}
puts "[llength $files] files, $jobs at a time"

set passed 0
set failed 0
set skipped 0
set badfiles {}
set t0 [clock milliseconds]
set running {}
while {[llength $queue] || [llength $running]} {
    # start files while there is room; a file marked alone waits until
    # nothing else runs, and nothing starts next to it
    while {[llength $queue] && [llength $running] < $jobs} {
        set file [lindex $queue 0]
        if {[llength $running] &&
                ($file in $alone || [lindex $running 0] in $alone)} {
            break
        }
        set queue [lrange $queue 1 end]
        start_file $file
        lappend running $file
    }
    # wait for any of the running files to end
    set ended {}
    while {![llength $ended]} {
        foreach file $running {
            if {[info exists run($file,done)]} {
                lappend ended $file
            }
        }
        if {![llength $ended]} {
            vwait ::run
        }
    }
    foreach file $ended {
        finish_file $file
        set running [lsearch -all -inline -not -exact $running $file]
    }
}

if {[file isdirectory [file dirname $timesfile]] && [llength $files] > 1} {
    catch {
        set f [open $timesfile.[pid] w]
        dict for {name secs} $times {
            puts $f [list $name $secs]
        }
        close $f
        file rename -force $timesfile.[pid] $timesfile
    }
}

if {![llength $files]} {
    puts stderr "no test files match: $patterns"
    incr failed
}
puts [format "wall time %.1f s" [expr {([clock milliseconds] - $t0) / 1000.0}]]
if {[llength $badfiles]} {
    puts "files with failures: [join [lsort $badfiles] {, }]"
}
puts "$passed passed, $failed failed, $skipped skipped"
exit [expr {$failed > 0}]
