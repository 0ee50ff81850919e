#!/usr/bin/python3
"""Throwaway MIT Kerberos realm for the GSS-API (RFC 1961) tests.

usage:
  realm.py [start] [DIR] [--watch-pid PID] [--max-life SECONDS]
                           create a realm in DIR (made with mkdtemp when
                           omitted), start its KDC (krb5kdc -n, a child that
                           keeps running after realm.py exits) and print
                           shell-sourceable lines; the same lines are written
                           to DIR/env.  A small watchdog process ends the KDC
                           when PID exits (e.g. the test script's own pid) or
                           after SECONDS (default 3600; 0 = never), in case
                           "realm.py stop" is never called.
  realm.py stop DIR        kill the KDC recorded in DIR/env (by pid) and
                           remove DIR.
  realm.py check           exit 0 when every program and module needed is
                           present, else print the first missing one, exit 1.

What it makes, all inside DIR and nowhere else (never /etc/krb5.conf, never
the system KDC; everything on 127.0.0.1, no DNS, no reverse DNS):
  krb5.conf, kdc.conf        realm SOCKS5.TEST, KDC on 127.0.0.1:PORT (a free
                             loopback port, UDP and TCP), rdns/dns off,
                             qualify_shortname off
  principal*, stash          KDB, master key from a random password
  alice@, bob@               users with passwords (in DIR/passwords)
  alice.cc                   FILE ccache holding alice's TGT (KRB5CCNAME)
  bob.cc                     FILE ccache holding bob's TGT
  server.keytab              rcmd/localhost (what the SOCKS server uses)
  other.keytab               rcmd/otherhost (NOT in server.keytab: a client
                             that asks for rcmd@otherhost gets a ticket the
                             server cannot decrypt)
  users.keytab               alice's and bob's keys (kinit -k -t)
  env                        KRB5_CONFIG KRB5_KDC_PROFILE KRB5CCNAME
                             KRB5_KTNAME KRB5RCACHEDIR KDC_PID
                             KDC_WATCHDOG_PID KDC_PORT REALM GSS_DIR
Works as root and as an ordinary user.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REALM = "SOCKS5.TEST"
SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"]
PROGRAMS = ["krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist"]


def which(prog):
    path = os.environ.get("PATH", "").split(os.pathsep) + SBIN
    for d in path:
        p = os.path.join(d, prog)
        if d and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def check():
    for prog in PROGRAMS:
        if which(prog) is None:
            print("realm.py: missing program %s (Debian: krb5-kdc, "
                  "krb5-admin-server, krb5-user)" % prog)
            return 1
    # gssclient.py needs python3-gssapi; it re-executes itself with
    # /usr/bin/python3 when the python3 first on PATH (pyenv...) lacks it.
    try:
        import gssapi  # noqa: F401
        import gssapi.raw  # noqa: F401
        return 0
    except Exception:
        pass
    deb = "/usr/bin/python3"
    if os.path.exists(deb) and subprocess.run(
            [deb, "-c", "import gssapi, gssapi.raw"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        return 0
    print("realm.py: missing python module gssapi (Debian: python3-gssapi)")
    return 1


def free_port():
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        t.close()
        u.close()
        return port
    raise SystemExit("realm.py: no free loopback port")


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def run(env, argv, stdin=None):
    p = subprocess.run(argv, env=env, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise SystemExit("realm.py: %s failed (%d):\n%s"
                         % (" ".join(argv), p.returncode, p.stdout))
    return p.stdout


def envlines(d):
    with open(os.path.join(d, "env")) as f:
        return dict(line.strip().split("=", 1) for line in f
                    if "=" in line and not line.startswith("#"))


def start(d, watch_pid=0, max_life=3600.0):
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o700)
    port = free_port()
    krb5conf = os.path.join(d, "krb5.conf")
    kdcconf = os.path.join(d, "kdc.conf")
    write(krb5conf, """\
[libdefaults]
    default_realm = {R}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    qualify_shortname = ""
    rdns = false
    ignore_acceptor_hostname = false
    udp_preference_limit = 0
    kdc_timesync = 0
    forwardable = false
    noaddresses = true
    default_ccache_name = FILE:{D}/alice.cc
    default_keytab_name = FILE:{D}/server.keytab
    default_client_keytab_name = FILE:{D}/no-client.keytab

[realms]
    {R} = {{
        kdc = 127.0.0.1:{P}
        admin_server = 127.0.0.1:{P}
    }}

[domain_realm]
    localhost = {R}
    otherhost = {R}
    127.0.0.1 = {R}

[logging]
    default = FILE:{D}/krb5lib.log
""".format(R=REALM, D=d, P=port), 0o644)
    write(kdcconf, """\
[kdcdefaults]
    kdc_listen = 127.0.0.1:{P}
    kdc_tcp_listen = 127.0.0.1:{P}

[realms]
    {R} = {{
        database_name = {D}/principal
        key_stash_file = {D}/stash
        acl_file = {D}/kadm5.acl
        kdc_listen = 127.0.0.1:{P}
        kdc_tcp_listen = 127.0.0.1:{P}
        max_life = 10h 0m 0s
        max_renewable_life = 1d 0h 0m 0s
        master_key_type = aes256-cts-hmac-sha1-96
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{D}/kdc.log
    admin_server = FILE:{D}/kadmin.log
""".format(R=REALM, D=d, P=port), 0o644)
    write(os.path.join(d, "kadm5.acl"), "")

    env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
    env.update(KRB5_CONFIG=krb5conf, KRB5_KDC_PROFILE=kdcconf,
               KRB5RCACHEDIR=d)
    env["PATH"] = os.pathsep.join([env.get("PATH", "/usr/bin:/bin")] + SBIN)

    pw = {u: secrets.token_hex(12) for u in ("alice", "bob")}
    write(os.path.join(d, "passwords"),
          "".join("%s %s\n" % kv for kv in pw.items()))
    run(env, [which("kdb5_util"), "-r", REALM, "create", "-s", "-W",
              "-P", secrets.token_hex(16)])
    # One kadmin.local run, commands on stdin: much faster than one per cmd.
    cmds = "\n".join([
        "addprinc -pw %s alice" % pw["alice"],
        "addprinc -pw %s bob" % pw["bob"],
        "addprinc -randkey rcmd/localhost",
        "addprinc -randkey rcmd/otherhost",
        "ktadd -k %s/server.keytab rcmd/localhost" % d,
        "ktadd -k %s/other.keytab rcmd/otherhost" % d,
        "ktadd -k %s/users.keytab -norandkey alice bob" % d,
        "quit", ""])
    out = run(env, [which("kadmin.local"), "-r", REALM], stdin=cmds)
    for kt in ("server.keytab", "other.keytab", "users.keytab"):
        if not os.path.exists(os.path.join(d, kt)):
            raise SystemExit("realm.py: %s not made:\n%s" % (kt, out))

    log = open(os.path.join(d, "krb5kdc.out"), "w")
    kdc = subprocess.Popen([which("krb5kdc"), "-n", "-r", REALM], env=env,
                           stdin=subprocess.DEVNULL, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    # From here on, a failure must not leave the KDC behind.
    try:
        deadline = time.time() + 10
        kinit = [which("kinit"), "-k", "-t", os.path.join(d, "users.keytab")]
        while True:
            if kdc.poll() is not None:
                raise SystemExit("realm.py: krb5kdc exited (%s):\n%s" % (
                    kdc.returncode, open(os.path.join(d, "krb5kdc.out")).read()))
            p = subprocess.run(kinit + ["-c", "FILE:%s/alice.cc" % d,
                                        "alice@" + REALM],
                               env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if p.returncode == 0:
                break
            if time.time() > deadline:
                raise SystemExit("realm.py: KDC on 127.0.0.1:%d never "
                                 "answered: %s" % (port, p.stdout))
            time.sleep(0.05)
        run(env, kinit + ["-c", "FILE:%s/bob.cc" % d, "bob@" + REALM])
    except BaseException:
        kdc.kill()
        kdc.wait()
        raise

    # A watchdog ends the KDC if the caller dies without "realm.py stop".
    wd = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                           "_watch", str(kdc.pid), str(watch_pid),
                           str(max_life)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    lines = [
        "KRB5_CONFIG=%s" % krb5conf,
        "KRB5_KDC_PROFILE=%s" % kdcconf,
        "KRB5CCNAME=FILE:%s/alice.cc" % d,
        "KRB5_KTNAME=FILE:%s/server.keytab" % d,
        "KRB5RCACHEDIR=%s" % d,
        "KDC_PID=%d" % kdc.pid,
        "KDC_WATCHDOG_PID=%d" % wd.pid,
        "KDC_PORT=%d" % port,
        "REALM=%s" % REALM,
        "GSS_DIR=%s" % d,
    ]
    text = "".join("%s\nexport %s\n" % (l, l.split("=")[0]) for l in lines)
    write(os.path.join(d, "env"), text, 0o644)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def stop(d):
    d = os.path.abspath(d)
    try:
        pid = int(envlines(d).get("KDC_PID", "0"))
    except (OSError, ValueError):
        pid = 0
    try:
        wpid = int(envlines(d).get("KDC_WATCHDOG_PID", "0"))
    except (OSError, ValueError):
        wpid = 0
    if wpid > 0:
        kill_if(wpid, b"_watch")
    if pid > 0:
        # Only kill it if it is still our krb5kdc (pid not reused).
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                ours = b"krb5kdc" in f.read()
        except OSError:
            ours = False
        if ours:
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    # reap if we happen to be the parent; else just poll
                    try:
                        if os.waitpid(pid, os.WNOHANG)[0] == pid:
                            break
                    except ChildProcessError:
                        pass
                    time.sleep(0.02)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if os.path.isfile(os.path.join(d, "krb5.conf")):
        shutil.rmtree(d, ignore_errors=True)
    return 0


def kill_if(pid, marker):
    """SIGTERM pid if its command line still holds marker (not reused)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if marker in f.read():
                os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        pass


def watch(kdc, parent, max_life):
    """Watchdog: end the KDC when `parent` exits or after max_life s."""
    end = time.time() + max_life if max_life > 0 else None

    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    while alive(kdc):
        if (parent > 0 and not alive(parent)) or (end and time.time() > end):
            kill_if(kdc, b"krb5kdc")
            return 0
        time.sleep(0.5)
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "check":
        return check()
    if len(argv) == 2 and argv[0] == "stop":
        return stop(argv[1])
    if len(argv) == 4 and argv[0] == "_watch":
        return watch(int(argv[1]), int(argv[2]), float(argv[3]))
    if argv and argv[0] == "start":
        argv = argv[1:]
    opts = {"--watch-pid": 0, "--max-life": 3600.0}
    rest = []
    while argv:
        a = argv.pop(0)
        if a in opts and argv:
            try:
                opts[a] = type(opts[a])(argv.pop(0))
            except ValueError:
                sys.stderr.write(__doc__)
                return 2
        elif a.startswith("-"):
            sys.stderr.write(__doc__)
            return 2
        else:
            rest.append(a)
    if len(rest) > 1:
        sys.stderr.write(__doc__)
        return 2
    if check() != 0:
        return 1
    d = rest[0] if rest else tempfile.mkdtemp(prefix="socks5-gss-")
    return start(d, opts["--watch-pid"], opts["--max-life"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
