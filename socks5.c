/*
 * socks5.c - a SOCKS Protocol Version 5 server (RFC 1928, RFC 1929)
 *
 * One process, one poll() loop, a session table and a pollfd array sized
 * once at startup, a state machine per session, non-blocking sockets, and
 * no heap allocation after startup. Name lookups run in a few helper
 * processes, forked when lookups wait, that answer over socket pairs, so
 * a slow resolver never stalls the loop.
 *
 * Data is read into one shared scratch buffer and written straight to the
 * other side; only what that side cannot take yet is kept, in a spill
 * buffer borrowed from a pool allocated at startup and returned as soon as
 * it drains. An idle session holds no buffer at all.
 *
 * The parts of this file, in order (each opens with a ---- rule):
 *
 *   tunables, features,        compile-time limits; what a router build
 *   compat, types              leaves out (SOCKS5_NO_*); shims; structs
 *   the server                 struct server srv: configuration, tables,
 *                              pools, listener, helpers, all in one
 *   logging, small helpers     log lines and escaping; clock, descriptors,
 *                              socket addresses
 *   users, access rules        the -u file; the -a rules and their checks
 *   spill pool, fd budget      buffers lent to backed-up flows; the
 *                              descriptors each session may take
 *   protocol parsers           pure functions over the bytes received
 *   errno to REP, resolver     replies for errors; getaddrinfo in helper
 *                              processes, asked over socket pairs
 *   sessions, replies          the table, state_enter() (the one place a
 *                              state changes), the end of a session;
 *                              handshake replies and the lingering close
 *   handshake, pacing, login,  each state's part: what it polls for, its
 *   requests, connecting,      handler (st_*), what it does when its time
 *   BIND, UDP, relay, closing  is up (*_expired); they appear in the order
 *                              a session goes through them
 *   the loop                   the table of states, the poll set, running
 *                              and expiring sessions, accepting clients,
 *                              signals and the status line
 *   startup, the API           tables, listener, privileges, daemon; the
 *                              socks5.h functions
 *   GSS-API                    method 01 (RFC 1961), -DSOCKS5_GSSAPI only:
 *                              a session's own process, the exchange,
 *                              the pump that wraps and unwraps
 *   main                       the command line
 */

#ifndef _XOPEN_SOURCE		/* a host tree may have its own (600+) */
#define _XOPEN_SOURCE 600	/* POSIX.1-2001 with XSI: the only one */
#endif

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "socks5.h"

#ifdef SOCKS5_GSSAPI
#include <gssapi/gssapi.h>
#endif

/* ------------------------------------------------------------------ */
/* Tunables: every compile-time limit, each overridable with -D.       */

#ifndef SOCKS5_BUFSIZE
#define SOCKS5_BUFSIZE		65536	/* TCP read size, spill buffer bytes */
#endif
#ifndef SOCKS5_MAXSESS
#define SOCKS5_MAXSESS		1024	/* default session table (-c) */
#endif
#ifndef SOCKS5_POOL_DIV
#define SOCKS5_POOL_DIV		16	/* spill buffers = sessions / this */
#endif
#ifndef SOCKS5_POOL_MIN
#define SOCKS5_POOL_MIN		8	/* ... but at least this many */
#endif
#ifndef SOCKS5_UDP_DIV
#define SOCKS5_UDP_DIV		64	/* UDP buffers = sessions / this, */
#endif
#ifndef SOCKS5_UDP_MIN
#define SOCKS5_UDP_MIN		4	/* ... at least this many, */
#endif
#ifndef SOCKS5_UDP_MAX
#define SOCKS5_UDP_MAX		64	/* ... at most this many */
#endif
#ifndef SOCKS5_FRAG_SECS
#define SOCKS5_FRAG_SECS	5	/* reassembly timer (-f), RFC minimum */
#endif
#ifndef SOCKS5_UDP_BATCH
#define SOCKS5_UDP_BATCH	64	/* datagrams per socket per wakeup */
#endif
#ifndef SOCKS5_RESOLVERS
#define SOCKS5_RESOLVERS	4	/* resolver helper processes */
#endif
#ifndef SOCKS5_ABANDON_MS
#define SOCKS5_ABANDON_MS	1000	/* a helper busy this long with a
					   lookup nobody wants is replaced */
#endif
#ifndef SOCKS5_HELPER_IDLE_MS
#define SOCKS5_HELPER_IDLE_MS	60000	/* a helper idle this long exits */
#endif
#ifndef SOCKS5_MAXADDR
#define SOCKS5_MAXADDR		8	/* addresses tried per destination */
#endif
#ifndef SOCKS5_MAXUSERS
#define SOCKS5_MAXUSERS		128	/* entries in the user file */
#endif
#ifndef SOCKS5_MAXRULES
#define SOCKS5_MAXRULES		64	/* -a rules */
#endif
#ifndef SOCKS5_AUTH_DELAY_MS
#define SOCKS5_AUTH_DELAY_MS	1000	/* between failed logins per address */
#endif
#ifndef SOCKS5_AUTH_TRACK
#define SOCKS5_AUTH_TRACK	64	/* addresses remembered for that */
#endif
#ifndef SOCKS5_HANDSHAKE_SECS
#define SOCKS5_HANDSHAKE_SECS	30	/* greeting to reply, and connect */
#endif
#ifndef SOCKS5_BIND_SECS
#define SOCKS5_BIND_SECS	120	/* BIND's wait for the peer */
#endif
#ifndef SOCKS5_IDLE_SECS
#define SOCKS5_IDLE_SECS	3600	/* default idle timeout (-t) */
#endif
#ifndef SOCKS5_LINGER_MS
#define SOCKS5_LINGER_MS	2000	/* drain time after a final reply */
#endif
#ifndef SOCKS5_BACKLOG
#define SOCKS5_BACKLOG		128	/* listen() backlog */
#endif
#ifndef SOCKS5_MAXWORKERS
#define SOCKS5_MAXWORKERS	64	/* -w */
#endif
#ifndef SOCKS5_STOP_MS
#define SOCKS5_STOP_MS		5000	/* workers' time to exit on SIGTERM */
#endif
#ifndef SOCKS5_LISTENERS
#define SOCKS5_LISTENERS	8	/* listening sockets, opened or inherited */
#endif
#ifndef SOCKS5_PUMP_ROUNDS
#define SOCKS5_PUMP_ROUNDS	4	/* reads per wakeup while both flow */
#endif
#ifndef SOCKS5_HS_SIZE
#define SOCKS5_HS_SIZE		520	/* handshake bytes a session keeps */
#endif
#ifndef SOCKS5_GSS_SESSIONS
#define SOCKS5_GSS_SESSIONS	32	/* GSS-API sessions at once (each
					   in a process of its own) */
#endif
#ifndef SOCKS5_GSS_PER_ADDR
#define SOCKS5_GSS_PER_ADDR	8	/* ... of them from one address (IPv4)
					   or /64 (IPv6) */
#endif
#ifndef SOCKS5_FD_MARGIN
#define SOCKS5_FD_MARGIN	1	/* kept out of the budget: a refused
				   client's accept, the user file */
#endif

/* The largest handshake message is RFC 1929's: 1 + 1 + 255 + 1 + 255. */
typedef char hs_size_check[SOCKS5_HS_SIZE >= 513 ? 1 : -1];

/* ------------------------------------------------------------------ */
/* Features: a router build leaves some out, each with its own -D.     */

/*
 * -DSOCKS5_NO_UDP: no UDP ASSOCIATE (REP 07), no UDP buffers, and no
 * UDP share of the scratch buffer; -DSOCKS5_NO_BIND: no BIND (REP 07);
 * -DSOCKS5_NO_RULES: no -a; -DSOCKS5_NO_AUTH: no -u, no logins, no
 * pacing (a greeting without method 00 gets FF). All four leave a
 * CONNECT-only server. An option of a left-out feature is a usage
 * error that says so, and so is its socks5_config field for the API;
 * -V names what is left out.
 */
#ifdef SOCKS5_NO_UDP
#define WITH_UDP	0
#else
#define WITH_UDP	1
#endif
#ifdef SOCKS5_NO_BIND
#define WITH_BIND	0
#else
#define WITH_BIND	1
#endif
#ifdef SOCKS5_NO_RULES
#define WITH_RULES	0
#else
#define WITH_RULES	1
#endif
#ifdef SOCKS5_NO_AUTH
#define WITH_AUTH	0
#else
#define WITH_AUTH	1
#endif

/*
 * -DSOCKS5_GSSAPI (make GSSAPI=1) adds method 01, GSS-API (RFC 1961),
 * with the system's GSS-API library: the one part of this file that
 * needs more than libc ("GSS-API" below). Without it the file includes
 * no GSS-API header and a greeting that offers only 01 gets FF.
 */
#ifdef SOCKS5_GSSAPI
#define WITH_GSSAPI	1
#else
#define WITH_GSSAPI	0
#endif

/* ------------------------------------------------------------------ */
/* Compat: a few shims keyed on what the system has.                   */

#ifndef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN
#endif
#ifndef SHUT_WR
#define SHUT_WR 1
#endif

/*
 * musl's RLIM_INFINITY is (~0ULL): clang -std=c89 -pedantic reports that
 * long long constant (-Wlong-long) although a system header wrote it.
 */
#ifdef __clang__
#define RLIM_INF	(__extension__ RLIM_INFINITY)
#else
#define RLIM_INF	RLIM_INFINITY
#endif

/*
 * Workers (-w) get a listening socket each where the kernel spreads the
 * clients among such sockets: Linux's SO_REUSEPORT, FreeBSD's
 * SO_REUSEPORT_LB. _XOPEN_SOURCE hides both; their values are the
 * kernels' ABI. Elsewhere (SO_REUSEPORT on the other BSDs and macOS
 * does not spread), and where the kernel refuses, the workers share.
 */
#if defined(__linux__) && !defined(SO_REUSEPORT)
#if defined(__mips__) || defined(__sparc__) || defined(__alpha__)
#define SO_REUSEPORT	0x0200
#elif defined(__hppa__)
#define SO_REUSEPORT	0x4004
#else
#define SO_REUSEPORT	15
#endif
#endif
#if defined(__FreeBSD__) && !defined(SO_REUSEPORT_LB)
#define SO_REUSEPORT_LB	0x00010000
#endif
#if defined(SO_REUSEPORT_LB)
#define SO_SPREAD	SO_REUSEPORT_LB
#elif defined(__linux__)
#define SO_SPREAD	SO_REUSEPORT
#endif

/*
 * setgroups() is not POSIX, and strict headers hide it. Its count is a
 * size_t on Linux (glibc, musl, bionic) and an int on the BSDs, macOS
 * and Solaris: declare what the system's own prototype says, so that a
 * build that also sees that prototype agrees with it.
 */
#if defined(__linux__)
extern int setgroups(size_t, const gid_t *);
#else
extern int setgroups(int, const gid_t *);
#endif

#ifndef EPROTO			/* not every system has it */
#define EPROTO ECONNABORTED
#endif

#define AGAIN(e)	((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)
#define READY_IN	(POLLIN | POLLERR | POLLHUP)
#define READY_OUT	(POLLOUT | POLLERR | POLLHUP)

/* ------------------------------------------------------------------ */
/* Types.                                                              */

/* A socket address of either family, small enough to keep many of. */
union sockaddr_any {
	struct sockaddr		sa;
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
};

enum state {
	S_FREE,		/* slot unused */
	S_GREETING,	/* waiting for the method selection message */
	S_AUTH,		/* waiting for the RFC 1929 request */
	S_REQUEST,	/* waiting for the SOCKS request */
	S_RESOLVE,	/* a resolver helper is looking up the name */
	S_CONNECT,	/* non-blocking connect in progress */
	S_BIND_WAIT,	/* BIND: listening for the one incoming connection */
	S_RELAY,	/* moving data both ways */
	S_UDP,		/* UDP ASSOCIATE: relaying datagrams */
	S_AUTH_WAIT,	/* a paced login waits for its answer's slot */
	S_CLOSING,	/* flushing a final reply */
	S_LINGER,	/* reply sent, write side shut, draining input */
	S_DONE,		/* to be freed by the loop */
	NSTATES
};

/* The deadline a state sets when it is entered. */
enum timer {
	T_NONE,		/* none */
	T_HANDSHAKE,	/* handshake_ms: greeting to reply, or connect */
	T_PACED,	/* handshake_ms + SOCKS5_AUTH_DELAY_MS */
	T_BIND,		/* bind_ms */
	T_IDLE,		/* -t, pushed out whenever data moves */
	T_LINGER	/* SOCKS5_LINGER_MS */
};

struct session;

/*
 * What a state is: the deadline it sets on entry (unless it is entered
 * from the state named in continues, or from itself: then the running
 * deadline goes on), the events it polls for, its handler, and what it
 * does when its deadline passes. One row each, in the table "states"
 * at the start of the loop's part.
 */
struct state_info {
	enum timer	 timer;
	enum state	 continues;
	void		(*events)(const struct session *, short *);
	void		(*run)(struct session *, const int *);
	void		(*expire)(struct session *);
};

/*
 * A byte count that cannot overflow in practice, in integers (a double
 * would pull float emulation into soft-float routers, and C89 has no
 * long long): the low 32 bits and the rest.
 */
struct count {
	unsigned long	lo;
	unsigned long	hi;
};

/* One direction of a relay: bytes that the sink has not taken yet. */
struct flow {
	int		buf;	/* spill buffer index, -1 when none */
	unsigned char	*data;	/* pending bytes: the spill buffer, or
				   the session's handshake buffer */
	unsigned	off;	/* first pending byte in data */
	unsigned	len;	/* pending bytes */
	unsigned char	eof;	/* the source has said EOF */
	unsigned char	shut;	/* the sink's write side is shut down */
	unsigned char	full;	/* the sink is full: wait for POLLOUT */
	struct count	bytes;	/* bytes delivered to the sink */
};

/* A session's descriptors. */
enum {
	FD_CLIENT,	/* the client's connection (read side in inetd) */
	FD_CLIENT_OUT,	/* its write side: the same, or fd 1 in inetd */
	FD_REMOTE,	/* CONNECT's outgoing socket, BIND's accepted peer */
	FD_LISTEN,	/* BIND's listening socket */
	FD_UDP,		/* UDP ASSOCIATE: the client-facing socket */
	FD_UDP4,	/* UDP ASSOCIATE: outward IPv4 socket */
	FD_UDP6,	/* UDP ASSOCIATE: outward IPv6 socket */
	NFD
};

/* CONNECT and BIND: the destination's addresses, tried in turn. */
struct dest {
	unsigned char	naddr;
	unsigned char	next;		/* the next one to try */
	unsigned char	fam[SOCKS5_MAXADDR];
	unsigned char	addr[SOCKS5_MAXADDR][16];
};

/* UDP ASSOCIATE: the last DOMAINNAME looked up, and its address. */
struct udp_name {
	unsigned char	have;		/* the address is known */
	unsigned char	fam;
	unsigned char	addr[16];
	char		name[256];
};

struct session {
	enum state	state;
	int		fd[NFD];	/* its descriptors, -1 when unused */
	int		pi[NFD];	/* their pollfd index this pass, or -1 */
	int		apos;		/* position in the active list */
	int		fdres;		/* descriptors reserved for it */
	unsigned long	start;		/* ms clock at accept */
	unsigned long	start_s;	/* seconds clock at accept */
	unsigned long	deadline;	/* ms clock */
	struct flow	up;		/* client to remote */
	struct flow	down;		/* remote to client */
	unsigned char	out[64];	/* handshake replies not yet written */
	unsigned	outlen;
	unsigned char	hs[SOCKS5_HS_SIZE]; /* client bytes not consumed yet:
					   a partial message, or data sent
					   behind the request */
	unsigned	hslen;
	unsigned char	method;		/* chosen method, 0xff before */
	unsigned char	auth_ok;	/* S_AUTH_WAIT: the login was right */
	unsigned char	ulen;		/* user name length (it may hold NUL) */
	unsigned char	dnamelen;	/* dname length (likewise) */
	int		pace;		/* S_AUTH_WAIT: its pacing entry */
	unsigned long	pace_seq;	/* ... and its place in the queue */
	unsigned char	cmd;		/* request command, 0 before */
	unsigned char	datyp;		/* request ATYP, for the log */
	unsigned	lookup_id;	/* the lookup out for it, 0 none */
	unsigned char	queued;		/* lookup waiting for a helper ... */
	unsigned long	queue_seq;	/* ... since then */
	union {
		struct dest	dst;	/* CONNECT, BIND: where to */
		struct udp_name	udp;	/* UDP ASSOCIATE: a name's address */
	} to;
	unsigned short	dport;		/* destination port */
	int		lasterr;	/* errno of the last failed connect */
	const char	*result;	/* what is logged when it ends */
	union sockaddr_any peer;	/* the client's address */
	char		dname[256];	/* destination, as text */
	char		user[256];	/* authenticated user, or "" */
	unsigned long	lookup_deadline; /* when a lookup is given up */
	/* UDP ASSOCIATE */
	unsigned short	uport;		/* client's UDP port, 0 unknown */
	unsigned char	uport_fixed;	/* the request named the port */
	unsigned char	rfrag;		/* highest FRAG in the sequence */
	int		rbuf;		/* reassembly buffer, -1 none */
	unsigned	rlen;		/* bytes reassembled so far */
	unsigned long	rdeadline;	/* reassembly timer */
	int		held;		/* datagram waiting for a lookup */
	unsigned	held_len;
	unsigned long	dgrams_up;	/* datagrams relayed each way ... */
	unsigned long	dgrams_down;
	unsigned long	dgrams_dropped;	/* ... and dropped */
};

/*
 * Resolver records; both ends are this same program. An answer
 * names the slot and the id of the request it answers: a session takes
 * only the answer to the lookup it has out now.
 */
struct lookup_req {
	unsigned	slot;
	unsigned	id;
	int		family;		/* AF_UNSPEC, AF_INET or AF_INET6 */
	char		name[256];
};

struct lookup_ans {
	unsigned	slot;
	unsigned	id;
	int		naddr;		/* 0: the name did not resolve */
	unsigned char	afam[SOCKS5_MAXADDR];
	unsigned char	aaddr[SOCKS5_MAXADDR][16];
};

/* Records on a helper's socket pair: one at a time, and small. */
typedef char lookup_req_small[sizeof(struct lookup_req) <= 512 ? 1 : -1];
typedef char lookup_ans_small[sizeof(struct lookup_ans) <= 512 ? 1 : -1];

struct user {
	unsigned char	ulen;
	unsigned char	plen;
	unsigned char	name[255];
	unsigned char	pass[255];
};

struct cidr {
	unsigned char	 fam;		/* 0: any address */
	unsigned char	 bits;
	unsigned char	 addr[16];
};

struct rule {
	const char	*text;		/* as given, for the log */
	unsigned char	 allow;
	unsigned char	 cmds;		/* 1 << CMD; 0: any */
	struct cidr	 from;
	struct cidr	 to;
	unsigned	 plo, phi;	/* destination ports */
	const char	*user;		/* in text; NULL: anyone */
	size_t		 ulen;
};

/* A resolver helper: a process on a socket pair of its own. */
struct helper {
	pid_t		 pid;		/* -1: not running */
	int		 fd;		/* our end: requests out, answers in */
	int		 pi;		/* its pollfd index this pass, or -1 */
	int		 slot;		/* the session whose lookup it has, */
	unsigned	 id;		/* ... that lookup's id; slot -1: idle */
	unsigned long	 since;		/* when it took the lookup, or when
					   it became idle */
	struct lookup_ans ans;		/* its answer, as it arrives */
	unsigned	 got;		/* bytes of it so far */
};

/* GSS-API (-g, -k, -L), as the command line asks for it. */
struct gss_conf {
	const char	*service;	/* -g; NULL: no method 01 */
	const char	*keytab;	/* -k, or NULL: KRB5_KTNAME or the
					   system's default */
	unsigned	 levels;	/* -L: bit N allows level N (0-2) */
};

/* Login pacing: one address (IPv4) or /64 (IPv6) that failed a login. */
struct pace {
	unsigned char	 used;
	unsigned char	 fam;		/* AF_INET, AF_INET6, 0 unknown */
	unsigned char	 key[8];	/* the IPv4 address, or the /64 */
	unsigned	 waiting;	/* its logins in S_AUTH_WAIT */
	unsigned long	 gate;		/* no answer before this */
};

/* ------------------------------------------------------------------ */
/* The server: its state in one struct, srv; signals and the scratch  */
/* buffer beside it.                                                   */

/*
 * UDP buffers hold a reassembled datagram, or one that waits for a
 * lookup: its header (ATYP DST.ADDR DST.PORT, at most 259 bytes) at
 * UB_HDR, and up to 65535 bytes of DATA at UB_DATA.
 */
#define UDP_DATA_MAX	65535
#define UB_HDR		0
#define UB_DATA		264
#define UB_SIZE		(UB_DATA + UDP_DATA_MAX)

/* A worker process (-w), as its supervisor sees it. */
struct worker {
	pid_t		 pid;		/* -1: not running */
	unsigned long	 started;	/* when it was forked */
	unsigned long	 restart;	/* died young: fork it again then */
};

/*
 * A listening socket: opened from -l, or handed over by the launcher.
 * With workers that get one each (SO_SPREAD), worker k's is copy[k]
 * (copy[0] is fd); ncopies 0: the workers share fd.
 */
struct listener {
	int		 fd;
	int		 pi;		/* its pollfd index this pass, or -1 */
	int		 inherited;	/* not opened by us */
	union sockaddr_any sa;		/* its address */
	int		 copy[SOCKS5_MAXWORKERS];
	int		 ncopies;
	int		 shared;	/* in a worker: with the others */
};

/*
 * The server: its configuration, tables and pools (allocated once at
 * startup), listeners, resolver helpers and timers. One per process.
 */
struct server {
	/* Configuration, checked and parsed at startup. */
	struct socks5_config conf;
	int		 handshake_ms;	/* greeting .. reply, and connect */
	int		 bind_ms;	/* BIND's wait for its peer */
	union sockaddr_any bind_sa;	/* -b, parsed once */
	int		 have_bind;
	union sockaddr_any ext_sa;	/* -e, parsed once */
	int		 have_ext;
	struct rule	 rules[SOCKS5_MAXRULES];
	int		 nrules;
	int		 rules_invalid;	/* startup failed on an -a rule */
	struct user	*users[2];	/* current and reload tables (-u) */
	int		 nusers[2];
	int		 ucur;
	int		 users_unreadable; /* startup failed on the -u file */

	/* The clock, read once a pass. */
	unsigned long	 now;		/* ms, wraps */
	unsigned long	 now_s;		/* whole seconds of the same clock */

	/* Sessions: the table, free slots (a stack), slots in use. */
	struct session	*sess;
	int		 nsess;
	int		*freelist;
	int		 nfree;
	int		*active;	/* in no order */
	int		 nactive;

	/* The poll set, rebuilt each pass, and where things are in it. */
	struct pollfd	*pfd;
	int		 npfd;
	int		*polled;	/* sessions in this pass's set */
	int		 npolled;
	int		 pi_sig;	/* the signal pipe's, or -1 */
	int		 pi_life;	/* the lifeline's, or -1 */

	/* Spill buffers (SOCKS5_BUFSIZE each) and UDP buffers (UB_SIZE). */
	unsigned char	*tables;	/* the one block all of these are in */
	unsigned char	*pool;
	int		*poolfree;
	int		 npoolfree;
	int		 npool;
	unsigned char	*udpbufs;
	int		*udpfree;
	int		 nudpfree;
	int		 nudp;
	int		 udp_full_logged; /* "no buffer" said for this burst */

	/* The listeners, and refusing clients when full. */
	struct listener	 ls[SOCKS5_LISTENERS];
	int		 nls;
	int		 spread;	/* workers to come: open for SO_SPREAD */
	int		 listen_paused;
	unsigned long	 listen_resume;	/* paused until then */
	int		 spare_fd;	/* kept to refuse clients at EMFILE */
	int		 full_logged;	/* "table full" said for this burst */

	/* The descriptor budget. */
	long		 fd_limit;	/* RLIMIT_NOFILE; 0: no budget */
	long		 fd_fixed;	/* open when the loop started */
	long		 fd_reserved;	/* reserved by sessions */

	/* Login pacing, by address. */
	unsigned long	 pace_ms;	/* the delay: SOCKS5_AUTH_DELAY_MS for
					   each worker */
	struct pace	 authpace[SOCKS5_AUTH_TRACK];
	int		 authpace_used;
	unsigned long	 authpace_seq;	/* arrival order of waiting logins */

	/* Resolver helpers, each on a socket pair of its own. */
	struct helper	 helpers[SOCKS5_RESOLVERS];
	int		 nresolvers;	/* helpers at most; 0: single-session
					   mode, no helpers */
	unsigned long	 spawn_retry;	/* a fork failed: not before then */
	int		 spawn_failed;
	pid_t		 killed[SOCKS5_RESOLVERS * 2]; /* helpers replaced, */
	int		 nkilled;	/* ... to be reaped */
	int		 nqueued;	/* lookups waiting for a helper */
	unsigned long	 queue_seq;	/* their order */
	unsigned	 lookup_ids;	/* the last lookup id handed out */
	struct lookup_ans inline_ans;	/* single-session mode: an answer */
	int		 inline_ready;	/* ... for the loop's next pass */
	unsigned long	 last_reap;	/* helpers checked then */

	/* Workers (-w): in the supervisor, the workers; in each, its number. */
	struct worker	 workers[SOCKS5_MAXWORKERS];
	int		 nworkers;	/* 1: no supervisor, no workers */
	int		 worker;	/* 1..nworkers in a worker, else 0 */
	int		 lifeline[2];	/* the supervisor holds [1]; a worker
					   reads EOF on [0] when it is gone */

#if WITH_GSSAPI
	/* GSS-API: in the server, its sessions' processes (each forked
	   for one); single in a process that serves one client. */
	struct gss_conf	 gss;
	pid_t		 gss_pid[SOCKS5_GSS_SESSIONS];
	unsigned char	 gss_fam[SOCKS5_GSS_SESSIONS];	/* whose, as */
	unsigned char	 gss_key[SOCKS5_GSS_SESSIONS][8]; /* peer_key() */
	int		 ngss;
	int		 gss_full_logged;
	int		 single;
#endif

	/* Running as a daemon, with a pid file. */
	int		 ready_fd;	/* -d: tells the parent we are up */
	int		 pid_fd;	/* -P: the pid file */

	/* Open in this process, or inherited from the parent of a fork. */
	int		 open;
	pid_t		 owner;		/* the process that opened it */
};

static struct server	 srv;

/* The poll set's entries besides the sessions': signals, lifeline,
   listeners, helpers. */
#define PFD_OWN		(2 + SOCKS5_LISTENERS + SOCKS5_RESOLVERS)

#define UDPBUF(i)	(srv.udpbufs + (size_t)(i) * UB_SIZE)

/* Big enough for a TCP read and for a UDP datagram with a header. */
#define SCRATCH_UDP	(WITH_UDP ? UB_DATA + UDP_DATA_MAX + 1 : 0)
#define SCRATCH_SIZE	(SOCKS5_BUFSIZE > SCRATCH_UDP ? SOCKS5_BUFSIZE : \
			    SCRATCH_UDP)
static unsigned char	 scratch[SCRATCH_SIZE];	/* every read goes here */

/* Signals: the handler only sets a flag and pokes the self-pipe. */
static int		 sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_term, got_hup, got_chld, got_status;

/* ------------------------------------------------------------------ */
/* Logging: one line each, "socks5: " first, to stderr or syslog.      */

/*
 * The result of a call whose failure changes nothing here (a log line
 * to a closed stderr, a wakeup byte for a pipe already full): used, so
 * that hardened builds (warn_unused_result) see it taken.
 */
static void
unchecked(long result)
{
	(void)result;
}

static void
logmsg(int prio, const char *fmt, ...)
{
	char	 line[1200];
	va_list	 ap;
	int	 n;

	if (prio == LOG_DEBUG && srv.conf.verbose < 2)
		return;
	memcpy(line, "socks5: ", 8);
	va_start(ap, fmt);
	n = vsnprintf(line + 8, sizeof(line) - 9, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 10)
		n = (int)sizeof(line) - 10;
	if (srv.conf.log == SOCKS5_LOG_SYSLOG) {
		line[8 + n] = '\0';
		syslog(prio, "%s", line + 8);
	} else {
		line[8 + n] = '\n';
		unchecked((long)write(2, line, (size_t)n + 9));
	}
}

/* Bytes that stand for themselves in a log field. */
static int
log_plain(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' && strchr("-._~+@,/", c));
}

/*
 * Copy untrusted bytes for a log field: every byte but letters, digits
 * and -._~+@,/ becomes \xHH, so no name can fake a space, an "=", a
 * bracket or a colon, and every field reads back unambiguously.
 */
static char *
escape(char *dst, size_t size, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t	 i, o;
	int	 c;

	for (i = o = 0; i < n && o + 5 < size; i++) {
		c = (unsigned char)src[i];
		if (log_plain(c)) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
	return dst;
}

/* The user for a log line: the name escaped, or - when it is empty. */
static char *
user_field(char *dst, size_t size, const struct session *s)
{
	if (s->ulen == 0)
		return strcpy(dst, "-");
	return escape(dst, size, s->user, s->ulen);
}

/* The destination for a log line: 1.2.3.4:80, [::1]:80 or name:80. */
static char *
dest_str(const struct session *s)
{
	static char	 buf[1100];

	if (s->datyp == SOCKS5_ATYP_DOMAIN)
		(void)escape(buf, sizeof(buf) - 8, s->dname, s->dnamelen);
	else if (s->datyp == SOCKS5_ATYP_IPV6)
		(void)sprintf(buf, "[%s]", s->dname);
	else
		(void)strcpy(buf, s->datyp != 0 ? s->dname : "-");
	if (s->datyp != 0)
		(void)sprintf(buf + strlen(buf), ":%u", (unsigned)s->dport);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Small helpers: the clock, descriptors, addresses.                   */

/*
 * Time is a millisecond count in an unsigned long: it wraps every 49.7
 * days where that is 32 bits, and times are only ever compared by their
 * difference, which a signed long tells apart for 24.8 days either way.
 * No deadline is ever set further ahead than LONGEST_WAIT_S (-t's
 * largest value, 11.6 days), and the loop wakes for the earliest one, at
 * least once a day. Should the loop not have run for LONGEST_WAIT_S (a
 * stopped process, a suspended machine), the whole seconds of the same
 * clock, which do not wrap, say so, and every stored time is taken as
 * due at once (deadlines_passed): a comparison is right for any age.
 */
#define LONGEST_WAIT_S	1000000UL

#ifdef SOCKS5_TEST_CLOCK
/*
 * Test builds only: the clock starts SOCKS5_TEST_CLOCK ms (or the
 * environment's SOCKS5_CLOCK_LEAD_MS) before it wraps, and each SIGUSR2
 * moves it 25 days on, as if the loop had not run for that long.
 */
static volatile sig_atomic_t clock_jumps;
static unsigned long	 clock_lead = SOCKS5_TEST_CLOCK;
#endif

static void	deadlines_passed(void);

/* The monotonic clock: whole seconds, and milliseconds that wrap. */
static void
clock_read(unsigned long *sec, unsigned long *ms)
{
	unsigned long	 frac;
#if defined(CLOCK_MONOTONIC)
	struct timespec	 ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
		*sec = (unsigned long)ts.tv_sec;
		frac = (unsigned long)(ts.tv_nsec / 1000000L);
	} else
#endif
	{
		struct timeval	 tv;

		gettimeofday(&tv, NULL);
		*sec = (unsigned long)tv.tv_sec;
		frac = (unsigned long)(tv.tv_usec / 1000L);
	}
#ifdef SOCKS5_TEST_CLOCK
	{
		static unsigned long	 origin;
		static int		 have;

		if (!have) {
			origin = *sec;
			have = 1;
			if (getenv("SOCKS5_CLOCK_LEAD_MS") != NULL)
				clock_lead = strtoul(
				    getenv("SOCKS5_CLOCK_LEAD_MS"), NULL, 10);
		}
		*sec = *sec - origin + (unsigned long)clock_jumps * 2160000UL;
		*ms = *sec * 1000UL + frac - clock_lead;
		return;
	}
#endif
	*ms = *sec * 1000UL + frac;
}

/* Read the clock into now and now_s; see if the loop slept too long. */
static void
clock_update(void)
{
	static int	 started;
	unsigned long	 before = srv.now_s;

	clock_read(&srv.now_s, &srv.now);
	if (started && srv.now_s - before >= LONGEST_WAIT_S)
		deadlines_passed();
	started = 1;
}

/* Is deadline a at or before time b, on a clock that wraps? */
#define DUE(a, b)	((long)((a) - (b)) <= 0)

/* Add n (at most a few MiB) to a byte count. */
static void
count_add(struct count *c, unsigned long n)
{
	unsigned long	 carry;

	c->lo += n;
	if (c->lo < n)			/* wrapped: a 32-bit unsigned long */
		c->hi++;
	carry = c->lo >> 16 >> 16;	/* past 32 bits: a wider one */
	c->hi += carry;
	c->lo -= carry << 16 << 16;
}

/* The count in decimal, into buf (room for 21 bytes). */
static char *
count_str(char *buf, const struct count *c)
{
	unsigned long	 d[4], r;
	char		 rev[24];
	int		 i, n = 0, more;

	d[0] = (c->hi >> 16) & 0xffffUL;	/* 16-bit digits, high first */
	d[1] = c->hi & 0xffffUL;
	d[2] = (c->lo >> 16) & 0xffffUL;
	d[3] = c->lo & 0xffffUL;
	do {				/* divide by 10, keep the remainder */
		r = 0;
		more = 0;
		for (i = 0; i < 4; i++) {
			r = r << 16 | d[i];
			d[i] = r / 10;
			r %= 10;
			more |= d[i] != 0;
		}
		rev[n++] = (char)('0' + r);
	} while (more);
	for (i = 0; i < n; i++)
		buf[i] = rev[n - 1 - i];
	buf[n] = '\0';
	return buf;
}

static int
set_nonblock(int fd)
{
	int	 fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* For a socket we made: it has no other status flags to keep. */
static int
set_nonblock_new(int fd)
{
	return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* FD_CLOEXEC is the only descriptor flag. */
static void
set_cloexec(int fd)
{
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/*
 * Linux makes a socket non-blocking and close-on-exec as it is created
 * or accepted (SOCK_NONBLOCK and SOCK_CLOEXEC: 2.6.27; accept4(): 2.6.28):
 * two fcntl() calls fewer for each. _XOPEN_SOURCE hides accept4(); its
 * prototype here is the kernel's ABI. An older kernel refuses the flags
 * (EINVAL, ENOSYS): then the socket is made the portable way.
 */
#if defined(__linux__) && defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define SOCK_NEW	(SOCK_NONBLOCK | SOCK_CLOEXEC)
extern int accept4(int, struct sockaddr *, socklen_t *, int);
#endif

/* A socket set up the portable way; closed, and -1, if that fails. */
static int
sock_flags_set(int fd)
{
	if (fd < 0)
		return -1;
	set_cloexec(fd);
	if (set_nonblock_new(fd) == -1) {
		(void)close(fd);
		return -1;
	}
	return fd;
}

/* A new socket, non-blocking and close-on-exec; -1 with errno. */
static int
socket_new(int fam, int type)
{
#ifdef SOCK_NEW
	int	 fd;

	if ((fd = socket(fam, type | SOCK_NEW, 0)) >= 0 || errno != EINVAL)
		return fd;
#endif
	return sock_flags_set(socket(fam, type, 0));
}

/* A connection from listener lfd, non-blocking and close-on-exec. */
static int
accept_new(int lfd, struct sockaddr *sa, socklen_t *len)
{
#ifdef SOCK_NEW
	int	 fd;

	if ((fd = accept4(lfd, sa, len, SOCK_NEW)) >= 0 ||
	    (errno != ENOSYS && errno != EINVAL))
		return fd;
#endif
	return sock_flags_set(accept(lfd, sa, len));
}

static void
set_nodelay(int fd)
{
	int	 one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
	*fd = -1;
}

/* Parse an IPv4 or IPv6 literal with a port into a socket address. */
static int
addr_parse(union sockaddr_any *a, socklen_t *len, const char *s, int port)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, &a->sin.sin_addr) == 1) {
		a->sin.sin_family = AF_INET;
		a->sin.sin_port = htons((unsigned short)port);
		*len = sizeof(a->sin);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a->sin6.sin6_addr) == 1) {
		a->sin6.sin6_family = AF_INET6;
		a->sin6.sin6_port = htons((unsigned short)port);
		*len = sizeof(a->sin6);
		return 0;
	}
	return -1;
}

/* Build a socket address from family, raw address bytes and port. */
static socklen_t
addr_make(union sockaddr_any *a, int fam, const unsigned char *raw,
    unsigned port)
{
	memset(a, 0, sizeof(*a));
	if (fam == AF_INET) {
		a->sin.sin_family = AF_INET;
		memcpy(&a->sin.sin_addr, raw, 4);
		a->sin.sin_port = htons((unsigned short)port);
		return sizeof(a->sin);
	}
	a->sin6.sin6_family = AF_INET6;
	memcpy(&a->sin6.sin6_addr, raw, 16);
	a->sin6.sin6_port = htons((unsigned short)port);
	return sizeof(a->sin6);
}

/* Bytes in a raw address of family fam. */
#define ADDR_LEN(fam)	((fam) == AF_INET ? 4 : 16)

/* The prefix of an IPv4-mapped IPv6 address, ::ffff:a.b.c.d. */
static const unsigned char v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

#if WITH_RULES || WITH_BIND || WITH_UDP
/* The raw address bytes of a socket address (IPv4 or IPv6). */
static const unsigned char *
sa_ip(const union sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET ?
	    (const unsigned char *)&a->sin.sin_addr :
	    (const unsigned char *)&a->sin6.sin6_addr;
}
#endif

/* Its port, in host order. */
static unsigned
sa_port(const union sockaddr_any *a)
{
	return ntohs(a->sa.sa_family == AF_INET ? a->sin.sin_port :
	    a->sin6.sin6_port);
}

#if WITH_BIND || WITH_UDP
static void
sa_set_port(union sockaddr_any *a, unsigned port)
{
	if (a->sa.sa_family == AF_INET)
		a->sin.sin_port = htons((unsigned short)port);
	else
		a->sin6.sin6_port = htons((unsigned short)port);
}
#endif

/* Its length, for bind(), connect() and sendto(). */
static socklen_t
sa_len(const union sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET ? sizeof(a->sin) : sizeof(a->sin6);
}

/*
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address:
 * rewrite fam/raw in place, so that -4, -6 and the rules see the family
 * the traffic really uses. Returns the family.
 */
static int
addr_unmap(unsigned char *fam, unsigned char *raw)
{
	if (*fam == AF_INET6 && memcmp(raw, v4mapped, 12) == 0) {
		memmove(raw, raw + 12, 4);
		memset(raw + 4, 0, 12);
		*fam = AF_INET;
	}
	return *fam;
}

#if WITH_BIND
/* 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104? */
static int
addr_is_loopback(const union sockaddr_any *a)
{
	static const unsigned char v6lo[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
	};
	const unsigned char *ip;

	if (a->sa.sa_family == AF_INET) {
		ip = (const unsigned char *)&a->sin.sin_addr;
		return ip[0] == 127;
	}
	if (a->sa.sa_family != AF_INET6)
		return 0;
	ip = a->sin6.sin6_addr.s6_addr;
	return memcmp(ip, v6lo, 16) == 0 ||
	    (memcmp(ip, v4mapped, 12) == 0 && ip[12] == 127);
}
#endif

/* "1.2.3.4:80" or "[::1]:80"; "-" for anything else. */
static char *
addr_str(char *buf, size_t size, const union sockaddr_any *a)
{
	char	 host[INET6_ADDRSTRLEN];

	if (a->sa.sa_family == AF_INET &&
	    inet_ntop(AF_INET, &a->sin.sin_addr, host, sizeof(host)))
		(void)sprintf(buf, "%s:%u", host, sa_port(a));
	else if (a->sa.sa_family == AF_INET6 && size >= 56 &&
	    inet_ntop(AF_INET6, &a->sin6.sin6_addr, host, sizeof(host)))
		(void)sprintf(buf, "[%s]:%u", host, sa_port(a));
	else
		(void)strcpy(buf, "-");
	return buf;
}

#if WITH_AUTH || WITH_GSSAPI
/*
 * A client's address as login pacing and the GSS-API sessions count
 * it: the IPv4 address (an IPv4-mapped one too), or the /64 of an
 * IPv6 one, in key; returns the family, 0 when it is unknown.
 */
static unsigned char
peer_key(const union sockaddr_any *peer, unsigned char *key)
{
	unsigned char	 raw[16], fam;

	memset(raw, 0, sizeof(raw));
	memset(key, 0, 8);
	fam = (unsigned char)peer->sa.sa_family;
	if (fam == AF_INET)
		memcpy(raw, &peer->sin.sin_addr, 4);
	else if (fam == AF_INET6)
		memcpy(raw, &peer->sin6.sin6_addr, 16);
	else
		fam = 0;
	(void)addr_unmap(&fam, raw);
	memcpy(key, raw, fam == AF_INET ? 4 : 8);
	return fam;
}
#endif

/* ------------------------------------------------------------------ */
/* Users: the -u file, read into fixed storage at startup and on HUP.  */

#if WITH_AUTH

/* Parse one "user:password" line into u; -1 when it is malformed. */
static int
user_parse(struct user *u, const char *line, size_t n)
{
	const char	*colon;
	size_t		 ulen, plen;

	colon = (const char *)memchr(line, ':', n);
	if (colon == NULL)
		return -1;
	ulen = (size_t)(colon - line);
	plen = n - ulen - 1;
	if (ulen < 1 || ulen > 255 || plen < 1 || plen > 255)
		return -1;
	memset(u, 0, sizeof(*u));
	u->ulen = (unsigned char)ulen;
	u->plen = (unsigned char)plen;
	memcpy(u->name, line, ulen);
	memcpy(u->pass, colon + 1, plen);
	return 0;
}

/*
 * Read the user file into table t with read(2) and a fixed line buffer:
 * no stdio, no allocation. Returns the number of users, or -1 with a
 * reason in why.
 */
static int
users_read(const char *path, struct user *t, const char **why, int *lineno)
{
	char		 chunk[4096], line[520];
	struct stat	 st;
	size_t		 len = 0;
	ssize_t		 n, i;
	int		 fd, count = 0, toolong = 0;

	*lineno = 0;
	/* O_NONBLOCK: a FIFO must not hold up the loop (nor startup). */
	if ((fd = open(path, O_RDONLY | O_NONBLOCK)) == -1) {
		*why = strerror(errno);
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		(void)close(fd);
		return -1;
	}
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*why = strerror(errno);
			(void)close(fd);
			return -1;
		}
		for (i = 0; i < n || (n == 0 && (len > 0 || toolong)); i++) {
			if (n > 0 && chunk[i] != '\n') {
				if (len < sizeof(line))
					line[len++] = chunk[i];
				else if (line[0] != '#')
					toolong = 1;	/* a comment may run on */
				continue;
			}
			++*lineno;
			if (len > 0 && line[len - 1] == '\r')
				len--;
			if (toolong) {
				*why = "line too long";
				goto bad;
			}
			if (len > 0 && line[0] != '#') {
				if (count == SOCKS5_MAXUSERS) {
					*why = "too many users";
					goto bad;
				}
				if (user_parse(&t[count], line, len) == -1) {
					*why = "not user:password (1..255 bytes each)";
					goto bad;
				}
				count++;
			}
			len = 0;
			if (n == 0)
				break;
		}
		if (n == 0)
			break;
	}
	(void)close(fd);
	memset(line, 0, sizeof(line));
	memset(chunk, 0, sizeof(chunk));
	return count;
bad:
	(void)close(fd);
	memset(line, 0, sizeof(line));
	memset(chunk, 0, sizeof(chunk));
	return -1;
}

/*
 * Load the file into the spare table and make it current; on an error
 * the current table stays, and the spare one is wiped.
 */
static int
users_load(int startup)
{
	const char	*why = NULL;
	char		 where[32];
	int		 spare = !srv.ucur, n, lineno;

	n = users_read(srv.conf.user_file, srv.users[spare], &why, &lineno);
	if (n < 0) {
		memset(srv.users[spare], 0, sizeof(struct user) * SOCKS5_MAXUSERS);
		where[0] = '\0';
		if (lineno > 0)
			(void)sprintf(where, "line %d: ", lineno);
		if (startup)
			logmsg(LOG_ERR, "fatal: %s: %s%s", srv.conf.user_file,
			    where, why);
		else
			logmsg(LOG_ERR, "reload of %s failed: %s%s; keeping %d "
			    "users", srv.conf.user_file, where, why, srv.nusers[srv.ucur]);
		return -1;
	}
	memset(srv.users[srv.ucur], 0, sizeof(struct user) * SOCKS5_MAXUSERS);
	srv.ucur = spare;
	srv.nusers[srv.ucur] = n;
	if (!startup)
		logmsg(LOG_NOTICE, "reloaded %d users from %s", n,
		    srv.conf.user_file);
	return 0;
}

/* Compare in time that depends only on the table size, not the data. */
static int
users_check(const unsigned char *name, unsigned ulen,
    const unsigned char *pass, unsigned plen)
{
	unsigned char	 n[255], p[255];
	const struct user *u;
	unsigned	 diff, i;
	int		 k, ok = 0;

	memset(n, 0, sizeof(n));
	memset(p, 0, sizeof(p));
	memcpy(n, name, ulen);
	memcpy(p, pass, plen);
	for (k = 0; k < srv.nusers[srv.ucur]; k++) {
		u = &srv.users[srv.ucur][k];
		diff = (u->ulen ^ ulen) | (u->plen ^ plen);
		for (i = 0; i < 255; i++)
			diff |= (unsigned)(u->name[i] ^ n[i]) |
			    (unsigned)(u->pass[i] ^ p[i]);
		ok |= (diff == 0);
	}
	memset(p, 0, sizeof(p));
	return ok;
}

#endif /* WITH_AUTH */

/* ------------------------------------------------------------------ */
/* Access rules (-a): "allow|deny [from CIDR] [to CIDR] [port P[-Q]]   */
/* [cmd connect,bind,udp] [user NAME]", first match wins; with rules,  */
/* what no rule matches is denied.                                     */

#if WITH_RULES

static const unsigned char *rule_addr(int *, const unsigned char *, int);

/* "10.0.0.0/8", "::1", "fe80::/10" into c; -1 if it is none of those. */
static int
cidr_parse(struct cidr *c, const char *w, size_t n)
{
	char	 buf[64], *slash, *end;
	long	 bits;

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, w, n);
	buf[n] = '\0';
	memset(c, 0, sizeof(*c));
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1)
		c->fam = AF_INET;
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
		c->fam = AF_INET6;
	else
		return -1;
	bits = c->fam == AF_INET ? 32 : 128;
	if (slash != NULL) {
		errno = 0;
		bits = strtol(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || bits < 0 ||
		    bits > (c->fam == AF_INET ? 32 : 128))
			return -1;
	}
	if (c->fam == AF_INET6 && bits >= 96 &&
	    memcmp(c->addr, v4mapped, 12) == 0) {
		/* ::ffff:a.b.c.d/96+ names IPv4 addresses: judged as such */
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->fam = AF_INET;
		bits -= 96;
	}
	c->bits = (unsigned char)bits;
	return 0;
}

/* Does the raw address ip of family fam fall in c? */
static int
cidr_match(const struct cidr *c, int fam, const unsigned char *ip)
{
	unsigned	 i, full, rest;

	if (c->fam == 0)
		return 1;
	if (c->fam != fam)
		return 0;
	full = c->bits / 8;
	rest = c->bits % 8;
	for (i = 0; i < full; i++)
		if (ip[i] != c->addr[i])
			return 0;
	return rest == 0 ||
	    ((ip[full] ^ c->addr[full]) & (0xff00u >> rest) & 0xff) == 0;
}

/* The next word of a rule: skip blanks, return its length. */
static size_t
rule_word(const char **p)
{
	size_t	 n = 0;

	while (**p == ' ' || **p == '\t')
		(*p)++;
	while ((*p)[n] != '\0' && (*p)[n] != ' ' && (*p)[n] != '\t')
		n++;
	return n;
}

#define WORD_IS(w, n, lit)	((n) == sizeof(lit) - 1 && \
				    memcmp((w), (lit), (n)) == 0)

/* "connect,bind,udp" into a mask; 0 if anything else is in the list. */
static unsigned
rule_cmds(const char *w, size_t n)
{
	unsigned	 mask = 0;
	size_t		 k;

	while (n > 0) {
		for (k = 0; k < n && w[k] != ','; k++)
			;
		if (k + 1 == n)		/* a trailing comma */
			return 0;
		if (WORD_IS(w, k, "connect"))
			mask |= 1u << SOCKS5_CMD_CONNECT;
		else if (WORD_IS(w, k, "bind"))
			mask |= 1u << SOCKS5_CMD_BIND;
		else if (WORD_IS(w, k, "udp"))
			mask |= 1u << SOCKS5_CMD_UDP;
		else
			return 0;
		w += k;
		n -= k;
		if (n > 0) {
			w++;
			n--;
		}
	}
	return mask;
}

/* "80" or "1-1023" into lo/hi; -1 when malformed. */
static int
rule_ports(const char *w, size_t n, unsigned *lo, unsigned *hi)
{
	unsigned long	 v[2] = { 0, 0 };
	size_t		 i;
	int		 k = 0, digits = 0;

	for (i = 0; i < n; i++) {
		if (w[i] == '-' && k == 0 && digits > 0) {
			k = 1;
			digits = 0;
		} else if (w[i] >= '0' && w[i] <= '9' && digits < 5) {
			v[k] = v[k] * 10 + (unsigned long)(w[i] - '0');
			digits++;
		} else {
			return -1;
		}
	}
	if (digits == 0)
		return -1;
	if (k == 0)
		v[1] = v[0];
	if (v[0] > 65535 || v[1] > 65535 || v[0] > v[1])
		return -1;
	*lo = (unsigned)v[0];
	*hi = (unsigned)v[1];
	return 0;
}

/* Parse one -a rule into r; -1 if it is bad. */
static int
rule_parse(struct rule *r, const char *text)
{
	const char	*p = text, *key, *val;
	size_t		 kn, vn;

	memset(r, 0, sizeof(*r));
	r->text = text;
	r->phi = 65535;
	kn = rule_word(&p);
	if (WORD_IS(p, kn, "allow"))
		r->allow = 1;
	else if (!WORD_IS(p, kn, "deny"))
		goto bad;
	p += kn;
	while ((kn = rule_word(&p)) > 0) {
		key = p;
		p += kn;
		vn = rule_word(&p);
		val = p;
		p += vn;
		if (vn == 0)
			goto bad;
		if (WORD_IS(key, kn, "from")) {
			if (cidr_parse(&r->from, val, vn) == -1)
				goto bad;
		} else if (WORD_IS(key, kn, "to")) {
			if (cidr_parse(&r->to, val, vn) == -1)
				goto bad;
		} else if (WORD_IS(key, kn, "port")) {
			if (rule_ports(val, vn, &r->plo, &r->phi) == -1)
				goto bad;
		} else if (WORD_IS(key, kn, "cmd")) {
			if ((r->cmds = (unsigned char)rule_cmds(val, vn)) == 0)
				goto bad;
		} else if (WORD_IS(key, kn, "user") && vn <= 255) {
			r->user = val;
			r->ulen = vn;
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	return -1;
}

/* Add a rule to the table; -1 if it is bad or one too many. */
static int
rule_add(const char *text)
{
	if (srv.nrules == SOCKS5_MAXRULES ||
	    rule_parse(&srv.rules[srv.nrules], text) == -1)
		return -1;
	srv.nrules++;
	return 0;
}

/* rules_eval's answer when a rule needs a client address nobody knows. */
#define RULE_NO_CLIENT	(srv.nrules + 1)

/*
 * First match wins. What is not known yet (at accept: the user, the
 * command and the destination; at UDP ASSOCIATE: the destination) is
 * passed as 0/NULL: a deny rule that needs it is passed over, an allow
 * rule that needs it lets the client go on to the check that knows.
 * The client's address is never learnt later: where it is unknown (a
 * pipe on fd 0 in inetd mode), the first rule that names "from" denies.
 * Returns -1 when allowed, else the denying rule's index (nrules when
 * no rule matched: the implicit deny at the end; RULE_NO_CLIENT).
 */
static int
rules_eval(const union sockaddr_any *peer, const char *user, int cmd,
    int fam, const unsigned char *ip, unsigned port)
{
	const struct rule	*r;
	const unsigned char	*cip;
	int			 i, unknown, pfam = peer->sa.sa_family;

	if (srv.nrules == 0)
		return -1;
	cip = rule_addr(&pfam, sa_ip(peer), 0);
	for (i = 0; i < srv.nrules; i++) {
		r = &srv.rules[i];
		unknown = 0;
		if (r->from.fam != 0 && pfam != AF_INET && pfam != AF_INET6)
			return RULE_NO_CLIENT;
		if (!cidr_match(&r->from, pfam, cip))
			continue;
		if (r->cmds != 0 && cmd == 0)
			unknown = 1;
		else if (r->cmds != 0 && !(r->cmds & (1u << cmd)))
			continue;
		if (r->user != NULL && user == NULL)
			unknown = 1;
		else if (r->user != NULL && (strlen(user) != r->ulen ||
		    memcmp(user, r->user, r->ulen) != 0))
			continue;
		if ((r->to.fam != 0 || r->plo != 0 || r->phi != 65535) &&
		    fam == 0)
			unknown = 1;
		else if (fam != 0 && (!cidr_match(&r->to, fam, ip) ||
		    port < r->plo || port > r->phi))
			continue;
		if (!unknown)
			return r->allow ? -1 : i;
		if (r->allow)
			return -1;
	}
	return srv.nrules;
}

/* Log what rule i denied: a client, a request, a peer or a datagram. */
static void
rule_log(int prio, const union sockaddr_any *peer, const char *user,
    size_t ulen, const char *what, const union sockaddr_any *dst, int i)
{
	char	 p[64], d[64], u[1100], why[32];

	(void)escape(u, sizeof(u), ulen > 0 ? user : "-", ulen > 0 ? ulen : 1);
	if (i >= 0 && i < srv.nrules)
		(void)sprintf(why, "rule %d", i + 1);
	else
		(void)strcpy(why, "default");
	logmsg(prio, "denied %s client=%s user=%s dst=%s by %s: %s", what,
	    addr_str(p, sizeof(p), peer), u, dst ? addr_str(d, sizeof(d), dst) :
	    "-", why, i >= 0 && i < srv.nrules ? srv.rules[i].text :
	    i == RULE_NO_CLIENT ? "client address unknown" :
	    "no rule matched");
}

/*
 * The address a rule should judge: an IPv4-mapped IPv6 address is the
 * IPv4 address, and where the all-zero address reaches this host (as a
 * destination for CONNECT or UDP) it is judged as loopback.
 */
static const unsigned char *
rule_addr(int *fam, const unsigned char *ip, int zero_is_local)
{
	static const unsigned char zero[16] = { 0 };
	static const unsigned char lo4[4] = { 127, 0, 0, 1 };
	static const unsigned char lo6[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
	};

	if (*fam == AF_INET6 && memcmp(ip, v4mapped, 12) == 0) {
		*fam = AF_INET;
		ip += 12;
	}
	if (zero_is_local && *fam == AF_INET && memcmp(ip, zero, 4) == 0)
		return lo4;
	if (zero_is_local && *fam == AF_INET6 && memcmp(ip, zero, 16) == 0)
		return lo6;
	return ip;
}

/* Rules for a session's request to (fam, ip, port); logs a denial. */
static int
rules_request(const struct session *s, int cmd, int fam,
    const unsigned char *ip, unsigned port, const char *what, int prio)
{
	union sockaddr_any	 d;
	int			 i, rfam = fam;
	const unsigned char	*rip = ip;

	if (fam != 0)
		rip = rule_addr(&rfam, ip, cmd != SOCKS5_CMD_BIND);
	/* A name with a NUL in it is no name a rule can give. */
	if ((i = rules_eval(&s->peer, strlen(s->user) == s->ulen ? s->user :
	    "", cmd, rfam, rip, port)) < 0)
		return 0;
	if (fam != 0)
		(void)addr_make(&d, fam, ip, port);
	rule_log(prio, &s->peer, s->user, s->ulen, what, fam != 0 ? &d : NULL,
	    i);
	return -1;
}

/*
 * Do the rules turn this client away before it says anything? An
 * address of len 0, or of another family, is an unknown one.
 */
static int
client_denied(const struct sockaddr *sa, socklen_t len)
{
	union sockaddr_any	 peer;
	int			 i;

	if (srv.nrules == 0)
		return 0;
	memset(&peer, 0, sizeof(peer));
	if (len > 0 && len <= (socklen_t)sizeof(peer) &&
	    (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		memcpy(&peer, sa, (size_t)len);	/* else: unknown */
	if ((i = rules_eval(&peer, NULL, 0, 0, NULL, 0)) < 0)
		return 0;
	rule_log(LOG_NOTICE, &peer, NULL, 0, "client", NULL, i);
	return 1;
}

#else /* no rules: every request is allowed, every client served */
#define rules_request(s, cmd, fam, ip, port, what, prio) \
	((void)(s), (void)(fam), (void)(ip), (void)(port), 0)
#define client_denied(sa, len)	((void)(sa), (void)(len), 0)
#endif /* WITH_RULES */

/* ------------------------------------------------------------------ */
/* Spill buffer pool: lent while a sink is backed up.                  */

#define BUF(i)	(srv.pool + (size_t)(i) * SOCKS5_BUFSIZE)

static int
buf_get(void)
{
	return srv.npoolfree > 0 ? srv.poolfree[--srv.npoolfree] : -1;
}

/* Give back f's spill buffer, if it has one; f holds nothing after. */
static void
buf_put(struct flow *f)
{
	if (f->buf >= 0)
		srv.poolfree[srv.npoolfree++] = f->buf;
	f->buf = -1;
	f->data = NULL;
	f->off = f->len = 0;
}

/* ------------------------------------------------------------------ */
/* Descriptor budget: a session is admitted only with the descriptors  */
/* it will need (CONNECT 2, BIND 3, UDP ASSOCIATE 4), reserved as it   */
/* goes, so a request never fails for want of one.                     */

/* Descriptors left for sessions; plenty when there is no budget. */
static long
fd_room(void)
{
	if (srv.fd_limit <= 0)
		return 1L << 30;
	return srv.fd_limit - srv.fd_fixed - SOCKS5_FD_MARGIN - srv.fd_reserved;
}

/* Make s hold a reserve of n descriptors; -1 when there is no room. */
static int
fd_reserve(struct session *s, int n)
{
	if (n > s->fdres && fd_room() < (long)(n - s->fdres))
		return -1;
	srv.fd_reserved += n - s->fdres;
	s->fdres = n;
	return 0;
}

/*
 * Which of the n (at most 256) descriptors from base are open, into
 * isopen[]: one poll() answers for all (a closed one is POLLNVAL), so a
 * high limit costs a few calls, not one per number; fcntl() for each
 * where poll() refuses (n above the descriptor limit).
 */
static void
fds_open(int base, int n, unsigned char *isopen)
{
	struct pollfd	 p[256];
	int		 i;

	for (i = 0; i < n; i++) {
		p[i].fd = base + i;
		p[i].events = 0;
		p[i].revents = 0;
	}
	if (poll(p, (nfds_t)n, 0) >= 0)
		for (i = 0; i < n; i++)
			isopen[i] = !(p[i].revents & POLLNVAL);
	else
		for (i = 0; i < n; i++)
			isopen[i] = fcntl(base + i, F_GETFD) != -1;
}

/* How many descriptors are open below lim (at most the first 65536). */
static long
fd_count(long lim)
{
	unsigned char	 isopen[256];
	long		 n = 0;
	int		 base, i, k;

	if (lim <= 0 || lim > 65536)
		lim = 65536;
	for (base = 0; base < lim; base += k) {
		k = lim - base < 256 ? (int)(lim - base) : 256;
		fds_open(base, k, isopen);
		for (i = 0; i < k; i++)
			n += isopen[i];
	}
	return n;
}

/* The descriptor limit, or 0 when there is none worth counting. */
static long
fd_limit_get(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 ||
	    rl.rlim_cur == RLIM_INF || rl.rlim_cur > (rlim_t)(1L << 30))
		return 0;
	return (long)rl.rlim_cur;
}

/*
 * The loop is about to start: whatever is open now (the listeners,
 * syslog, an embedding program's own) stays open, and the helpers'
 * sockets may be; sessions get the rest, less SOCKS5_FD_MARGIN: one to accept a client only to
 * refuse it, or to read the user file on SIGHUP, one at a time. (BIND's
 * probe socket comes out of its own reserve; the spare descriptor,
 * already open, is the last resort when another program took ours.)
 */
static void
fd_budget_start(void)
{
	long	 room;

	srv.fd_limit = fd_limit_get();
	srv.fd_fixed = srv.fd_limit > 0 ? fd_count(srv.fd_limit) +
	    srv.nresolvers : 0;		/* the helpers' sockets, when forked */
	srv.fd_reserved = 0;
	room = fd_room() / 2;
	if (room < srv.nsess)
		logmsg(LOG_WARNING, "warning: descriptor limit %ld serves "
		    "only %ld of %d sessions (2 descriptors each, BIND 3, "
		    "UDP 4)", srv.fd_limit, room < 0 ? 0L : room, srv.nsess);
}

/* ------------------------------------------------------------------ */
/* Protocol parsers: pure functions over bytes received so far.        */
/* Each returns 0 for "need more", a negative PARSE_ code, or the      */
/* length of the complete message.                                     */

#define PARSE_BADVER	(-1)	/* wrong version: close, no reply */
#define PARSE_BADATYP	(-2)	/* unknown address type: REP 08 */
#define PARSE_BADTYPE	(-3)	/* GSS-API: not the message expected */

/* VER NMETHODS METHODS[NMETHODS] */
static int
greeting_parse(const unsigned char *p, size_t n)
{
	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_VERSION)
		return PARSE_BADVER;
	if (n < 2 || n < 2 + (size_t)p[1])
		return 0;
	return 2 + p[1];
}

/* Pick the method we want from a complete greeting, or 0xff. */
static int
greeting_method(const unsigned char *p, int want)
{
	int	 i;

	for (i = 0; i < p[1]; i++)
		if (p[2 + i] == want)
			return want;
	return SOCKS5_METHOD_REJECT;
}

struct credentials {
	const unsigned char *name;
	unsigned	 ulen;
	const unsigned char *pass;
	unsigned	 plen;
};

/* VER ULEN UNAME[ULEN] PLEN PASSWD[PLEN] */
static int
auth_parse(const unsigned char *p, size_t n, struct credentials *c)
{
	size_t	 ulen, plen;

	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_AUTH_VERSION)
		return PARSE_BADVER;
	if (n < 2)
		return 0;
	ulen = p[1];
	if (n < 3 + ulen)
		return 0;
	plen = p[2 + ulen];
	if (n < 3 + ulen + plen)
		return 0;
	c->name = p + 2;
	c->ulen = (unsigned)ulen;
	c->pass = p + 3 + ulen;
	c->plen = (unsigned)plen;
	return (int)(3 + ulen + plen);
}

/* A parsed request, or a parsed UDP header. */
struct request {
	unsigned char	 cmd;		/* a request's CMD */
	unsigned char	 frag;		/* a UDP header's FRAG */
	unsigned char	 atyp;
	unsigned char	 addr[16];	/* IPv4 or IPv6 */
	unsigned char	 namelen;
	char		 name[256];	/* DOMAINNAME, NUL added */
	unsigned	 port;
};

/* ATYP ADDR PORT, shared by requests and UDP headers. */
static int
socksaddr_parse(const unsigned char *p, size_t n, struct request *r)
{
	size_t	 alen, need;

	if (n < 1)
		return 0;
	switch (p[0]) {
	case SOCKS5_ATYP_IPV4:
		alen = 4;
		break;
	case SOCKS5_ATYP_IPV6:
		alen = 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		if (n < 2)
			return 0;
		alen = 1 + (size_t)p[1];
		break;
	default:
		return PARSE_BADATYP;
	}
	need = 1 + alen + 2;
	if (n < need)
		return 0;
	r->atyp = p[0];
	memset(r->addr, 0, sizeof(r->addr));
	r->namelen = 0;
	r->name[0] = '\0';
	if (p[0] == SOCKS5_ATYP_DOMAIN) {
		r->namelen = p[1];
		memcpy(r->name, p + 2, r->namelen);
		r->name[r->namelen] = '\0';
	} else {
		memcpy(r->addr, p + 1, alen);
	}
	r->port = ((unsigned)p[1 + alen] << 8) | p[2 + alen];
	return (int)need;
}

/* VER CMD RSV ATYP DST.ADDR DST.PORT */
static int
request_parse(const unsigned char *p, size_t n, struct request *r)
{
	int	 len;

	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_VERSION)
		return PARSE_BADVER;
	if (n < 4)
		return 0;
	r->cmd = p[1];
	if ((len = socksaddr_parse(p + 3, n - 3, r)) <= 0)
		return len;
	return 3 + len;
}

#if WITH_UDP
/*
 * RSV RSV FRAG ATYP DST.ADDR DST.PORT, then DATA: a datagram is whole,
 * so anything short or odd is malformed (-1). A DOMAINNAME must be a
 * non-empty name without NUL. Returns the header length.
 */
static int
udp_parse(const unsigned char *p, size_t n, struct request *r)
{
	int	 len;

	if (n < 4 || p[0] != 0 || p[1] != 0)
		return -1;
	if ((len = socksaddr_parse(p + 3, n - 3, r)) <= 0)
		return -1;
	if (r->atyp == SOCKS5_ATYP_DOMAIN &&
	    (r->namelen == 0 || strlen(r->name) != r->namelen))
		return -1;
	r->frag = p[2];
	return 3 + len;
}
#endif

#if WITH_GSSAPI || defined(SOCKS5_FUZZ)
/*
 * RFC 1961's messages: VER(01) MTYP LEN(2) TOKEN[LEN], of type want.
 * Long, as its length may be 65539 where an int has 16 bits.
 */
static long
gss_msg_parse(const unsigned char *p, size_t n, int want)
{
	size_t	 len;

	if (n < 1)
		return 0;
	if (p[0] != 1)
		return PARSE_BADVER;
	if (n < 2)
		return 0;
	if (p[1] != want)
		return PARSE_BADTYPE;
	if (n < 4)
		return 0;
	len = 4 + (((size_t)p[2] << 8) | p[3]);
	return n >= len ? (long)len : 0;
}
#endif

/* Write ATYP ADDR PORT for a socket address; returns its size. */
static size_t
socksaddr_build(unsigned char *p, const union sockaddr_any *a)
{
	unsigned	 port = 0;
	size_t		 n;

	if (a != NULL && a->sa.sa_family == AF_INET6) {
		p[0] = SOCKS5_ATYP_IPV6;
		memcpy(p + 1, &a->sin6.sin6_addr, 16);
		port = sa_port(a);
		n = 17;
	} else {
		p[0] = SOCKS5_ATYP_IPV4;
		memset(p + 1, 0, 4);
		if (a != NULL && a->sa.sa_family == AF_INET) {
			memcpy(p + 1, &a->sin.sin_addr, 4);
			port = sa_port(a);
		}
		n = 5;
	}
	p[n] = (unsigned char)(port >> 8);
	p[n + 1] = (unsigned char)(port & 0xff);
	return n + 2;
}

/* Write a reply: VER REP RSV ATYP BND.ADDR BND.PORT; returns its size. */
static size_t
reply_build(unsigned char *p, int rep, const union sockaddr_any *a)
{
	p[0] = SOCKS5_VERSION;
	p[1] = (unsigned char)rep;
	p[2] = 0;
	return 3 + socksaddr_build(p + 3, a);
}

/* ------------------------------------------------------------------ */
/* errno to REP, one table; and REP names for the log.                 */

static const struct {
	int		 err;
	unsigned char	 rep;
} errno_rep[] = {
	{ ECONNREFUSED,	SOCKS5_REP_REFUSED },
	{ ENETUNREACH,	SOCKS5_REP_NET_UNREACHABLE },
	{ ENETDOWN,	SOCKS5_REP_NET_UNREACHABLE },
	{ EHOSTUNREACH,	SOCKS5_REP_HOST_UNREACHABLE },
	{ ETIMEDOUT,	SOCKS5_REP_TTL_EXPIRED },
	{ EAFNOSUPPORT,	SOCKS5_REP_ATYP_UNSUPPORTED },
	{ EACCES,	SOCKS5_REP_NOT_ALLOWED },
	{ EPERM,	SOCKS5_REP_NOT_ALLOWED }
};

static int
rep_from_errno(int e)
{
	size_t	 i;

	for (i = 0; i < sizeof(errno_rep) / sizeof(errno_rep[0]); i++)
		if (errno_rep[i].err == e)
			return errno_rep[i].rep;
	return SOCKS5_REP_FAILURE;
}

static const char *const rep_name[] = {
	"succeeded", "general-failure", "not-allowed", "net-unreachable",
	"host-unreachable", "conn-refused", "ttl-expired",
	"cmd-unsupported", "atyp-unsupported"
};

/* ------------------------------------------------------------------ */
/* Resolver: getaddrinfo in helper processes, fixed records on       */
/* socket pairs.                                                       */
/* In single-session mode (inetd, socks5_serve_fd) lookups block.      */

static void
lookup(const struct lookup_req *q, struct lookup_ans *a)
{
	struct addrinfo	 hints, *res, *ai;
	int		 n = 0;

	memset(a, 0, sizeof(*a));
	a->slot = q->slot;
	a->id = q->id;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = q->family;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(q->name, NULL, &hints, &res) != 0)
		return;
	for (ai = res; ai != NULL && n < SOCKS5_MAXADDR; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			a->afam[n] = AF_INET;
			memcpy(a->aaddr[n++],
			    &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, 4);
		} else if (ai->ai_family == AF_INET6) {
			a->afam[n] = AF_INET6;
			memcpy(a->aaddr[n],
			    &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr,
			    16);
			(void)addr_unmap(&a->afam[n], a->aaddr[n]);
			n++;
		}
	}
	a->naddr = n;
	freeaddrinfo(res);
}

/* Move n bytes over a blocking descriptor; -1 at EOF or an error. */
static int
move_all(int fd, void *buf, size_t n, int out)
{
	unsigned char	*p = (unsigned char *)buf;
	ssize_t		 r;

	while (n > 0) {
		r = out ? write(fd, p, n) : read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* A helper's life: read a request, look it up, write the answer. */
static void
resolver_main(int fd)
{
	struct lookup_req	 q;
	struct lookup_ans	 a;

	for (;;) {
		if (move_all(fd, &q, sizeof(q), 0) == -1)
			_exit(0);	/* the server is gone */
		q.name[sizeof(q.name) - 1] = '\0';
		lookup(&q, &a);
		if (move_all(fd, &a, sizeof(a), 1) == -1)
			_exit(0);
	}
}

/* Close every descriptor from 3 below top but keep1 and keep2. */
static void
close_others(int top, int keep1, int keep2)
{
	unsigned char	 isopen[256];
	int		 base, i, n;

	for (base = 3; base < top; base += n) {
		n = top - base < 256 ? top - base : 256;
		fds_open(base, n, isopen);
		for (i = 0; i < n; i++)
			if (isopen[i] && base + i != keep1 && base + i != keep2)
				(void)close(base + i);
	}
}

/*
 * Fork helper i on a socket pair of its own, which carries one request
 * and then its answer at a time; the child keeps only its end of it.
 */
static int
resolver_spawn(int i)
{
	struct helper	*h = &srv.helpers[i];
	struct rlimit	 rl;
	pid_t		 pid;
	long		 top = 65536;
	int		 sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == -1)
		return -1;
	if ((pid = fork()) == -1) {
		(void)close(sp[0]);
		(void)close(sp[1]);
		return -1;
	}
	if (pid > 0) {
		(void)close(sp[0]);
		set_cloexec(sp[1]);
		(void)set_nonblock(sp[1]);
		h->pid = pid;
		h->fd = sp[1];
		h->pi = -1;
		h->slot = -1;
		h->got = 0;
		h->since = srv.now;
		return 0;
	}
	(void)signal(SIGHUP, SIG_IGN);
	(void)signal(SIGINT, SIG_IGN);
	(void)signal(SIGTERM, SIG_DFL);
	(void)signal(SIGCHLD, SIG_DFL);
	/* Keep nothing of the server's, or of an embedding program's. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INF &&
	    (long)rl.rlim_cur < top)
		top = (long)rl.rlim_cur;
	close_others((int)top, sp[0], -1);
	resolver_main(sp[0]);
	_exit(0);
	return 0;
}

/*
 * Helpers are forked when lookups wait and none is idle, up to
 * SOCKS5_RESOLVERS (no more than the table has sessions), and exit
 * after SOCKS5_HELPER_IDLE_MS without work: a server that resolves no
 * names has none.
 */
static void
resolvers_init(void)
{
	int	 i;

	for (i = 0; i < SOCKS5_RESOLVERS; i++) {
		srv.helpers[i].pid = -1;
		srv.helpers[i].fd = -1;
		srv.helpers[i].pi = -1;
		srv.helpers[i].slot = -1;
	}
	srv.nresolvers = srv.nsess < SOCKS5_RESOLVERS ? srv.nsess :
	    SOCKS5_RESOLVERS;
}

/* An idle helper for a waiting lookup: a running one, or a new one. */
static struct helper *
resolver_idle(void)
{
	int	 i, unused = -1;

	for (i = 0; i < srv.nresolvers; i++)
		if (srv.helpers[i].pid > 0 && srv.helpers[i].slot < 0)
			return &srv.helpers[i];
		else if (srv.helpers[i].pid <= 0 && unused < 0)
			unused = i;
	if (unused < 0 || (srv.spawn_failed && !DUE(srv.spawn_retry, srv.now)))
		return NULL;
	if (resolver_spawn(unused) == -1) {
		if (!srv.spawn_failed)
			logmsg(LOG_ERR, "warning: resolver helper: %s",
			    strerror(errno));
		srv.spawn_failed = 1;		/* try again in a second */
		srv.spawn_retry = srv.now + 1000UL;
		return NULL;
	}
	srv.spawn_failed = 0;
	return &srv.helpers[unused];
}

static void	lookup_queue(struct session *);
static int	helper_is_idle(const struct helper *);

/*
 * Helper i is gone (died, or killed by us): its socket is closed and
 * the lookup it had, if its session still wants it, waits for another.
 */
static void
resolver_lost(int i)
{
	struct helper	*h = &srv.helpers[i];
	struct session	*s;

	close_fd(&h->fd);
	h->pid = -1;
	h->pi = -1;
	if (h->slot >= 0) {
		s = &srv.sess[h->slot];
		if (s->lookup_id == h->id && s->lookup_id != 0)
			lookup_queue(s);
	}
	h->slot = -1;
}

/*
 * Replace helper i: killed (its pid reaped later), and forked anew when
 * a lookup needs it. For one busy with a lookup nobody wants any more,
 * at most once a helper per SOCKS5_ABANDON_MS, so it costs a few forks
 * a second at worst; and for one whose socket says it is gone.
 */
static void
resolver_replace(int i)
{
	struct helper	*h = &srv.helpers[i];

	if (h->pid > 0) {
		(void)kill(h->pid, SIGKILL);
		if (srv.nkilled ==
		    (int)(sizeof(srv.killed) / sizeof(srv.killed[0])))
			(void)waitpid(srv.killed[--srv.nkilled], NULL, 0);
		srv.killed[srv.nkilled++] = h->pid;
	}
	resolver_lost(i);
}

/* Helper i has been idle long enough: it reads EOF and exits. */
static void
resolver_retire(int i)
{
	struct helper	*h = &srv.helpers[i];

	if (srv.nkilled == (int)(sizeof(srv.killed) / sizeof(srv.killed[0])))
		(void)waitpid(srv.killed[--srv.nkilled], NULL, 0);
	srv.killed[srv.nkilled++] = h->pid;
	close_fd(&h->fd);
	h->pid = -1;
	h->pi = -1;
}

/*
 * Reap helpers that died (their lookups wait for another, forked when
 * needed), and the ones we replaced or retired. Only our own pids: an
 * embedding program's children are its business.
 */
static void
resolvers_reap(void)
{
	int	 i, status;

	for (i = 0; i < srv.nkilled; )
		if (waitpid(srv.killed[i], &status, WNOHANG) != 0)
			srv.killed[i] = srv.killed[--srv.nkilled];
		else
			i++;
	for (i = 0; i < srv.nresolvers; i++) {
		if (srv.helpers[i].pid <= 0)
			continue;
		if (waitpid(srv.helpers[i].pid, &status, WNOHANG) ==
		    srv.helpers[i].pid) {
			logmsg(LOG_WARNING, "warning: resolver %ld died, "
			    "restarting it", (long)srv.helpers[i].pid);
			resolver_lost(i);
		}
	}
}

/* Let the helpers go that have been idle for SOCKS5_HELPER_IDLE_MS. */
static void
resolvers_retire(void)
{
	int	 i;

	for (i = 0; i < srv.nresolvers; i++)
		if (helper_is_idle(&srv.helpers[i]) &&
		    DUE(srv.helpers[i].since + SOCKS5_HELPER_IDLE_MS, srv.now))
			resolver_retire(i);
}

/* Is helper h running with nothing to do (and so, in time, retired)? */
static int
helper_is_idle(const struct helper *h)
{
	return h->pid > 0 && h->slot < 0;
}

/* Helpers running now, for the status line. */
static int
resolvers_alive(void)
{
	int	 i, n = 0;

	for (i = 0; i < srv.nresolvers; i++)
		if (srv.helpers[i].pid > 0)
			n++;
	return n;
}

/*
 * Asking. A session has at most one lookup out, named by lookup_id. It
 * waits in the queue (nqueued counts exactly the sessions in it) until
 * a helper is idle, and goes to it; oldest first. An answer goes to its
 * session only if it answers the lookup that session has out now.
 */

static void	session_free(struct session *);
static void	dest_resolved(struct session *, const struct lookup_ans *);
#if WITH_UDP
static void	udp_resolved(struct session *, const struct lookup_ans *);
#endif

static void
lookup_queue(struct session *s)
{
	if (!s->queued)
		srv.nqueued++;
	s->queued = 1;
	s->queue_seq = ++srv.queue_seq;
}

static void
lookup_unqueue(struct session *s)
{
	if (s->queued)
		srv.nqueued--;
	s->queued = 0;
}

/* s wants no answer any more: a late one will be dropped. */
static void
lookup_cancel(struct session *s)
{
	lookup_unqueue(s);
	s->lookup_id = 0;
}

static void
lookup_req_fill(struct lookup_req *q, const struct session *s)
{
	memset(q, 0, sizeof(*q));
	q->slot = (unsigned)(s - srv.sess);
	q->id = s->lookup_id;
	q->family = srv.conf.family == 4 ? AF_INET :
	    srv.conf.family == 6 ? AF_INET6 : AF_UNSPEC;
	(void)strcpy(q->name, s->cmd == SOCKS5_CMD_UDP ? s->to.udp.name :
	    s->dname);
}

/* The session that has waited longest for a helper. */
static struct session *
lookup_oldest(void)
{
	struct session	*s, *first = NULL;
	int		 i;

	for (i = 0; i < srv.nactive; i++) {
		s = &srv.sess[srv.active[i]];
		if (s->queued && (first == NULL ||
		    (long)(s->queue_seq - first->queue_seq) < 0))
			first = s;
	}
	return first;
}

/* Does helper h hold a lookup that its session no longer wants? */
static int
helper_abandoned(const struct helper *h)
{
	return h->pid > 0 && h->slot >= 0 &&
	    srv.sess[h->slot].lookup_id != h->id;
}

/*
 * Hand the queued lookups to idle helpers, forking one where none is
 * idle (resolver_idle). A helper that has held a
 * lookup nobody wants for SOCKS5_ABANDON_MS while others wait is
 * replaced first: a name that never answers cannot keep helpers busy
 * for their whole resolver timeout after its clients left.
 */
static void
lookups_dispatch(void)
{
	struct lookup_req	 q;
	struct helper		*h;
	struct session		*s;
	int			 i, tries;

	for (i = 0; i < srv.nresolvers && srv.nqueued > 0; i++)
		if (helper_abandoned(&srv.helpers[i]) &&
		    DUE(srv.helpers[i].since + SOCKS5_ABANDON_MS, srv.now)) {
			if (srv.conf.verbose > 0)
				logmsg(LOG_INFO, "resolver %ld replaced: busy "
				    "with a lookup nobody wants",
				    (long)srv.helpers[i].pid);
			resolver_replace(i);
		}
	for (tries = 0; tries < 2 * SOCKS5_RESOLVERS && srv.nqueued > 0 &&
	    (h = resolver_idle()) != NULL && (s = lookup_oldest()) != NULL;
	    tries++) {
		lookup_req_fill(&q, s);
		if (write(h->fd, &q, sizeof(q)) != (ssize_t)sizeof(q)) {
			resolver_replace((int)(h - srv.helpers)); /* it died */
			continue;
		}
		lookup_unqueue(s);
		h->slot = (int)(s - srv.sess);
		h->id = s->lookup_id;
		h->since = srv.now;
	}
}

/* t, if it comes before *first (or there is none yet). */
static void
timer_earliest(unsigned long *first, int *have, unsigned long t)
{
	if (!*have || DUE(t, *first)) {
		*first = t;
		*have = 1;
	}
}

/*
 * When a helper holding an unwanted lookup may be replaced, an idle one
 * retired, or a failed fork tried again, if sooner.
 */
static void
lookups_next(unsigned long *first, int *have)
{
	struct helper	*h;
	int		 i;

	for (i = 0; i < srv.nresolvers; i++) {
		h = &srv.helpers[i];
		if (srv.nqueued > 0 && helper_abandoned(h))
			timer_earliest(first, have, h->since +
			    SOCKS5_ABANDON_MS);
		else if (helper_is_idle(h))
			timer_earliest(first, have, h->since +
			    SOCKS5_HELPER_IDLE_MS);
	}
	if (srv.nqueued > 0 && srv.spawn_failed)
		timer_earliest(first, have, srv.spawn_retry);
}

/*
 * Ask for the session's name to be looked up, under a new lookup id.
 * In single-session mode, look it up right here; the answer is given on
 * the loop's next pass, as one from a helper would be.
 */
static void
lookup_ask(struct session *s)
{
	struct lookup_req	 q;

	if (++srv.lookup_ids == 0)
		srv.lookup_ids = 1;
	s->lookup_id = srv.lookup_ids;
	s->lookup_deadline = srv.now + (unsigned long)srv.handshake_ms;
	if (srv.nresolvers == 0) {
		lookup_req_fill(&q, s);
		lookup(&q, &srv.inline_ans);
		clock_update();
		srv.inline_ready = 1;
		return;
	}
	lookup_queue(s);
	lookups_dispatch();
}

/* The answer to the lookup s has out: for a datagram, or a request. */
static void
lookup_answer(struct session *s, const struct lookup_ans *a)
{
	s->lookup_id = 0;
#if WITH_UDP
	if (s->cmd == SOCKS5_CMD_UDP) {
		udp_resolved(s, a);
		return;
	}
#endif
	dest_resolved(s, a);
}

/* Give answer a to the session whose lookup it answers; drop a late one. */
static void
lookup_deliver(const struct lookup_ans *a)
{
	struct session	*s;

	if (a->slot >= (unsigned)srv.nsess)
		return;
	s = &srv.sess[a->slot];
	if (a->id == 0 || a->id != s->lookup_id)
		return;			/* not the lookup it has out now */
	lookup_answer(s, a);
	if (s->state == S_DONE)
		session_free(s);
}

/*
 * Answers: the one made here in single-session mode, and the bytes of
 * one from each helper whose socket poll() found readable (a helper has
 * at most one lookup); with the whole answer, the helper is idle again.
 * A helper whose socket has ended is gone, and is replaced.
 */
static void
lookup_answers_read(void)
{
	struct lookup_ans	 a;
	struct helper		*h;
	ssize_t			 n;
	int			 i;

	if (srv.inline_ready) {
		srv.inline_ready = 0;
		a = srv.inline_ans;
		lookup_deliver(&a);
	}
	for (i = 0; i < srv.nresolvers; i++) {
		h = &srv.helpers[i];
		if (h->pi < 0 || h->fd < 0 || srv.pfd[h->pi].revents == 0)
			continue;
		n = read(h->fd, (unsigned char *)&h->ans + h->got,
		    sizeof(h->ans) - h->got);
		if (n <= 0) {
			if (n == 0 || !AGAIN(errno)) {
				logmsg(LOG_WARNING, "warning: resolver %ld "
				    "died, restarting it", (long)h->pid);
				resolver_replace(i);
			}
			continue;
		}
		if ((h->got += (unsigned)n) < sizeof(h->ans))
			continue;
		h->got = 0;
		a = h->ans;
		if (h->slot >= 0 && (unsigned)h->slot == a.slot &&
		    h->id == a.id) {
			h->slot = -1;
			h->since = srv.now;	/* idle from now */
		}
		lookup_deliver(&a);
	}
}

/* ------------------------------------------------------------------ */
/* Sessions: the table, its free list and the active list.             */

static void	session_fail(struct session *, int);
static void	connect_next(struct session *);
static void	dest_ready(struct session *);
#if WITH_BIND
static void	bind_start(struct session *);
#endif
#if WITH_UDP
static void	udp_start(struct session *, const struct request *);
static void	udp_release(struct session *);
#else
#define udp_release(s)		((void)(s))	/* it holds no UDP state */
#endif
#if WITH_AUTH
static void	authpace_leave(struct session *);
#else
#define authpace_leave(s)	((void)(s))	/* it never waits to log in */
#endif
static void	handshake_run(struct session *);

static const struct state_info *state_row(enum state);	/* the table */

/* What the rest of the file asks of the GSS-API part (or, without it). */
#if WITH_GSSAPI
static int	gss_offered(const struct session *, const unsigned char *);
static void	gss_start(struct session *);
static int	client_sock(const struct session *);
static int	gss_udp_open(unsigned char *, ssize_t *);
static int	gss_request_ok(const struct session *, int);
static int	gss_udp_seal(const unsigned char **, size_t *);
static void	gss_pump_events(unsigned long *, int *);
static int	gss_pump_busy(void);
static void	gss_pump_run(void);
static void	gss_reap(void);
static void	gss_sessions_stop(void);
static void	gss_status_log(void);
static int	gss_startup(void);
#else
#define gss_offered(s, p)	0
#define gss_start(s)		((void)(s))
#define client_sock(s)		((s)->fd[FD_CLIENT])
#define gss_udp_open(p, n)	0
#define gss_request_ok(s, c)	1
#define gss_udp_seal(p, n)	0
#define gss_pump_events(f, h)	((void)0)
#define gss_pump_busy()		0
#define gss_pump_run()		((void)0)
#define gss_reap()		((void)0)
#define gss_sessions_stop()	((void)0)
#define gss_status_log()	((void)0)
#define gss_startup()		0
#endif
#define GSS_REQUIRED		(WITH_GSSAPI && GSS_SERVICE != NULL)
#if WITH_GSSAPI
#define GSS_SERVICE		srv.gss.service
#else
#define GSS_SERVICE		NULL
#endif

/*
 * Enter state st: the one place a session's state changes. The deadline
 * is set as the state's row says, and runs on when st continues the
 * state the session is in.
 */
static void
state_enter(struct session *s, enum state st)
{
	const struct state_info	*t = state_row(st);
	unsigned long		 ms = 0;

	if (t->timer != T_NONE && s->state != st && s->state != t->continues) {
		switch (t->timer) {
		case T_HANDSHAKE:
			ms = (unsigned long)srv.handshake_ms;
			break;
		case T_PACED:
			ms = (unsigned long)srv.handshake_ms + srv.pace_ms;
			break;
		case T_BIND:
			ms = (unsigned long)srv.bind_ms;
			break;
		case T_IDLE:
			ms = (unsigned long)srv.conf.idle_timeout * 1000UL;
			break;
		default:
			ms = SOCKS5_LINGER_MS;
			break;
		}
		s->deadline = srv.now + ms;
	}
	s->state = st;
}

static struct session *
session_new(int cfd, int cwfd, const struct sockaddr *peer, socklen_t plen)
{
	struct session	*s;
	int		 slot, i;

	if (srv.nfree == 0)
		return NULL;
	slot = srv.freelist[--srv.nfree];
	s = &srv.sess[slot];
	memset(&s->up, 0, sizeof(s->up));
	memset(&s->down, 0, sizeof(s->down));
	s->up.buf = s->down.buf = -1;
	s->up.data = s->down.data = NULL;
	for (i = 0; i < NFD; i++)
		s->fd[i] = -1;
	s->fd[FD_CLIENT] = cfd;
	s->fd[FD_CLIENT_OUT] = cwfd;
	s->fdres = 0;
	(void)fd_reserve(s, 2);		/* the caller made sure of room */
	s->start = srv.now;
	s->start_s = srv.now_s;
	s->outlen = 0;
	s->hslen = 0;
	s->method = SOCKS5_METHOD_REJECT;
	s->auth_ok = 0;
	s->ulen = s->dnamelen = 0;
	s->pace = -1;
	s->cmd = 0;
	s->datyp = 0;
	s->lookup_id = 0;
	s->queued = 0;
	memset(&s->to, 0, sizeof(s->to));
	s->lasterr = 0;
	s->result = "closed";
	s->dname[0] = s->user[0] = '\0';
	s->dport = 0;
	s->uport = 0;
	s->uport_fixed = 0;
	s->rbuf = s->held = -1;
	s->dgrams_up = s->dgrams_down = s->dgrams_dropped = 0;
	memset(&s->peer, 0, sizeof(s->peer));
	if (peer != NULL && plen <= (socklen_t)sizeof(s->peer) &&
	    (peer->sa_family == AF_INET || peer->sa_family == AF_INET6))
		memcpy(&s->peer, peer, (size_t)plen);
	state_enter(s, S_GREETING);
	s->apos = srv.nactive;
	srv.active[srv.nactive++] = slot;
	return s;
}

static void
session_log(const struct session *s)
{
	char		 peer[64], user[1100], udp[80], up[24], down[24];
	const char	*method, *cmd;
	unsigned long	 ms = srv.now - s->start, secs = srv.now_s - s->start_s;

	if (srv.conf.verbose < 1 || s->result == NULL)
		return;			/* NULL: handed to another process */
	if (secs >= 86400UL * 20)	/* the ms count may have wrapped */
		ms = 0;
	else
		secs = ms / 1000;
	method = s->method == SOCKS5_METHOD_NONE ? "none" :
	    s->method == SOCKS5_METHOD_USERPASS ? "userpass" :
	    s->method == SOCKS5_METHOD_GSSAPI ? "gssapi" : "-";
	cmd = s->cmd == SOCKS5_CMD_CONNECT ? "connect" :
	    s->cmd == SOCKS5_CMD_BIND ? "bind" :
	    s->cmd == SOCKS5_CMD_UDP ? "udp" : "-";
	(void)user_field(user, sizeof(user), s);
	udp[0] = '\0';
	if (s->cmd == SOCKS5_CMD_UDP)
		(void)sprintf(udp, " datagrams=%lu/%lu dropped=%lu",
		    s->dgrams_up, s->dgrams_down, s->dgrams_dropped);
	logmsg(LOG_INFO, "session %s method=%s user=%s cmd=%s dst=%s "
	    "result=%s up=%s down=%s%s time=%lu.%03lus",
	    addr_str(peer, sizeof(peer), &s->peer), method, user, cmd,
	    dest_str(s),
	    s->result, count_str(up, &s->up.bytes),
	    count_str(down, &s->down.bytes), udp, secs, ms % 1000);
}

static void
session_free(struct session *s)
{
	int	 slot = (int)(s - srv.sess);
	int	 i;

	udp_release(s);			/* what it drops is counted */
	session_log(s);
	if (s->fd[FD_CLIENT_OUT] == s->fd[FD_CLIENT])
		s->fd[FD_CLIENT_OUT] = -1;
	for (i = 0; i < NFD; i++)
		close_fd(&s->fd[i]);
	buf_put(&s->up);
	buf_put(&s->down);
	lookup_cancel(s);
	authpace_leave(s);
	(void)fd_reserve(s, 0);
	memset(s->hs, 0, s->hslen);	/* a partial login, maybe */
	s->hslen = 0;
	state_enter(s, S_FREE);
	memset(s->user, 0, sizeof(s->user));
	srv.active[s->apos] = srv.active[--srv.nactive];
	srv.sess[srv.active[s->apos]].apos = s->apos;
	srv.freelist[srv.nfree++] = slot;
	srv.full_logged = 0;
	srv.listen_paused = 0;
}

/* Data moved: push the idle deadline out. */
static void
session_touch(struct session *s)
{
	s->deadline = srv.now + (unsigned long)srv.conf.idle_timeout * 1000UL;
}

/* Close every descriptor but the client's. */
static void
session_close_aux(struct session *s)
{
	int	 i;

	for (i = FD_REMOTE; i < NFD; i++)
		close_fd(&s->fd[i]);
	udp_release(s);
}

/* The session is over: the loop frees it, logging why. */
static void
session_end(struct session *s, const char *why)
{
	s->result = why;
	state_enter(s, S_DONE);
}

/* ------------------------------------------------------------------ */
/* Replies to the client during the handshake.                         */

/* Write what is queued; -1 when the client is gone. */
static int
reply_flush(struct session *s)
{
	ssize_t	 n;

	while (s->outlen > 0) {
		n = write(s->fd[FD_CLIENT_OUT], s->out, s->outlen);
		if (n < 0)
			return AGAIN(errno) ? 0 : -1;
		memmove(s->out, s->out + n, s->outlen - (size_t)n);
		s->outlen -= (unsigned)n;
	}
	return 0;
}

static void
reply_send(struct session *s, const unsigned char *p, size_t n)
{
	if (s->outlen + n > sizeof(s->out)) {
		session_end(s, "client-not-reading");
		return;
	}
	memcpy(s->out + s->outlen, p, n);
	s->outlen += (unsigned)n;
	if (reply_flush(s) == -1)
		session_end(s, "client-gone");
}

/* Shut the client's write side; fd 1 under tcpserver may be a pipe. */
static void
client_shutdown(struct session *s)
{
	if (shutdown(s->fd[FD_CLIENT_OUT], SHUT_WR) == -1 &&
	    s->fd[FD_CLIENT_OUT] != s->fd[FD_CLIENT])
		close_fd(&s->fd[FD_CLIENT_OUT]);
}

/* Enter the lingering close: the final reply is out, drain input. */
static void
linger_start(struct session *s)
{
	buf_put(&s->up);
	buf_put(&s->down);
	session_close_aux(s);
	client_shutdown(s);
	state_enter(s, S_LINGER);
}

/* Send a final message (05 FF, 01 01, or a failure reply), then close. */
static void
session_close_with(struct session *s, const unsigned char *p, size_t n)
{
	buf_put(&s->up);
	session_close_aux(s);
	lookup_cancel(s);
	reply_send(s, p, n);
	if (s->state == S_DONE)
		return;
	state_enter(s, S_CLOSING);
	if (s->outlen == 0)
		linger_start(s);
}

static void
session_fail(struct session *s, int rep)
{
	unsigned char	 r[22];

	s->result = rep_name[rep];
	session_close_with(s, r, reply_build(r, rep, NULL));
}

/* ------------------------------------------------------------------ */
/* Handshake. The client's bytes collect in the session's own small    */
/* buffer (hs), never in a spill buffer; each complete message is      */
/* taken out of it and handed to its state's function, and what        */
/* follows (a partial message, or data behind the request) stays.      */

static void	on_greeting(struct session *, const unsigned char *);
#if WITH_AUTH
static void	on_login(struct session *, const unsigned char *, size_t);
#endif
static void	on_request(struct session *, const unsigned char *, size_t);

/*
 * The length of the complete message s->hs starts with, for the state
 * s is in: 0 while it needs more, or a PARSE_ code.
 */
static int
handshake_length(const struct session *s)
{
	struct credentials	 c;
	struct request		 r;

	switch (s->state) {
	case S_GREETING:
		return greeting_parse(s->hs, s->hslen);
	case S_AUTH:
		return auth_parse(s->hs, s->hslen, &c);
	case S_REQUEST:
		return request_parse(s->hs, s->hslen, &r);
	default:
		return 0;
	}
}

/* Take the first n bytes out of the handshake buffer, leaving no trace. */
static void
hs_consume(struct session *s, unsigned n)
{
	memmove(s->hs, s->hs + n, s->hslen - n);
	memset(s->hs + s->hslen - n, 0, n);
	s->hslen -= n;
}

/*
 * Hand each complete message in s->hs to the state it is for. A message
 * is taken out of the buffer before its state acts on it, so that what
 * stays is exactly what followed it.
 */
static void
handshake_run(struct session *s)
{
	unsigned char	 msg[SOCKS5_HS_SIZE];
	enum state	 st;
	int		 len;

	while ((st = s->state) == S_GREETING || st == S_AUTH ||
	    st == S_REQUEST) {
		if ((len = handshake_length(s)) == 0)
			return;
		if (len == PARSE_BADATYP) {
			session_fail(s, SOCKS5_REP_ATYP_UNSUPPORTED);
			break;
		}
		if (len < 0) {
			session_end(s, "bad-version");
			break;
		}
		memcpy(msg, s->hs, (size_t)len);
		hs_consume(s, (unsigned)len);
		if (st == S_GREETING)
			on_greeting(s, msg);
#if WITH_AUTH
		else if (st == S_AUTH)
			on_login(s, msg, (size_t)len);
#endif
		else
			on_request(s, msg, (size_t)len);
		memset(msg, 0, (size_t)len);	/* a password, maybe */
	}
	st = s->state;
	if (st == S_UDP || st == S_CLOSING || st == S_LINGER || st == S_DONE)
		hs_consume(s, s->hslen);	/* nothing more is relayed */
}

/*
 * Read the client into the handshake buffer, as much as it has room
 * for: read()'s answer, and -1 with EAGAIN when the buffer is full.
 */
static ssize_t
hs_read(struct session *s)
{
	ssize_t	 n;

	if (s->hslen >= sizeof(s->hs)) {
		errno = EAGAIN;
		return -1;
	}
	n = read(s->fd[FD_CLIENT], s->hs + s->hslen,
	    sizeof(s->hs) - s->hslen);
	if (n > 0)
		s->hslen += (unsigned)n;
	return n;
}

/* Client input during the handshake, as much as the buffer has room. */
static void
client_input(struct session *s)
{
	ssize_t	 n;

	n = hs_read(s);
	if (n == 0) {
		session_end(s, "closed");
		return;
	}
	if (n < 0) {
		if (!AGAIN(errno))
			session_end(s, "read-error");
		return;
	}
	handshake_run(s);
}

/*
 * S_GREETING, S_AUTH, S_REQUEST read the client's next message (and
 * S_LINGER reads whatever it still sends).
 */
static void
client_read_events(const struct session *s, short *ev)
{
	(void)s;
	ev[FD_CLIENT] |= POLLIN;
}

static void
st_handshake(struct session *s, const int *rev)
{
	if (rev[FD_CLIENT] & READY_IN)
		client_input(s);
}

static void
handshake_expired(struct session *s)
{
	session_end(s, "timeout");
}

/*
 * S_RESOLVE, S_CONNECT and S_AUTH_WAIT wait for something else, and keep
 * what the client sends meanwhile (a request behind a login, data
 * behind a request) in hs: a reset ends the session at once, and an EOF
 * is noted in up.eof (it may be a half-close; the relay passes it on).
 * Once hs is full, or after the EOF, the client is read no more and is
 * polled for errors only: POLLERR asks for nothing, and where poll()
 * reports errors anyway (Linux) a reset is still seen at once; where it
 * does not (macOS, FreeBSD), the wait's deadline ends the session.
 */
static int
waiting_reads(const struct session *s)
{
	return !s->up.eof && s->hslen < sizeof(s->hs);
}

static void
waiting_events(const struct session *s, short *ev)
{
	ev[FD_CLIENT] |= waiting_reads(s) ? POLLIN : POLLERR;
}

/* Has the client that is not read gone? Then the session ends. */
static int
client_vanished(struct session *s, const int *rev)
{
	if (!(rev[FD_CLIENT] & (POLLERR | POLLHUP)))
		return 0;
	session_end(s, "client-gone");
	return 1;
}

/* The waiting client's bytes, EOF or reset; 1 when the session ended. */
static int
waiting_input(struct session *s, const int *rev)
{
	ssize_t	 n;

	if (!waiting_reads(s))
		return client_vanished(s, rev);
	if (!(rev[FD_CLIENT] & READY_IN))
		return 0;
	n = hs_read(s);
	if (n == 0)
		s->up.eof = 1;
	else if (n < 0 && !AGAIN(errno)) {
		session_end(s, "client-gone");
		return 1;
	}
	return 0;
}

static void
st_waiting(struct session *s, const int *rev)
{
	(void)waiting_input(s, rev);
}

/* ------------------------------------------------------------------ */
/* Login pacing: an address that fails a login waits for its answers.  */

#if WITH_AUTH

/*
 * After a failed login from an address (for IPv6, its
 * /64), no login from it is answered for SOCKS5_AUTH_DELAY_MS: until
 * that gate opens, every login from it, right or wrong, waits in
 * S_AUTH_WAIT, and they are answered in the order they came, one after
 * another, each failure closing the gate for the delay again. So an
 * address learns at most one failure per delay, however many
 * connections it opens, while a right login only waits for the gate:
 * once the failures stop, the gate stays open. At most as many logins
 * as the handshake timeout holds delays wait per address; one more is
 * closed at once, unanswered and its password unchecked, so that the
 * close tells nothing either. An entry lives while it has logins
 * waiting or its gate is closed; when all are busy, a login from an
 * address without one is closed the same way: pacing fails closed.
 */

static void	auth_answer(struct session *);

/*
 * The entry for s's address, -1 if it has none; with make, a new one
 * (taking a free entry, or else an idle one whose gate opens first),
 * -1 when every entry has logins waiting.
 */
static int
authpace_find(const struct session *s, int make)
{
	unsigned char	 key[8], fam;
	int		 i, pick = -1;

	fam = peer_key(&s->peer, key);
	for (i = 0; i < SOCKS5_AUTH_TRACK; i++) {
		if (srv.authpace[i].used && srv.authpace[i].fam == fam &&
		    memcmp(srv.authpace[i].key, key, 8) == 0)
			return i;
		if (!srv.authpace[i].used) {
			if (pick < 0 || srv.authpace[pick].used)
				pick = i;
		} else if (srv.authpace[i].waiting == 0 && (pick < 0 ||
		    (srv.authpace[pick].used &&
		    DUE(srv.authpace[i].gate, srv.authpace[pick].gate))))
			pick = i;
	}
	if (!make || pick < 0)
		return -1;
	if (!srv.authpace[pick].used)
		srv.authpace_used++;
	srv.authpace[pick].used = 1;
	srv.authpace[pick].fam = fam;
	memcpy(srv.authpace[pick].key, key, 8);
	srv.authpace[pick].waiting = 0;
	srv.authpace[pick].gate = srv.now;
	return pick;
}

/* Does every entry have logins waiting, leaving none for an address? */
static int
authpace_full(void)
{
	int	 i;

	for (i = 0; i < SOCKS5_AUTH_TRACK; i++)
		if (!srv.authpace[i].used || srv.authpace[i].waiting == 0)
			return 0;
	return 1;
}

/* s stops waiting for its address's gate. */
static void
authpace_leave(struct session *s)
{
	if (s->pace >= 0 && srv.authpace[s->pace].waiting > 0)
		srv.authpace[s->pace].waiting--;
	s->pace = -1;
}

/* The login from entry i's address that has waited longest, or NULL. */
static struct session *
authpace_first(int i)
{
	struct session	*s, *first = NULL;
	int		 k;

	for (k = 0; k < srv.nactive; k++) {
		s = &srv.sess[srv.active[k]];
		if (s->state == S_AUTH_WAIT && s->pace == i && (first == NULL ||
		    (long)(s->pace_seq - first->pace_seq) < 0))
			first = s;
	}
	return first;
}

/*
 * Open gates: answer the waiting logins in turn until a failure closes
 * the gate again; forget the addresses with nothing left to pace.
 */
static void
authpace_run(void)
{
	struct session	*s;
	int		 i;

	for (i = 0; i < SOCKS5_AUTH_TRACK && srv.authpace_used > 0; i++) {
		if (!srv.authpace[i].used)
			continue;
		while (srv.authpace[i].waiting > 0 && DUE(srv.authpace[i].gate, srv.now)) {
			if ((s = authpace_first(i)) == NULL) {
				srv.authpace[i].waiting = 0;
				break;
			}
			authpace_leave(s);
			auth_answer(s);
			handshake_run(s);	/* a request sent behind it */
			if (s->state == S_DONE)
				session_free(s);
		}
		if (srv.authpace[i].waiting == 0 && DUE(srv.authpace[i].gate, srv.now)) {
			srv.authpace[i].used = 0;
			srv.authpace_used--;
		}
	}
}

/* When the next gate opens, into *first (if *have, only if sooner). */
static void
authpace_next(unsigned long *first, int *have)
{
	int	 i;

	for (i = 0; i < SOCKS5_AUTH_TRACK && srv.authpace_used > 0; i++)
		if (srv.authpace[i].used &&
		    (!*have || DUE(srv.authpace[i].gate, *first))) {
			*first = srv.authpace[i].gate;
			*have = 1;
		}
}

#endif /* WITH_AUTH */

/* ------------------------------------------------------------------ */
/* Greeting and login (RFC 1929).                                      */

/*
 * S_GREETING: a complete method selection message is in p. The method
 * is 01 when -g is given and the client offers it, else 02 with -u,
 * else 00 unless -g is given: with -g or -u, 00 is never chosen.
 */
static void
on_greeting(struct session *s, const unsigned char *p)
{
	unsigned char	 r[2];
	int		 want;

	if (gss_offered(s, p)) {
		gss_start(s);
		return;
	}
	want = srv.conf.user_file ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_NONE;
	s->method = (unsigned char)greeting_method(p, want);
	if (GSS_REQUIRED && want == SOCKS5_METHOD_NONE)
		s->method = SOCKS5_METHOD_REJECT;	/* 01 was a must */
	r[0] = SOCKS5_VERSION;
	r[1] = s->method;
	if (s->method == SOCKS5_METHOD_REJECT) {
		s->result = "no-method";
		session_close_with(s, r, 2);
		return;
	}
	state_enter(s, s->method == SOCKS5_METHOD_USERPASS ? S_AUTH :
	    S_REQUEST);
	reply_send(s, r, 2);
}

#if WITH_AUTH
/* Answer a login: 01 00 and on to the request, or 01 01 and close. */
static void
auth_answer(struct session *s)
{
	static const unsigned char ok[2] = { SOCKS5_AUTH_VERSION, 0 };
	static const unsigned char no[2] = { SOCKS5_AUTH_VERSION, 1 };
	char	 peer[64], name[1100];
	int	 i;

	if (!s->auth_ok) {
		logmsg(LOG_WARNING, "auth failed client=%s user=%s",
		    addr_str(peer, sizeof(peer), &s->peer),
		    user_field(name, sizeof(name), s));
		if ((i = authpace_find(s, 1)) >= 0)
			srv.authpace[i].gate = srv.now + srv.pace_ms;
		s->result = "auth-failed";
		session_close_with(s, no, 2);
		return;
	}
	state_enter(s, S_REQUEST);
	reply_send(s, ok, 2);
}

/* A login that cannot wait is closed unanswered, its password unread. */
static void
auth_refuse_paced(struct session *s)
{
	char	 peer[64], name[1100];

	logmsg(LOG_WARNING, "auth paced client=%s user=%s: closed unanswered",
	    addr_str(peer, sizeof(peer), &s->peer),
	    user_field(name, sizeof(name), s));
	session_end(s, "auth-paced");
}

/* S_AUTH: method 02 was chosen; a complete RFC 1929 request is in p. */
static void
on_login(struct session *s, const unsigned char *p, size_t n)
{
	struct credentials	 c;
	unsigned		 most;
	int			 i;

	if (auth_parse(p, n, &c) <= 0)
		return;			/* handshake_run measured it whole */
	memcpy(s->user, c.name, c.ulen);
	s->user[c.ulen] = '\0';
	s->ulen = (unsigned char)c.ulen;
	i = authpace_find(s, 0);
	if (i < 0 && authpace_full()) {
		auth_refuse_paced(s);	/* no entry to pace it with */
		return;
	}
	if (i >= 0 && (srv.authpace[i].waiting > 0 ||
	    !DUE(srv.authpace[i].gate, srv.now))) {
		most = (unsigned)((unsigned long)srv.handshake_ms /
		    srv.pace_ms);
		if (srv.authpace[i].waiting >= (most > 0 ? most : 1)) {
			auth_refuse_paced(s);
			return;
		}
		s->auth_ok = (unsigned char)users_check(c.name, c.ulen,
		    c.pass, c.plen);
		srv.authpace[i].waiting++;
		s->pace = i;
		s->pace_seq = ++srv.authpace_seq;
		/* its turn is due within the timeout; the gate may run late */
		state_enter(s, S_AUTH_WAIT);
		return;
	}
	s->auth_ok = (unsigned char)users_check(c.name, c.ulen, c.pass,
	    c.plen);
	auth_answer(s);
}

/* S_AUTH_WAIT: its turn did not come in time. */
static void
auth_wait_expired(struct session *s)
{
	auth_refuse_paced(s);
}
#endif /* WITH_AUTH */

/* ------------------------------------------------------------------ */
/* Requests: CONNECT and BIND find the destination's addresses, by     */
/* a lookup when it is a name; UDP ASSOCIATE starts at once.           */

/* Outgoing family allowed by -4/-6? */
static int
family_permitted(int fam)
{
	return !(srv.conf.family == 4 && fam != AF_INET) &&
	    !(srv.conf.family == 6 && fam != AF_INET6);
}

/* ... and by the -b address, for CONNECT? */
static int
connect_family_ok(int fam)
{
	return family_permitted(fam) &&
	    (!srv.have_bind || srv.bind_sa.sa.sa_family == fam);
}

/* S_REQUEST named a host: wait in S_RESOLVE for its addresses. */
static void
lookup_start(struct session *s)
{
	state_enter(s, S_RESOLVE);
	lookup_ask(s);
}

/* A CONNECT's or BIND's name resolved, or did not: on to its addresses. */
static void
dest_resolved(struct session *s, const struct lookup_ans *a)
{
	int	 i;

	if (a->naddr <= 0) {
		logmsg(LOG_DEBUG, "cannot resolve %s", dest_str(s));
		session_fail(s, SOCKS5_REP_HOST_UNREACHABLE);
		return;
	}
	s->to.dst.naddr = (unsigned char)a->naddr;
	s->to.dst.next = 0;
	for (i = 0; i < a->naddr; i++) {
		s->to.dst.fam[i] = a->afam[i];
		memcpy(s->to.dst.addr[i], a->aaddr[i], 16);
	}
	s->lasterr = EAFNOSUPPORT;
	dest_ready(s);
}

/* The destination's addresses are known: connect, or listen for BIND. */
static void
dest_ready(struct session *s)
{
#if WITH_BIND
	if (s->cmd == SOCKS5_CMD_BIND) {
		bind_start(s);
		return;
	}
#endif
	connect_next(s);
}

/* S_REQUEST: authenticated (or no auth needed); a whole request in p. */
static void
on_request(struct session *s, const unsigned char *p, size_t n)
{
	struct request	 r;

	if (request_parse(p, n, &r) <= 0)
		return;			/* handshake_run measured it whole */
	s->cmd = r.cmd;
	s->datyp = r.atyp;
	s->dport = (unsigned short)r.port;
	if (r.atyp == SOCKS5_ATYP_DOMAIN) {
		memcpy(s->dname, r.name, (size_t)r.namelen + 1);
		s->dnamelen = r.namelen;
	} else {
		(void)inet_ntop(r.atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6,
		    r.addr, s->dname, sizeof(s->dname));
	}
	if (!gss_request_ok(s, r.cmd)) {
		session_fail(s, SOCKS5_REP_NOT_ALLOWED);
		return;
	}
#if WITH_UDP
	if (r.cmd == SOCKS5_CMD_UDP) {
		udp_start(s, &r);
		return;
	}
#endif
	if (r.cmd != SOCKS5_CMD_CONNECT &&
	    (r.cmd != SOCKS5_CMD_BIND || !WITH_BIND)) {
		session_fail(s, SOCKS5_REP_CMD_UNSUPPORTED);
		return;
	}
	if (r.atyp == SOCKS5_ATYP_DOMAIN) {
		if (r.namelen == 0 || strlen(r.name) != r.namelen) {
			session_fail(s, SOCKS5_REP_FAILURE);
			return;
		}
		lookup_start(s);
		return;
	}
	s->to.dst.naddr = 1;
	s->to.dst.next = 0;
	s->to.dst.fam[0] = (unsigned char)(r.atyp == SOCKS5_ATYP_IPV4 ? AF_INET :
	    AF_INET6);
	memcpy(s->to.dst.addr[0], r.addr, 16);
	if (!family_permitted(addr_unmap(&s->to.dst.fam[0], s->to.dst.addr[0]))) {
		session_fail(s, SOCKS5_REP_ATYP_UNSUPPORTED);
		return;
	}
	s->lasterr = EAFNOSUPPORT;
	dest_ready(s);
}

/* S_RESOLVE: no answer in time. */
static void
resolve_expired(struct session *s)
{
	session_fail(s, SOCKS5_REP_HOST_UNREACHABLE);
}

static int	relay_check_close(struct session *);

/*
 * A request granted: the relay begins. Bytes the client sent behind its
 * request go first, and an EOF it sent while it waited is passed on.
 */
static void
relay_begin(struct session *s)
{
	state_enter(s, S_RELAY);
	s->result = rep_name[SOCKS5_REP_SUCCEEDED];
	if (s->hslen > 0) {
		s->up.data = s->hs;
		s->up.off = 0;
		s->up.len = s->hslen;
		s->up.full = 1;
		s->hslen = 0;
	}
	(void)relay_check_close(s);	/* an EOF that came while it waited */
}

/* ------------------------------------------------------------------ */
/* Connecting: walk the destination's addresses, non-blocking.         */

/* The remote accepted: answer the client with our local address. */
static void
connected(struct session *s)
{
	union sockaddr_any	 local;
	socklen_t		 len = sizeof(local);
	unsigned char		 r[22];

	memset(&local, 0, sizeof(local));
	(void)getsockname(s->fd[FD_REMOTE], &local.sa, &len);
	relay_begin(s);
	reply_send(s, r, reply_build(r, SOCKS5_REP_SUCCEEDED, &local));
}

static void
connect_next(struct session *s)
{
	union sockaddr_any	 a, b;
	socklen_t		 alen, blen;
	int			 fd, i;

	while (s->to.dst.next < s->to.dst.naddr) {
		i = s->to.dst.next++;
		if (!connect_family_ok(s->to.dst.fam[i]))
			continue;
		if (rules_request(s, SOCKS5_CMD_CONNECT, s->to.dst.fam[i],
		    s->to.dst.addr[i], s->dport, "connect", LOG_NOTICE) == -1) {
			s->lasterr = EACCES;
			continue;
		}
		alen = addr_make(&a, s->to.dst.fam[i], s->to.dst.addr[i], s->dport);
		if ((fd = socket_new(a.sa.sa_family, SOCK_STREAM)) == -1) {
			s->lasterr = errno;
			continue;
		}
		if (srv.have_bind &&
		    bind(fd, &srv.bind_sa.sa, sa_len(&srv.bind_sa)) == -1) {
			s->lasterr = errno;
			(void)close(fd);
			continue;
		}
		set_nodelay(fd);
		s->fd[FD_REMOTE] = fd;
		if (connect(fd, &a.sa, alen) == 0) {
			connected(s);
			return;
		}
		if (errno == EINPROGRESS || errno == EINTR) {
			state_enter(s, S_CONNECT);
			/* Loopback often completes at once: skip a pass. */
			blen = sizeof(b);
			if (getpeername(fd, &b.sa, &blen) == 0)
				connected(s);
			return;
		}
		s->lasterr = errno;
		close_fd(&s->fd[FD_REMOTE]);
	}
	session_fail(s, rep_from_errno(s->lasterr));
}

/* S_CONNECT: connect() is in progress; POLLOUT says it ended. */
static void
connect_events(const struct session *s, short *ev)
{
	waiting_events(s, ev);
	ev[FD_REMOTE] |= POLLOUT;
}

static void
st_connect(struct session *s, const int *rev)
{
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (waiting_input(s, rev) || !(rev[FD_REMOTE] & READY_OUT))
		return;
	if (getsockopt(s->fd[FD_REMOTE], SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err == 0) {
		connected(s);
		return;
	}
	s->lasterr = err;
	logmsg(LOG_DEBUG, "connect %s: %s", dest_str(s), strerror(err));
	close_fd(&s->fd[FD_REMOTE]);
	connect_next(s);
}

/* S_CONNECT, S_BIND_WAIT: no connection in time. */
static void
ttl_expired(struct session *s)
{
	session_fail(s, SOCKS5_REP_TTL_EXPIRED);
}

/* ------------------------------------------------------------------ */
/* BIND: listen for one incoming connection on the client's behalf.    */

#if WITH_BIND || WITH_UDP
/* Replace the address in a reply by the -e address, keeping the port. */
static void
addr_set_external(union sockaddr_any *a)
{
	unsigned	 port;

	if (!srv.have_ext)
		return;
	port = sa_port(a);
	*a = srv.ext_sa;
	sa_set_port(a, port);
}
#endif

#if WITH_BIND
/* Is the destination the all-zero address: accept any peer? */
static int
dst_is_any(const struct session *s)
{
	static const unsigned char zero[16] = { 0 };

	return s->to.dst.naddr == 1 &&
	    memcmp(s->to.dst.addr[0], zero, ADDR_LEN(s->to.dst.fam[0])) == 0;
}

/*
 * The address an application server can reach us at: -b when given;
 * else the local address the system would use to reach the destination
 * (connecting a UDP socket sends nothing); for an all-zero destination,
 * the local address of the client's own connection; the wildcard last.
 */
static void
bind_local(struct session *s, int fam, union sockaddr_any *a,
    socklen_t *alen)
{
	union sockaddr_any	 d;
	socklen_t		 dlen;
	int			 fd, lo;

	if (srv.have_bind && srv.bind_sa.sa.sa_family == fam) {
		*a = srv.bind_sa;
		*alen = sa_len(a);
		return;
	}
	*alen = sizeof(*a);
	memset(a, 0, sizeof(*a));
	if (!dst_is_any(s)) {
		dlen = addr_make(&d, fam, s->to.dst.addr[0], s->dport ? s->dport : 9);
		if ((fd = socket(fam, SOCK_DGRAM, 0)) != -1) {
			if (connect(fd, &d.sa, dlen) == -1 ||
			    getsockname(fd, &a->sa, alen) == -1)
				memset(a, 0, sizeof(*a));
			(void)close(fd);
		}
	} else if (getsockname(client_sock(s), &a->sa, alen) == -1) {
		memset(a, 0, sizeof(*a));
	}
	if (a->sa.sa_family != fam) {
		/* The other family: loopback for a loopback client. */
		lo = addr_is_loopback(a);
		memset(a, 0, sizeof(*a));
		a->sa.sa_family = (unsigned short)fam;
		if (lo && fam == AF_INET)
			a->sin.sin_addr.s_addr = htonl(0x7f000001UL);
		else if (lo)
			a->sin6.sin6_addr.s6_addr[15] = 1;
	}
	sa_set_port(a, 0);
	*alen = sa_len(a);
}

/* Open the listener and send the first reply. */
static void
bind_start(struct session *s)
{
	union sockaddr_any	 a;
	socklen_t		 alen;
	unsigned char		 r[22];
	int			 fd, i, fam = 0;

	for (i = 0; i < s->to.dst.naddr && fam == 0; i++)
		if (family_permitted(s->to.dst.fam[i]))
			fam = s->to.dst.fam[i];
	if (fam == 0) {
		session_fail(s, SOCKS5_REP_ATYP_UNSUPPORTED);
		return;
	}
	if (fd_reserve(s, 3) == -1) {
		logmsg(LOG_WARNING, "warning: no descriptor left for a BIND "
		    "listener");
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	if (rules_request(s, SOCKS5_CMD_BIND, fam, s->to.dst.addr[i - 1], s->dport,
	    "bind", LOG_NOTICE) == -1) {
		session_fail(s, SOCKS5_REP_NOT_ALLOWED);
		return;
	}
	bind_local(s, fam, &a, &alen);
	if ((fd = socket_new(fam, SOCK_STREAM)) == -1) {
		logmsg(LOG_WARNING, "warning: bind socket: %s", strerror(errno));
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	s->fd[FD_LISTEN] = fd;
	if (bind(fd, &a.sa, alen) == -1 || listen(fd, 1) == -1) {
		logmsg(LOG_WARNING, "warning: bind listener: %s",
		    strerror(errno));
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	alen = sizeof(a);
	(void)getsockname(fd, &a.sa, &alen);
	addr_set_external(&a);
	state_enter(s, S_BIND_WAIT);
	reply_send(s, r, reply_build(r, SOCKS5_REP_SUCCEEDED, &a));
}

/* Is p the peer the client named (any, if it named all zeros)? */
static int
bind_peer_ok(const struct session *s, const union sockaddr_any *p)
{
	unsigned char	 ip[16], fam;
	int		 i;

	if (dst_is_any(s))
		return 1;
	fam = (unsigned char)p->sa.sa_family;
	memcpy(ip, sa_ip(p), ADDR_LEN(fam));
	(void)addr_unmap(&fam, ip);
	for (i = 0; i < s->to.dst.naddr; i++)
		if (s->to.dst.fam[i] == fam &&
		    memcmp(s->to.dst.addr[i], ip, ADDR_LEN(fam)) == 0)
			return 1;
	return 0;
}

/* Do the rules forbid this incoming peer? */
static int
bind_peer_denied(const struct session *s, const union sockaddr_any *p)
{
	return rules_request(s, SOCKS5_CMD_BIND, p->sa.sa_family, sa_ip(p),
	    sa_port(p), "bind peer", LOG_NOTICE);
}

/*
 * Keep what the client sends before the peer arrives, in the handshake
 * buffer; when that is full the client waits (it is no longer read),
 * and until then a client that leaves is seen at once.
 */
static void
bind_client_input(struct session *s)
{
	ssize_t	 n;

	n = hs_read(s);
	if (n == 0 || (n < 0 && !AGAIN(errno)))
		session_end(s, "client-gone");
}

/* The listener is readable: take the expected peer, turn others away. */
static void
bind_accept(struct session *s)
{
	union {
		struct sockaddr_storage	 ss;
		union sockaddr_any	 a;
	} peer;
	socklen_t	 plen;
	unsigned char	 r[22];
	char		 buf[64];
	int		 fd;

	for (;;) {
		plen = sizeof(peer);
		fd = accept_new(s->fd[FD_LISTEN], &peer.a.sa, &plen);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (!AGAIN(errno)) {
				logmsg(LOG_WARNING, "warning: bind accept: %s",
				    strerror(errno));
				session_fail(s, SOCKS5_REP_FAILURE);
			}
			return;
		}
		if (!bind_peer_ok(s, &peer.a)) {
			logmsg(LOG_NOTICE, "bind: refused %s, waiting for %s",
			    addr_str(buf, sizeof(buf), &peer.a), dest_str(s));
			(void)close(fd);
			continue;
		}
		if (bind_peer_denied(s, &peer.a)) {
			(void)close(fd);
			continue;
		}
		close_fd(&s->fd[FD_LISTEN]);
		(void)fd_reserve(s, 2);
		s->fd[FD_REMOTE] = fd;
		set_nodelay(fd);
		relay_begin(s);
		reply_send(s, r, reply_build(r, SOCKS5_REP_SUCCEEDED, &peer.a));
		return;
	}
}

/*
 * S_BIND_WAIT: the first reply went out and FD_LISTEN listens. Client
 * data is kept for the peer; a client that leaves ends the session.
 */
static void
bind_wait_events(const struct session *s, short *ev)
{
	ev[FD_LISTEN] |= POLLIN;
	ev[FD_CLIENT] |= s->hslen < sizeof(s->hs) ? POLLIN : POLLERR;
}

static void
st_bind_wait(struct session *s, const int *rev)
{
	if (s->hslen >= sizeof(s->hs) && client_vanished(s, rev))
		return;
	if (rev[FD_CLIENT] & READY_IN) {
		bind_client_input(s);
		if (s->state != S_BIND_WAIT)
			return;
	}
	if (rev[FD_LISTEN] & READY_IN)
		bind_accept(s);
}
#endif /* WITH_BIND */

/* ------------------------------------------------------------------ */
/* UDP ASSOCIATE: datagrams between the client's UDP port and the      */
/* world, with RFC 1928 section 7 fragment reassembly.                 */

#if WITH_UDP
static int
udpbuf_get(void)
{
	return srv.nudpfree > 0 ? srv.udpfree[--srv.nudpfree] : -1;
}

static void
udpbuf_put(int *b)
{
	if (*b >= 0) {
		srv.udpfree[srv.nudpfree++] = *b;
		srv.udp_full_logged = 0;
	}
	*b = -1;
}

/* Return the UDP state's buffers to the pool. */
static void
udp_release(struct session *s)
{
	if (s->rbuf >= 0)		/* a sequence never completed */
		s->dgrams_dropped++;
	if (s->held >= 0)		/* a datagram still waiting */
		s->dgrams_dropped++;
	udpbuf_put(&s->rbuf);
	udpbuf_put(&s->held);
	lookup_cancel(s);
}

static void
udp_drop(struct session *s, const char *why)
{
	char	 peer[64];

	s->dgrams_dropped++;
	logmsg(LOG_DEBUG, "udp: dropped a datagram of %s: %s",
	    addr_str(peer, sizeof(peer), &s->peer), why);
}

/*
 * The client-facing socket sits on the local address of the client's
 * control connection; its address (or -e's) goes in the reply.
 */
static void
udp_start(struct session *s, const struct request *r)
{
	union sockaddr_any	 a;
	socklen_t		 alen = sizeof(a);
	unsigned char		 rep[22];
	int			 fd;

	s->uport = (unsigned short)r->port;
	s->uport_fixed = r->port != 0;
	if (rules_request(s, SOCKS5_CMD_UDP, 0, NULL, 0, "udp",
	    LOG_NOTICE) == -1) {
		session_fail(s, SOCKS5_REP_NOT_ALLOWED);
		return;
	}
	if (fd_reserve(s, 4) == -1) {
		logmsg(LOG_WARNING, "warning: no descriptors left for a UDP "
		    "association");
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	memset(&a, 0, sizeof(a));
	if (getsockname(client_sock(s), &a.sa, &alen) == -1 ||
	    (a.sa.sa_family != AF_INET && a.sa.sa_family != AF_INET6)) {
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	sa_set_port(&a, 0);
	if ((fd = socket_new(a.sa.sa_family, SOCK_DGRAM)) == -1) {
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	s->fd[FD_UDP] = fd;
	if (bind(fd, &a.sa, alen) == -1 ||
	    getsockname(fd, &a.sa, &alen) == -1) {
		logmsg(LOG_WARNING, "warning: udp socket: %s", strerror(errno));
		session_fail(s, SOCKS5_REP_FAILURE);
		return;
	}
	addr_set_external(&a);
	s->to.udp.have = 0;	/* no name cached yet */
	state_enter(s, S_UDP);
	s->result = rep_name[SOCKS5_REP_SUCCEEDED];
	reply_send(s, rep, reply_build(rep, SOCKS5_REP_SUCCEEDED, &a));
}

/* Does a datagram from src belong to this association's client? */
static int
udp_from_client_ok(const struct session *s, const union sockaddr_any *src)
{
	int	 fam = src->sa.sa_family;

	return fam == s->peer.sa.sa_family &&
	    memcmp(sa_ip(src), sa_ip(&s->peer), ADDR_LEN(fam)) == 0 &&
	    (!s->uport_fixed || sa_port(src) == s->uport);
}

/* The outward socket of a family, made on first use. */
static int
udp_outward(struct session *s, int fam)
{
	union sockaddr_any	 a;
	socklen_t		 alen;
	int			 slot = fam == AF_INET ? FD_UDP4 : FD_UDP6;
	int			 fd;

	if (s->fd[slot] >= 0)
		return s->fd[slot];
	if (srv.have_bind && srv.bind_sa.sa.sa_family == fam) {
		a = srv.bind_sa;
	} else {
		memset(&a, 0, sizeof(a));
		a.sa.sa_family = (unsigned short)fam;
	}
	alen = sa_len(&a);
	if ((fd = socket_new(fam, SOCK_DGRAM)) == -1)
		return -1;
	if (bind(fd, &a.sa, alen) == -1) {
		(void)close(fd);
		return -1;
	}
	s->fd[slot] = fd;
	return fd;
}

/*
 * Send DATA to the destination its header names. A DOMAINNAME uses the
 * association's last answer; another name is looked up while this one
 * datagram waits in a UDP buffer (ub, or a new one), and datagrams for
 * other names that come meanwhile are dropped. ub, a UDP buffer that
 * already holds the datagram or -1, is always consumed.
 */
static void
udp_forward(struct session *s, const unsigned char *hdr,
    const unsigned char *data, size_t len, int ub)
{
	struct request		 d;
	union sockaddr_any	 a;
	socklen_t		 alen;
	const unsigned char	*ip;
	unsigned char		 dfam;
	int			 fam, fd, hlen;

	hlen = socksaddr_parse(hdr, 262, &d);
	if (d.atyp == SOCKS5_ATYP_DOMAIN) {
		if (!s->to.udp.have || strcmp(s->to.udp.name, d.name) != 0) {
			if (s->lookup_id != 0) {
				udp_drop(s, "another lookup is pending");
				udpbuf_put(&ub);
				return;
			}
			if (ub < 0 && (ub = udpbuf_get()) >= 0) {
				memcpy(UDPBUF(ub) + UB_HDR, hdr, (size_t)hlen);
				memcpy(UDPBUF(ub) + UB_DATA, data, len);
			}
			if (ub < 0) {
				udp_drop(s, "no UDP buffer free");
				return;
			}
			s->held = ub;
			s->held_len = (unsigned)len;
			s->to.udp.have = 0;
			memcpy(s->to.udp.name, d.name, (size_t)d.namelen + 1);
			lookup_ask(s);
			return;
		}
		fam = s->to.udp.fam;
		ip = s->to.udp.addr;
	} else {
		dfam = d.atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
		fam = addr_unmap(&dfam, d.addr);
		ip = d.addr;
	}
	alen = addr_make(&a, fam, ip, d.port);
	if (!family_permitted(fam))
		udp_drop(s, "address family not allowed");
	else if (rules_request(s, SOCKS5_CMD_UDP, fam, ip, d.port,
	    "datagram", LOG_DEBUG) == -1)
		udp_drop(s, "denied by a rule");
	else if ((fd = udp_outward(s, fam)) == -1)
		udp_drop(s, strerror(errno));
	else if (sendto(fd, data, len, 0, &a.sa, alen) == -1)
		udp_drop(s, strerror(errno));
	else {
		s->dgrams_up++;
		count_add(&s->up.bytes, (unsigned long)len);
	}
	udpbuf_put(&ub);	/* data may live in it: only now */
}

/* A lookup for a datagram came back: cache it, send what waited. */
static void
udp_resolved(struct session *s, const struct lookup_ans *a)
{
	int	 i, ub;

	s->to.udp.have = 0;
	for (i = 0; i < a->naddr && !s->to.udp.have; i++)
		if (family_permitted(a->afam[i])) {
			s->to.udp.fam = a->afam[i];
			memcpy(s->to.udp.addr, a->aaddr[i], 16);
			s->to.udp.have = 1;
		}
	ub = s->held;
	s->held = -1;
	if (ub < 0)
		return;
	if (!s->to.udp.have) {
		udp_drop(s, "cannot resolve");
		udpbuf_put(&ub);
		return;
	}
	udp_forward(s, UDPBUF(ub) + UB_HDR, UDPBUF(ub) + UB_DATA,
	    s->held_len, ub);
}

/* Give up a partial sequence. */
static void
reasm_abandon(struct session *s, const char *why)
{
	if (s->rbuf < 0)
		return;
	udp_drop(s, why);
	udpbuf_put(&s->rbuf);
}

/*
 * One fragment (FRAG 1..127, 0x80 marks the last). A sequence starts at
 * position 1 and goes up by one, to one destination; a lower or equal
 * position abandons it (RFC 1928: "less than the highest"), and so does
 * a gap, which means one was lost. The last one sends the whole.
 */
static void
reasm_add(struct session *s, const unsigned char *p, size_t n, int hlen)
{
	int	 pos = p[2] & 0x7f, last = p[2] & 0x80;
	size_t	 dlen = n - (size_t)hlen;

	if (s->rbuf >= 0 && (pos != s->rfrag + 1 ||
	    memcmp(UDPBUF(s->rbuf) + UB_HDR, p + 3, (size_t)hlen - 3) != 0))
		reasm_abandon(s, "fragment out of sequence");
	if (s->rbuf < 0) {
		if (pos != 1) {
			udp_drop(s, "fragment without its sequence");
			return;
		}
		if ((s->rbuf = udpbuf_get()) < 0) {
			if (!srv.udp_full_logged)
				logmsg(LOG_NOTICE, "udp: no reassembly buffer "
				    "free, dropping sequences");
			srv.udp_full_logged = 1;
			udp_drop(s, "no reassembly buffer free");
			return;
		}
		memcpy(UDPBUF(s->rbuf) + UB_HDR, p + 3, (size_t)hlen - 3);
		s->rlen = 0;
		s->rdeadline = srv.now + (unsigned long)srv.conf.frag_timeout * 1000UL;
	}
	if (s->rlen + dlen > UDP_DATA_MAX) {
		reasm_abandon(s, "sequence too long");
		return;
	}
	memcpy(UDPBUF(s->rbuf) + UB_DATA + s->rlen, p + hlen, dlen);
	s->rlen += (unsigned)dlen;
	s->rfrag = (unsigned char)pos;
	if (last) {
		int	 ub = s->rbuf;

		s->rbuf = -1;
		udp_forward(s, UDPBUF(ub) + UB_HDR, UDPBUF(ub) + UB_DATA,
		    s->rlen, ub);
	}
}

/* Datagrams from the client: check the source, parse, forward. */
static void
udp_from_client(struct session *s)
{
	union {
		struct sockaddr_storage	 ss;
		union sockaddr_any	 a;
	} src;
	struct request	 h;
	socklen_t	 slen;
	ssize_t		 n;
	int		 i, hlen;

	for (i = 0; i < SOCKS5_UDP_BATCH; i++) {
		slen = sizeof(src);
		n = recvfrom(s->fd[FD_UDP], scratch, UB_DATA + UDP_DATA_MAX,
		    0, &src.a.sa, &slen);
		if (n < 0) {
			if (AGAIN(errno))
				return;
			continue;
		}
		if (!udp_from_client_ok(s, &src.a)) {
			udp_drop(s, "not from the client");
			continue;
		}
		if (gss_udp_open(scratch, &n) == -1) {
			udp_drop(s, "gssapi: not a valid wrapped datagram");
			continue;
		}
		s->uport = (unsigned short)sa_port(&src.a);
		session_touch(s);
		if ((hlen = udp_parse(scratch, (size_t)n, &h)) < 0) {
			udp_drop(s, "malformed header");
			continue;
		}
		if (h.frag == 0)
			udp_forward(s, scratch + 3, scratch + hlen,
			    (size_t)n - (size_t)hlen, -1);
		else
			reasm_add(s, scratch, (size_t)n, hlen);
	}
}

/* Datagrams from the world: prefix the header, send to the client. */
static void
udp_from_remote(struct session *s, int fd)
{
	union {
		struct sockaddr_storage	 ss;
		union sockaddr_any	 a;
	} src;
	union sockaddr_any	 to;
	socklen_t		 slen;
	ssize_t			 n;
	size_t			 hlen, len;
	const unsigned char	*p;
	unsigned char		 hdr[22];
	int			 i;

	for (i = 0; i < SOCKS5_UDP_BATCH; i++) {
		slen = sizeof(src);
		n = recvfrom(fd, scratch + sizeof(hdr), UDP_DATA_MAX, 0,
		    &src.a.sa, &slen);
		if (n < 0) {
			if (AGAIN(errno))
				return;
			continue;
		}
		if (s->uport == 0) {
			udp_drop(s, "client port not known yet");
			continue;
		}
		hdr[0] = hdr[1] = hdr[2] = 0;
		hlen = 3 + socksaddr_build(hdr + 3, &src.a);
		p = scratch + sizeof(hdr) - hlen;
		memcpy(scratch + sizeof(hdr) - hlen, hdr, hlen);
		len = hlen + (size_t)n;
		if (gss_udp_seal(&p, &len) == -1) {
			udp_drop(s, "gssapi: cannot wrap it");
			continue;
		}
		to = s->peer;
		sa_set_port(&to, s->uport);
		if (sendto(s->fd[FD_UDP], p, len, 0, &to.sa,
		    sa_len(&to)) == -1) {
			udp_drop(s, strerror(errno));
			continue;
		}
		s->dgrams_down++;
		count_add(&s->down.bytes, (unsigned long)n);
		session_touch(s);
	}
}

/*
 * S_UDP: the association is up. Its TCP connection carries nothing more
 * and only says, by closing, when the association ends.
 */
static void
udp_events(const struct session *s, short *ev)
{
	(void)s;
	ev[FD_CLIENT] |= POLLIN;
	ev[FD_UDP] |= POLLIN;
	ev[FD_UDP4] |= POLLIN;
	ev[FD_UDP6] |= POLLIN;
}

static void
st_udp(struct session *s, const int *rev)
{
	ssize_t	 n;

	if (rev[FD_CLIENT] & READY_IN) {
		n = read(s->fd[FD_CLIENT], scratch, SOCKS5_BUFSIZE);
		if (n == 0 || (n < 0 && !AGAIN(errno))) {
			session_end(s, s->result);
			return;
		}
	}
	if (rev[FD_UDP] & READY_IN)
		udp_from_client(s);
	if (rev[FD_UDP4] & READY_IN)
		udp_from_remote(s, s->fd[FD_UDP4]);
	if (rev[FD_UDP6] & READY_IN)
		udp_from_remote(s, s->fd[FD_UDP6]);
}

/* S_UDP's own timers: a sequence's reassembly, a datagram's lookup. */
static void
udp_timers_run(struct session *s)
{
	if (s->rbuf >= 0 && DUE(s->rdeadline, srv.now))
		reasm_abandon(s, "reassembly timer expired");
	if (s->lookup_id != 0 && DUE(s->lookup_deadline, srv.now)) {
		lookup_cancel(s);
		udpbuf_put(&s->held);
		udp_drop(s, "lookup timed out");
	}
}

/* The earlier of *first and S_UDP's own timers, into *first. */
static void
udp_timers_next(const struct session *s, unsigned long *first)
{
	if (s->rbuf >= 0 && DUE(s->rdeadline, *first))
		*first = s->rdeadline;
	if (s->lookup_id != 0 && DUE(s->lookup_deadline, *first))
		*first = s->lookup_deadline;
}
#endif /* WITH_UDP */

/* ------------------------------------------------------------------ */
/* Relay: S_RELAY, both flows, back-pressure and half-close.           */

/* Write f's spill buffer to dst; -1 when the sink is gone. */
static int
flow_flush(struct flow *f, int dst)
{
	ssize_t	 n;

	while (f->len > 0) {
		n = write(dst, f->data + f->off, f->len);
		if (n < 0) {
			if (AGAIN(errno))
				return 0;
			return -1;
		}
		f->off += (unsigned)n;
		f->len -= (unsigned)n;
		count_add(&f->bytes, (unsigned long)n);
	}
	buf_put(f);
	f->full = 0;
	return 0;
}

/*
 * Read from src and write straight to dst through the scratch buffer.
 * What dst does not take goes to a spill buffer, and src is not read
 * again until that drains. When the pool is empty the data is only
 * peeked, then consumed as far as dst took it: nothing is ever lost.
 * Returns -1 when the session must end, 1 when something moved.
 */
static int
flow_pump(struct flow *f, int src, int dst)
{
	ssize_t	 n, w;
	int	 round, peek, moved = 0;

	for (round = 0; round < SOCKS5_PUMP_ROUNDS; round++) {
		peek = srv.npoolfree == 0;
		if (peek)
			n = recv(src, scratch, SOCKS5_BUFSIZE, MSG_PEEK);
		else
			n = read(src, scratch, SOCKS5_BUFSIZE);
		if (n == 0) {
			f->eof = 1;
			return 1;
		}
		if (n < 0)
			return AGAIN(errno) ? moved : -1;
		w = write(dst, scratch, (size_t)n);
		if (w < 0) {
			if (!AGAIN(errno))
				return -1;
			w = 0;
		}
		count_add(&f->bytes, (unsigned long)w);
		if (peek && w > 0)
			(void)recv(src, scratch, (size_t)w, 0);
		if (w < n) {
			f->full = 1;
			if (!peek) {
				f->buf = buf_get();
				f->data = BUF(f->buf);
				memcpy(f->data, scratch + w, (size_t)(n - w));
				f->off = 0;
				f->len = (unsigned)(n - w);
			}
			return 1;
		}
		moved = 1;
		if (n < SOCKS5_BUFSIZE)
			break;
	}
	return 1;
}

/*
 * dropbear's check_close(): shut each sink once its source ended; 1 when
 * both are, and the session ends. When the remote's is the last, closing
 * it (the remote socket is ours alone) sends that FIN: no shutdown().
 */
static int
relay_check_close(struct session *s)
{
	int	 down_done = s->down.eof && s->down.len == 0;

	if (s->up.eof && s->up.len == 0 && !s->up.shut) {
		if (!down_done)
			(void)shutdown(s->fd[FD_REMOTE], SHUT_WR);
		s->up.shut = 1;
	}
	if (down_done && !s->down.shut) {
		client_shutdown(s);
		s->down.shut = 1;
	}
	return s->up.shut && s->down.shut;
}

/*
 * S_RELAY: connected and answered (the reply may still be queued, and
 * the remote's data waits for it). A flow with pending data is written
 * first; a source is read only when its flow has nothing pending, and
 * the remote only when no reply waits ahead of its data. These four
 * conditions decide both what is polled for and what is done.
 */
static int
up_pending(const struct session *s)
{
	return s->up.full;
}

static int
down_pending(const struct session *s)
{
	return s->down.full && s->outlen == 0;
}

static int
up_readable(const struct session *s)
{
	return !s->up.eof && !s->up.full;
}

static int
down_readable(const struct session *s)
{
	return !s->down.eof && !s->down.full && s->outlen == 0;
}

static void
relay_events(const struct session *s, short *ev)
{
	if (up_readable(s))
		ev[FD_CLIENT] |= POLLIN;
	if (up_pending(s))
		ev[FD_REMOTE] |= POLLOUT;
	if (down_readable(s))
		ev[FD_REMOTE] |= POLLIN;
	if (down_pending(s))
		ev[FD_CLIENT_OUT] |= POLLOUT;
}

static void
st_relay(struct session *s, const int *rev)
{
	int	 r;

	if ((rev[FD_REMOTE] & READY_OUT) && up_pending(s)) {
		if (flow_flush(&s->up, s->fd[FD_REMOTE]) == -1) {
			session_end(s, "remote-gone");
			return;
		}
		s->up.full = s->up.len > 0;
	}
	if ((rev[FD_CLIENT_OUT] & READY_OUT) && down_pending(s)) {
		if (flow_flush(&s->down, s->fd[FD_CLIENT_OUT]) == -1) {
			session_end(s, "client-gone");
			return;
		}
		s->down.full = s->down.len > 0;
	}
	if ((rev[FD_CLIENT] & READY_IN) && up_readable(s)) {
		r = flow_pump(&s->up, s->fd[FD_CLIENT], s->fd[FD_REMOTE]);
		if (r == -1) {
			session_end(s, "error");
			return;
		}
		if (r > 0)
			session_touch(s);
	}
	if ((rev[FD_REMOTE] & READY_IN) && down_readable(s)) {
		r = flow_pump(&s->down, s->fd[FD_REMOTE],
		    s->fd[FD_CLIENT_OUT]);
		if (r == -1) {
			session_end(s, "error");
			return;
		}
		if (r > 0)
			session_touch(s);
	}
	if (relay_check_close(s))
		session_end(s, s->result);
}

/* S_RELAY, S_UDP: nothing moved for -t seconds. */
static void
idle_expired(struct session *s)
{
	session_end(s, "idle-timeout");
}

/* ------------------------------------------------------------------ */
/* Closing states.                                                     */

/* S_CLOSING: a final reply was queued in out; session_run flushes it. */
static void
st_closing(struct session *s, const int *rev)
{
	(void)rev;
	if (s->outlen == 0)
		linger_start(s);
}

/* S_LINGER: reply sent, write side shut; read and drop until EOF. */
static void
st_linger(struct session *s, const int *rev)
{
	ssize_t	 n;

	if (!(rev[FD_CLIENT] & READY_IN))
		return;
	n = read(s->fd[FD_CLIENT], scratch, sizeof(scratch));
	if (n == 0 || (n < 0 && !AGAIN(errno)))
		session_end(s, s->result);
}

/* S_CLOSING, S_LINGER: the client did not take or end it in time. */
static void
closing_expired(struct session *s)
{
	session_end(s, s->result);
}

/* ------------------------------------------------------------------ */
/* The loop: the table of states; build the poll set from each        */
/* session's state, poll, then run each session's handler with what    */
/* happened; expire deadlines; accept clients; signals and status.     */

/*
 * The states, one row each, in the order of enum state: the deadline
 * set on entry and the state it runs on from, what the state polls
 * for, its handler, and what it does when its deadline passes.
 */
static const struct state_info states[NSTATES] = {
	/* S_FREE */
	{ T_NONE, S_FREE, NULL, NULL, NULL },
	/* S_GREETING */
	{ T_HANDSHAKE, S_GREETING, client_read_events, st_handshake,
	    handshake_expired },
	/* S_AUTH: within the greeting's time */
	{ T_HANDSHAKE, S_GREETING, client_read_events, st_handshake,
	    handshake_expired },
	/* S_REQUEST: within the greeting's, or anew after a login */
	{ T_HANDSHAKE, S_GREETING, client_read_events, st_handshake,
	    handshake_expired },
	/* S_RESOLVE: the request starts the time to connect */
	{ T_HANDSHAKE, S_RESOLVE, waiting_events, st_waiting,
	    resolve_expired },
	/* S_CONNECT: within the lookup's time, if there was one */
	{ T_HANDSHAKE, S_RESOLVE, connect_events, st_connect, ttl_expired },
	/* S_BIND_WAIT (never entered without BIND) */
#if WITH_BIND
	{ T_BIND, S_BIND_WAIT, bind_wait_events, st_bind_wait, ttl_expired },
#else
	{ T_NONE, S_BIND_WAIT, NULL, NULL, NULL },
#endif
	/* S_RELAY */
	{ T_IDLE, S_RELAY, relay_events, st_relay, idle_expired },
	/* S_UDP (never entered without UDP) */
#if WITH_UDP
	{ T_IDLE, S_UDP, udp_events, st_udp, idle_expired },
#else
	{ T_NONE, S_UDP, NULL, NULL, NULL },
#endif
	/* S_AUTH_WAIT (never entered without logins) */
#if WITH_AUTH
	{ T_PACED, S_AUTH_WAIT, waiting_events, st_waiting,
	    auth_wait_expired },
#else
	{ T_NONE, S_AUTH_WAIT, NULL, NULL, NULL },
#endif
	/* S_CLOSING: only its reply is written */
	{ T_LINGER, S_CLOSING, NULL, st_closing, closing_expired },
	/* S_LINGER */
	{ T_LINGER, S_LINGER, client_read_events, st_linger, closing_expired },
	/* S_DONE */
	{ T_NONE, S_DONE, NULL, NULL, NULL }
};

/* The row of state st (state_enter() comes before the table). */
static const struct state_info *
state_row(enum state st)
{
	return &states[st];
}

/* What each of a session's descriptors waits for, as its state says. */
static void
session_events(const struct session *s, short *ev)
{
	int	 i;

	for (i = 0; i < NFD; i++)
		ev[i] = 0;
	if (s->outlen > 0)
		ev[FD_CLIENT_OUT] |= POLLOUT;
	if (states[s->state].events != NULL)
		states[s->state].events(s, ev);
}

static int
pfd_add(int fd, short events)
{
	if (fd < 0 || events == 0)
		return -1;
	srv.pfd[srv.npfd].fd = fd;
	srv.pfd[srv.npfd].events = events;
	srv.pfd[srv.npfd].revents = 0;
	return srv.npfd++;
}

/*
 * A worker (-w) with no room for a client leaves new ones to the other
 * workers instead of refusing them; when all are full they wait in the
 * listen backlog. A single server refuses them (clients_accept).
 */
static int
worker_full(void)
{
	return srv.worker > 0 && (srv.nfree == 0 || fd_room() < 2);
}

/* Fill the poll set; returns the poll timeout in ms. */
static int
poll_build(void)
{
	struct session	*s;
	unsigned long	 first = 0;
	int		 i, k, have = 0;
	short		 ev[NFD];

	srv.npfd = srv.npolled = 0;
	srv.pi_sig = pfd_add(sig_pipe[0], POLLIN);
	srv.pi_life = pfd_add(srv.lifeline[0], POLLIN);
	for (i = 0; i < srv.nresolvers; i++)
		srv.helpers[i].pi = pfd_add(srv.helpers[i].fd, POLLIN);
	for (i = 0; i < srv.nls; i++)
		srv.ls[i].pi = srv.listen_paused || worker_full() ? -1 :
		    pfd_add(srv.ls[i].fd, POLLIN);
	for (i = 0; i < srv.nactive; i++) {
		s = &srv.sess[srv.active[i]];
		session_events(s, ev);
		if (s->fd[FD_CLIENT_OUT] == s->fd[FD_CLIENT]) {
			ev[FD_CLIENT] |= ev[FD_CLIENT_OUT];
			ev[FD_CLIENT_OUT] = 0;
		}
		for (k = 0; k < NFD; k++)
			s->pi[k] = pfd_add(s->fd[k], ev[k]);
		if (s->fd[FD_CLIENT_OUT] == s->fd[FD_CLIENT])
			s->pi[FD_CLIENT_OUT] = s->pi[FD_CLIENT];
		srv.polled[srv.npolled++] = srv.active[i];
		if (!have || DUE(s->deadline, first))
			first = s->deadline;
#if WITH_UDP
		if (s->state == S_UDP)
			udp_timers_next(s, &first);
#endif
		have = 1;
	}
	if (srv.listen_paused && (!have || DUE(srv.listen_resume, first))) {
		first = srv.listen_resume;
		have = 1;
	}
#if WITH_AUTH
	authpace_next(&first, &have);
#endif
	lookups_next(&first, &have);
	gss_pump_events(&first, &have);
	if (srv.inline_ready)
		return 0;		/* an answer to give: no waiting */
	if (!have)
		return -1;
	if (DUE(first, srv.now))
		return 0;
	return first - srv.now > 86400000UL ? 86400000 : (int)(first - srv.now);
}

/*
 * Run the handler of s's state with its descriptors' events. A queued
 * handshake reply is flushed first, whatever the state.
 */
static void
session_run(struct session *s)
{
	int	 rev[NFD], i, any = 0;

	for (i = 0; i < NFD; i++) {
		rev[i] = s->pi[i] >= 0 ? srv.pfd[s->pi[i]].revents : 0;
		any |= rev[i];
	}
	if (any & POLLNVAL) {
		session_end(s, "bad-descriptor");
		return;
	}
	if (s->outlen > 0 && (rev[FD_CLIENT_OUT] & READY_OUT) &&
	    reply_flush(s) == -1) {
		session_end(s, s->state == S_CLOSING ? s->result :
		    "client-gone");
		return;
	}
	if (states[s->state].run != NULL)
		states[s->state].run(s, rev);
}

/* Deadlines: each state's, and UDP's own timers. */
static void
sessions_expire(void)
{
	struct session	*s;
	int		 i;

	for (i = 0; i < srv.nactive; i++) {
		s = &srv.sess[srv.active[i]];
#if WITH_UDP
		if (s->state == S_UDP)
			udp_timers_run(s);
#endif
		if (!DUE(s->deadline, srv.now) ||
		    states[s->state].expire == NULL)
			continue;
		states[s->state].expire(s);
		if (s->state == S_DONE) {
			session_free(s);
			i--;
		}
	}
}

/*
 * The loop did not run for longer than any deadline can be away (see
 * clock_update): every stored time has passed, whatever a wrapped
 * difference would say, so each is made due now.
 */
static void
deadlines_passed(void)
{
	struct session	*s;
	int		 i;

	for (i = 0; i < srv.nactive; i++) {
		s = &srv.sess[srv.active[i]];
		s->deadline = s->rdeadline = s->lookup_deadline = srv.now;
	}
#if WITH_AUTH
	for (i = 0; i < SOCKS5_AUTH_TRACK; i++)
		srv.authpace[i].gate = srv.now;
#endif
	srv.listen_resume = srv.now;
	srv.last_reap = srv.now - 1000UL;
}

/* Refuse a client we cannot hold: 05 FF if it can take it, then close. */
static void
refuse(int fd)
{
	static const unsigned char no[2] = { SOCKS5_VERSION, 0xff };

	(void)set_nonblock_new(fd);
	unchecked((long)read(fd, scratch, SOCKS5_BUFSIZE)); /* no RST */
	unchecked((long)write(fd, no, 2));
	(void)close(fd);
}

/*
 * Out of descriptors: close the spare one to accept a client and refuse
 * it, so that it hears no at once instead of hanging in the backlog.
 * Returns 0 when one was refused and the spare is back, else -1.
 */
static int
refuse_one(int lfd)
{
	int	 fd, err;

	close_fd(&srv.spare_fd);
	fd = accept(lfd, NULL, NULL);
	err = errno;
	if (fd >= 0)
		refuse(fd);
	srv.spare_fd = open("/dev/null", O_RDONLY);
	if (!srv.full_logged)
		logmsg(LOG_WARNING, "warning: out of descriptors, refusing "
		    "clients");
	srv.full_logged = 1;
	errno = err;
	return fd >= 0 && srv.spare_fd >= 0 ? 0 : -1;
}

/*
 * A listener is readable: take its clients until it has none (a worker
 * sharing it with the others takes one, and leaves them the rest).
 */
static void
clients_accept(struct listener *l)
{
	struct session	*s;
	union {
		struct sockaddr_storage	 ss;
		struct sockaddr		 sa;
	} peer;
	socklen_t	 plen;
	int		 fd, lfd = l->fd, taken = 0;

	while (!worker_full() && !(l->shared && taken++ > 0)) {
		plen = sizeof(peer);
		fd = accept_new(lfd, &peer.sa, &plen);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EPROTO)
				continue;
			if (AGAIN(errno))
				return;
			if ((errno == EMFILE || errno == ENFILE) &&
			    srv.spare_fd >= 0) {
				if (refuse_one(lfd) == 0)
					continue;
				if (AGAIN(errno))
					return;
			}
			logmsg(LOG_WARNING, "warning: accept: %s",
			    strerror(errno));
			srv.listen_paused = 1;
			srv.listen_resume = srv.now + 1000;
			return;
		}
		if (srv.nfree == 0 || fd_room() < 2) {
			if (!srv.full_logged && srv.nfree == 0)
				logmsg(LOG_WARNING, "session table full (%d), "
				    "refusing clients", srv.nsess);
			else if (!srv.full_logged)
				logmsg(LOG_WARNING, "descriptor limit %ld "
				    "reached with %d sessions, refusing "
				    "clients", srv.fd_limit, srv.nactive);
			srv.full_logged = 1;
			refuse(fd);
			continue;
		}
		if (client_denied(&peer.sa, plen)) {
			refuse(fd);
			continue;
		}
		set_nodelay(fd);
		/* This pass may have begun long ago: time= counts from now. */
		clock_update();
		/* The greeting often came with the connection: read it now. */
		if ((s = session_new(fd, fd, &peer.sa, plen)) != NULL) {
			client_input(s);
			if (s->state == S_DONE)
				session_free(s);
		}
	}
}

/* Signals only set flags and poke the self-pipe. */
static void
on_signal(int sig)
{
	int	 saved = errno;

	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
	else if (sig == SIGUSR1)
		got_status = 1;
#ifdef SIGINFO
	else if (sig == SIGINFO)
		got_status = 1;
#endif
#ifdef SOCKS5_TEST_CLOCK
	else if (sig == SIGUSR2)
		clock_jumps++;
#endif
	else
		got_term = 1;
	if (sig_pipe[1] >= 0)
		unchecked((long)write(sig_pipe[1], "", 1));
	errno = saved;
}

static void
signals_drain(void)
{
	while (read(sig_pipe[0], scratch, sizeof(scratch)) > 0)
		;
}

/*
 * The operator's status line (SIGUSR1, and SIGINFO where there is one):
 * sessions by state, free buffers, lookups, descriptors and helpers. An
 * idle server shows the same line as it did right after it started.
 */
static void
status_log(void)
{
	int	 n[NSTATES], i, resolving = 0;

	for (i = 0; i < NSTATES; i++)
		n[i] = 0;
	for (i = 0; i < srv.nactive; i++) {
		n[srv.sess[srv.active[i]].state]++;
		if (srv.sess[srv.active[i]].lookup_id != 0 && !srv.sess[srv.active[i]].queued)
			resolving++;
	}
	logmsg(LOG_NOTICE, "status sessions=%d/%d greeting=%d auth=%d "
	    "request=%d authwait=%d resolve=%d connect=%d bind=%d relay=%d "
	    "udp=%d closing=%d spill=%d/%d udpbufs=%d/%d queued=%d "
	    "resolving=%d fds=%ld/%ld helpers=%d/%d", srv.nactive, srv.nsess,
	    n[S_GREETING], n[S_AUTH], n[S_REQUEST], n[S_AUTH_WAIT],
	    n[S_RESOLVE], n[S_CONNECT], n[S_BIND_WAIT], n[S_RELAY], n[S_UDP],
	    n[S_CLOSING] + n[S_LINGER], srv.npoolfree, srv.npool,
	    srv.nudpfree, srv.nudp, srv.nqueued, resolving,
	    fd_count(fd_limit_get()), fd_limit_get(),
	    resolvers_alive(), srv.nresolvers);
	gss_status_log();
}

/* Did poll report anything for entry i of the set? */
static int
ready(int i)
{
	return i >= 0 && srv.pfd[i].revents != 0;
}

/* After poll: run every session that has events, then the rest. */
static void
loop_dispatch(void)
{
	struct session	*s;
	int		 i;

	clock_update();
	if (got_hup) {
		got_hup = 0;
#if WITH_AUTH
		if (srv.conf.user_file != NULL)
			(void)users_load(0);
#endif
	}
	if (got_status) {
		got_status = 0;
		status_log();
	}
	if (!got_term && (got_chld || srv.now - srv.last_reap >= 1000UL)) {
		got_chld = 0;
		srv.last_reap = srv.now;
		resolvers_reap();
		gss_reap();
	}
	resolvers_retire();
	gss_pump_run();			/* before its session, which it feeds */
	for (i = 0; i < srv.npolled; i++) {
		s = &srv.sess[srv.polled[i]];
		if (s->state == S_FREE)
			continue;
		session_run(s);
		if (s->state == S_DONE)
			session_free(s);
	}
	lookup_answers_read();
	lookups_dispatch();
	if (ready(srv.pi_sig))
		signals_drain();
	if (ready(srv.pi_life)) {
		if (srv.worker > 0)
			logmsg(LOG_ERR, "worker %d: the supervisor is gone: "
			    "stopping", srv.worker);
		else		/* a GSS-API session's process */
			logmsg(LOG_ERR, "gssapi: the server is gone: stopping");
		got_term = 1;
	}
	if (srv.listen_paused && DUE(srv.listen_resume, srv.now))
		srv.listen_paused = 0;
	else
		for (i = 0; i < srv.nls && !srv.listen_paused; i++)
			if (ready(srv.ls[i].pi))
				clients_accept(&srv.ls[i]);
#if WITH_AUTH
	authpace_run();
#endif
	sessions_expire();
}

/* One pass of our own loop. */
static int
loop_once(void)
{
	int	 n, timeout;

	timeout = poll_build();		/* before npfd is read */
	n = poll(srv.pfd, (nfds_t)srv.npfd, timeout);
	if (n < 0 && errno != EINTR) {
		logmsg(LOG_ERR, "fatal: poll: %s", strerror(errno));
		return -1;
	}
	loop_dispatch();
	return 0;
}

/* ------------------------------------------------------------------ */
/* Startup: tables, listener, descriptor limit, privileges, daemon.    */

/* A server with nothing open and nothing allocated. */
static void
server_init(void)
{
	memset(&srv, 0, sizeof(srv));
	srv.spare_fd = -1;
	srv.ready_fd = srv.pid_fd = -1;
	srv.pi_sig = srv.pi_life = -1;
	srv.lifeline[0] = srv.lifeline[1] = -1;
}

static void
tables_free(void)
{
	free(srv.tables);
	free(srv.users[0]);
	free(srv.users[1]);
	srv.tables = NULL;
	srv.sess = NULL;
	srv.freelist = srv.active = srv.polled = NULL;
	srv.pfd = NULL;
	srv.pool = srv.udpbufs = NULL;
	srv.poolfree = srv.udpfree = NULL;
	srv.users[0] = srv.users[1] = NULL;
	srv.nsess = srv.nactive = srv.npolled = srv.npfd = 0;
}

/* Room for n objects of size each, at an offset every type may take. */
#define TABLE_ALIGN	16
#define TABLE_SIZE(n, size) \
	((((size_t)(n) * (size)) + TABLE_ALIGN - 1) & ~(size_t)(TABLE_ALIGN - 1))

/* The next n objects of size each from the block at *at. */
static void *
table_carve(unsigned char **at, size_t n, size_t size)
{
	void	*p = *at;

	*at += TABLE_SIZE(n, size);
	return p;
}

/*
 * Every table and buffer in one allocation: one block that large comes
 * straight from the system as zero pages, which stay untouched (and take
 * no memory) until a session or a buffer first uses them.
 */
static int
tables_alloc(int maxsess, int nspill, int nudpbuf)
{
	unsigned char	*at;
	size_t		 npfd = (size_t)maxsess * NFD + PFD_OWN, total;
	int		 i;

	srv.nsess = maxsess;
	srv.npool = nspill;
	srv.nudp = nudpbuf;
	srv.nactive = srv.npolled = srv.npfd = srv.nqueued = 0;
	/* the spill pool may come near the address space (pool_fits) */
	total = TABLE_SIZE(maxsess, sizeof(*srv.sess)) +
	    3 * TABLE_SIZE(maxsess, sizeof(int)) +
	    TABLE_SIZE(npfd, sizeof(*srv.pfd)) +
	    TABLE_SIZE(nspill, sizeof(int)) +
	    TABLE_SIZE(nudpbuf, UB_SIZE) +
	    TABLE_SIZE(nudpbuf, sizeof(int));
	if (total > (size_t)-1 - TABLE_SIZE(nspill, SOCKS5_BUFSIZE))
		return -1;
	total += TABLE_SIZE(nspill, SOCKS5_BUFSIZE);
	if ((srv.tables = (unsigned char *)calloc(1, total)) == NULL)
		return -1;
	/* the free lists, written now, first and together */
	at = srv.tables;
	srv.freelist = (int *)table_carve(&at, (size_t)maxsess, sizeof(int));
	srv.poolfree = (int *)table_carve(&at, (size_t)nspill, sizeof(int));
	srv.udpfree = (int *)table_carve(&at, (size_t)nudpbuf, sizeof(int));
	srv.active = (int *)table_carve(&at, (size_t)maxsess, sizeof(int));
	srv.polled = (int *)table_carve(&at, (size_t)maxsess, sizeof(int));
	srv.pfd = (struct pollfd *)table_carve(&at, npfd, sizeof(*srv.pfd));
	srv.sess = (struct session *)table_carve(&at, (size_t)maxsess,
	    sizeof(*srv.sess));
	srv.pool = (unsigned char *)table_carve(&at, (size_t)nspill,
	    SOCKS5_BUFSIZE);
	srv.udpbufs = (unsigned char *)table_carve(&at, (size_t)nudpbuf,
	    UB_SIZE);
	for (i = 0; i < srv.nudp; i++)
		srv.udpfree[i] = srv.nudp - 1 - i;
	srv.nudpfree = srv.nudp;
	/*
	 * The table stays untouched (calloc's zeros: S_FREE) until a
	 * slot is first used, so an idle server's memory holds no entries.
	 */
	for (i = 0; i < maxsess; i++)
		srv.freelist[i] = maxsess - 1 - i;
	srv.nfree = maxsess;
	for (i = 0; i < srv.npool; i++)
		srv.poolfree[i] = srv.npool - 1 - i;
	srv.npoolfree = srv.npool;
#if WITH_AUTH
	if (srv.conf.user_file != NULL) {
		srv.users[0] = (struct user *)calloc(SOCKS5_MAXUSERS,
		    sizeof(struct user));
		srv.users[1] = (struct user *)calloc(SOCKS5_MAXUSERS,
		    sizeof(struct user));
		if (!srv.users[0] || !srv.users[1])
			return -1;
	}
#endif
	return 0;
}

/* A port as -l writes it after the address: 0..65535, digits only. */
static long
port_parse(const char *s)
{
	long	 v = 0;
	int	 n = 0;

	for (; *s >= '0' && *s <= '9' && n < 6; s++, n++)
		v = v * 10 + (*s - '0');
	return n == 0 || *s != '\0' || v > 65535 ? -1 : v;
}

#define LISTEN_HOST	64	/* room for the address of an -l */

#define LISTEN_MAPPED	(-2)	/* listen_spec_parse(): ::ffff:a.b.c.d */

/*
 * A listen address as -l takes it: ADDR, ADDR:PORT or [ADDR]:PORT (an
 * IPv6 address with a port needs the brackets, and only it may have
 * them). Without a port: port. The address as given goes to host
 * (LISTEN_HOST bytes), for messages. -1 when spec is none of those;
 * LISTEN_MAPPED for an IPv4-mapped address, which a socket with
 * IPV6_V6ONLY cannot bind (EINVAL).
 */
static int
listen_spec_parse(union sockaddr_any *a, socklen_t *alen, char *host,
    const char *spec, int port)
{
	const char	*addr = spec, *end, *colon;
	long		 p = port;

	if (spec[0] == '[') {
		addr = spec + 1;
		if ((end = strchr(addr, ']')) == NULL ||
		    (end[1] != '\0' && end[1] != ':'))
			return -1;
		if (end[1] == ':' && (p = port_parse(end + 2)) < 0)
			return -1;
	} else if ((colon = strchr(spec, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		end = colon;			/* a.b.c.d:PORT */
		if ((p = port_parse(colon + 1)) < 0)
			return -1;
	} else
		end = spec + strlen(spec);	/* an address alone */
	if ((size_t)(end - addr) >= LISTEN_HOST)
		return -1;
	memcpy(host, addr, (size_t)(end - addr));
	host[end - addr] = '\0';
	if (addr_parse(a, alen, host, (int)p) == -1 ||
	    (addr != spec && a->sa.sa_family != AF_INET6))
		return -1;
	if (a->sa.sa_family == AF_INET6 &&
	    memcmp(&a->sin6.sin6_addr, v4mapped, 12) == 0)
		return LISTEN_MAPPED;
	return 0;
}

/* Where a listener is, for the log: its address, or what we know. */
static void
listener_name(struct listener *l)
{
	socklen_t	 alen = sizeof(l->sa);

	if (getsockname(l->fd, &l->sa.sa, &alen) == -1)
		memset(&l->sa, 0, sizeof(l->sa));
}

/*
 * A socket listening on a, or -1 (errno says why). With *spread, one of
 * several on that address among which the kernel spreads clients
 * (SO_SPREAD, for workers); *spread is 0 after when there is no such
 * thing, or the kernel refused it.
 */
static int
listen_socket(const union sockaddr_any *a, int *spread)
{
	int	 fd, one = 1, err;

	if ((fd = socket_new(a->sa.sa_family, SOCK_STREAM)) == -1)
		return -1;
#ifdef IPV6_V6ONLY
	/* "::" means IPv6 only, as on the BSDs: -l 0.0.0.0 -l :: for both */
	if (a->sa.sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
#endif
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
#ifdef SO_SPREAD
	if (*spread && setsockopt(fd, SOL_SOCKET, SO_SPREAD, &one,
	    sizeof(one)) == -1)
		*spread = 0;
#else
	*spread = 0;
#endif
	if (bind(fd, &a->sa, sa_len(a)) == -1 ||
	    listen(fd, SOCKS5_BACKLOG) == -1)
		goto fail;
	return fd;
fail:
	err = errno;
	(void)close(fd);
	errno = err;
	return -1;
}

/*
 * Is a's port free? Sockets that spread clients among workers share
 * their port with any later socket of the same user that asks to share
 * it: a second server started on that port would take half the
 * clients. A plain bind() first finds it taken (EADDRINUSE).
 */
static int
port_free(const union sockaddr_any *a)
{
	int	 fd, one = 1, r, err;

	if (sa_port(a) == 0 ||
	    (fd = socket(a->sa.sa_family, SOCK_STREAM, 0)) == -1)
		return 1;		/* the real bind() will tell */
#ifdef IPV6_V6ONLY
	if (a->sa.sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
		    sizeof(one));
#endif
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	r = bind(fd, &a->sa, sa_len(a));
	err = errno;
	(void)close(fd);
	errno = err;
	return r == 0 || err != EADDRINUSE;
}

/* Open a listener on spec (as -l takes it). */
static int
listener_open(const char *spec)
{
	struct listener		*l = &srv.ls[srv.nls];
	union sockaddr_any	 a;
	socklen_t		 alen;
	char			 host[LISTEN_HOST];
	int			 spread = srv.spread;

	if (listen_spec_parse(&a, &alen, host, spec, srv.conf.port) != 0) {
		logmsg(LOG_ERR, "fatal: bad listen address %s", spec);
		return -1;
	}
	if ((spread && !port_free(&a)) ||
	    (l->fd = listen_socket(&a, &spread)) == -1) {
		logmsg(LOG_ERR, "fatal: listen on %s port %u: %s", host,
		    sa_port(&a), strerror(errno));
		return -1;
	}
	l->inherited = 0;
	l->copy[0] = l->fd;
	l->ncopies = spread;		/* 1: the workers may get copies */
	srv.nls++;
	listener_name(l);
	return 0;
}

/*
 * Take over a socket the launcher listens on (systemd's LISTEN_FDS,
 * inetd's wait mode): it must be a stream socket, and listening.
 */
static int
listener_adopt(int fd)
{
	struct listener	*l = &srv.ls[srv.nls];
	socklen_t	 len;
	int		 type = 0;

	if (fcntl(fd, F_GETFD) == -1) {
		logmsg(LOG_ERR, "fatal: descriptor %d from the launcher is "
		    "not open", fd);
		return -1;
	}
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_STREAM) {
		logmsg(LOG_ERR, "fatal: descriptor %d from the launcher is "
		    "not a stream socket", fd);
		return -1;
	}
#ifdef SO_ACCEPTCONN
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &type, &len) == 0 &&
	    type == 0) {
		logmsg(LOG_ERR, "fatal: descriptor %d from the launcher is "
		    "not listening", fd);
		return -1;
	}
#endif
	l->fd = fd;
	l->inherited = 1;
	l->ncopies = 0;			/* the workers share it */
	srv.nls++;
	set_cloexec(fd);
	if (set_nonblock(fd) == -1) {
		logmsg(LOG_ERR, "fatal: descriptor %d: %s", fd,
		    strerror(errno));
		return -1;
	}
	listener_name(l);
	return 0;
}

/*
 * The listeners: the launcher's sockets when it passed some, else one
 * for each listen address (listen_addr when none are given).
 */
static int
listeners_open(void)
{
	int	 i;

	for (i = 0; i < srv.conf.nlisten_fds; i++)
		if (listener_adopt(srv.conf.listen_fds[i]) == -1)
			return -1;
	if (srv.conf.nlisten_fds > 0)
		return 0;
	if (srv.conf.nlisten == 0)
		return listener_open(srv.conf.listen_addr);
	for (i = 0; i < srv.conf.nlisten; i++)
		if (listener_open(srv.conf.listen[i]) == -1)
			return -1;
	return 0;
}

/* Close every listener (the launcher's too: they were handed to us). */
static void
listeners_close(void)
{
	struct listener	*l;
	int		 k;

	while (srv.nls > 0) {
		l = &srv.ls[--srv.nls];
		for (k = 1; k < l->ncopies; k++)
			close_fd(&l->copy[k]);
		l->ncopies = 0;
		close_fd(&l->fd);
	}
}

/*
 * For n workers: a socket of its own for each (copy[k]) on the address
 * of every listener that can have them; where that fails the workers
 * share the listener, as they do one from the launcher.
 */
static void
listeners_spread(int n)
{
	struct listener	*l;
	char		 buf[64];
	int		 i, k, spread;

	for (i = 0; i < srv.nls; i++) {
		l = &srv.ls[i];
		for (k = 1; k < n && l->ncopies == k; k++) {
			spread = 1;
			if ((l->copy[k] = listen_socket(&l->sa, &spread)) >= 0 &&
			    spread) {
				l->ncopies++;
				continue;
			}
			logmsg(LOG_WARNING, "warning: listen on %s: no socket "
			    "for each worker (%s): they share one",
			    addr_str(buf, sizeof(buf), &l->sa),
			    l->copy[k] < 0 ? strerror(errno) : "not spread");
			if (l->copy[k] >= 0)
				close_fd(&l->copy[k]);
			while (--k > 0)
				close_fd(&l->copy[k]);
			l->ncopies = 0;
		}
	}
}

/* In worker k (from 1): keep its own socket of each listener. */
static void
listeners_mine(int k)
{
	struct listener	*l;
	int		 i, j;

	for (i = 0; i < srv.nls; i++) {
		l = &srv.ls[i];
		l->shared = l->ncopies == 0;
		if (l->shared)
			continue;
		for (j = 0; j < l->ncopies; j++)
			if (j != k - 1 && l->copy[j] != l->fd)
				close_fd(&l->copy[j]);
		if (k - 1 != 0)
			close_fd(&l->fd);
		l->fd = l->copy[k - 1];
		l->ncopies = 0;
	}
}

/* Said last, when everything is up: tests and scripts wait for it. */
static void
listening_log(void)
{
	char	 buf[64];
	int	 i;

#ifdef SOCKS5_TEST_CLOCK
	logmsg(LOG_NOTICE, "test clock: %lu-bit, wraps in %lu ms",
	    (unsigned long)sizeof(unsigned long) * 8, 0UL - srv.now);
#endif
	for (i = 0; i < srv.nls && srv.conf.verbose > 0; i++)
		if (srv.ls[i].sa.sa.sa_family != AF_INET &&
		    srv.ls[i].sa.sa.sa_family != AF_INET6)	/* AF_UNIX */
			logmsg(LOG_INFO, "listening on descriptor %d (from the "
			    "launcher)", srv.ls[i].fd);
		else
			logmsg(LOG_INFO, "listening on %s%s",
			    addr_str(buf, sizeof(buf), &srv.ls[i].sa),
			    srv.ls[i].inherited ? " (from the launcher)" : "");
}

/*
 * Raise the descriptor limit to the hard limit, or as near as the system
 * lets it go (fd_budget_start warns when that is short).
 */
static void
fdlimit_raise(void)
{
	struct rlimit	 rl;
	rlim_t		 ok, no, mid;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= rl.rlim_max)
		return;
	ok = rl.rlim_cur;
	no = rl.rlim_max;
	rl.rlim_cur = no;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return;
	/*
	 * Refused: macOS takes at most OPEN_MAX (kern.maxfilesperproc)
	 * under an infinite hard limit. Find the largest value it takes.
	 */
	while (no - ok > 1) {
		mid = ok + (no - ok) / 2;
		rl.rlim_cur = mid;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			ok = mid;
		else
			no = mid;
	}
	rl.rlim_cur = ok;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

static int
privileges_drop(const char *name)
{
	struct passwd	*pw;
	gid_t		 gid;

	if ((pw = getpwnam(name)) == NULL) {
		logmsg(LOG_ERR, "fatal: no such user %s", name);
		return -1;
	}
	if (geteuid() != 0) {
		logmsg(LOG_ERR, "fatal: -U %s needs root", name);
		return -1;
	}
	gid = pw->pw_gid;
	if (setgroups(1, &gid) == -1 || setgid(gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		logmsg(LOG_ERR, "fatal: cannot become %s: %s", name,
		    strerror(errno));
		return -1;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		logmsg(LOG_ERR, "fatal: still root after dropping to %s", name);
		return -1;
	}
	return 0;
}

/*
 * Go to the background. The parent waits until the child says it is
 * ready (daemon_ready) and exits 0, or exits 1 if the child fails first.
 */
static int
daemonize(void)
{
	char	 c;
	int	 fd, p[2];

	if (pipe(p) == -1)
		return -1;
	switch (fork()) {
	case -1:
		return -1;
	case 0:
		break;
	default:
		(void)close(p[1]);
		c = 0;
		while (read(p[0], &c, 1) == -1 && errno == EINTR)
			;
		_exit(c == 'r' ? 0 : 1);
	}
	(void)close(p[0]);
	srv.ready_fd = p[1];
	set_cloexec(srv.ready_fd);
	if (setsid() == -1)
		return -1;
	unchecked((long)chdir("/"));
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		(void)dup2(fd, 0);
		(void)dup2(fd, 1);
		(void)dup2(fd, 2);
		if (fd > 2)
			(void)close(fd);
	}
	return 0;
}

/* Tell a waiting parent (-d) that startup went well. */
static void
daemon_ready(void)
{
	if (srv.ready_fd >= 0)
		unchecked((long)write(srv.ready_fd, "r", 1));
	close_fd(&srv.ready_fd);
}

/* The pid file stays open, so it can be emptied if -U forbids unlink. */
static int
pidfile_write(const char *path)
{
	char	 buf[32];
	int	 n;

	srv.pid_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (srv.pid_fd == -1) {
		logmsg(LOG_ERR, "fatal: %s: %s", path, strerror(errno));
		return -1;
	}
	set_cloexec(srv.pid_fd);
	n = sprintf(buf, "%ld\n", (long)getpid());
	if (write(srv.pid_fd, buf, (size_t)n) != n) {
		logmsg(LOG_ERR, "fatal: %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void
pidfile_remove(const char *path)
{
	if (srv.pid_fd < 0)
		return;
	if (unlink(path) == -1)
		unchecked((long)ftruncate(srv.pid_fd, 0));
	close_fd(&srv.pid_fd);
}

static void
signals_install(void)
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	(void)sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	(void)sigaction(SIGCHLD, &sa, NULL);
	(void)sigaction(SIGUSR1, &sa, NULL);
#ifdef SIGINFO
	(void)sigaction(SIGINFO, &sa, NULL);
#endif
#ifdef SOCKS5_TEST_CLOCK
	(void)sigaction(SIGUSR2, &sa, NULL);
#endif
}

/* Can n spill buffers be addressed at all on this system? */
static int
pool_fits(long n)
{
	return n >= 0 && (unsigned long)n <= ((size_t)-1) / SOCKS5_BUFSIZE;
}

/* Does every listen address of cf parse? */
static int
listen_specs_ok(const struct socks5_config *cf)
{
	union sockaddr_any	 a;
	socklen_t		 alen;
	char			 host[LISTEN_HOST];
	int			 i;

	for (i = 0; i < cf->nlisten; i++)
		if (cf->listen[i] == NULL ||
		    listen_spec_parse(&a, &alen, host, cf->listen[i], 0) != 0)
			return 0;
	return 1;
}

/*
 * Every field in its range, and every size computed from one fits: a
 * configuration that does not is refused with the reason, never
 * started with a table smaller than it says.
 */
static int
config_check(const struct socks5_config *cf)
{
	union sockaddr_any	 a;
	socklen_t		 alen;
	const char		*why = NULL;

	if (cf->listen_addr == NULL && cf->nlisten == 0 &&
	    cf->nlisten_fds == 0)
		why = "no listen address";
	else if (cf->port < 0 || cf->port > 65535)
		why = "port not in 0..65535";
	else if (cf->max_sessions < 0 || cf->max_sessions > 65535)
		why = "max_sessions not in 1..65535";
	else if (cf->spill_buffers < 0 || cf->spill_buffers == 1 ||
	    cf->spill_buffers > 1048576)
		why = "spill_buffers not in 2..1048576";
	else if (!pool_fits(cf->spill_buffers))
		why = "spill_buffers: that many 64 KiB buffers exceed this "
		    "system's address space";
	else if (cf->idle_timeout < 0 ||
	    (unsigned long)cf->idle_timeout > LONGEST_WAIT_S)
		why = "idle_timeout not in 1..1000000 seconds";
	else if (cf->frag_timeout < 0 || cf->frag_timeout > 3600)
		why = "frag_timeout not in 5..3600 seconds";
	else if (cf->family != 0 && cf->family != 4 && cf->family != 6)
		why = "family not 0, 4 or 6";
	else if (cf->bind_addr != NULL &&
	    addr_parse(&a, &alen, cf->bind_addr, 0) == -1)
		why = "bind_addr is not an IPv4 or IPv6 address";
	else if (cf->external_addr != NULL &&
	    addr_parse(&a, &alen, cf->external_addr, 0) == -1)
		why = "external_addr is not an IPv4 or IPv6 address";
	else if (cf->nlisten < 0 || cf->nlisten > SOCKS5_LISTENERS ||
	    (cf->nlisten > 0 && cf->listen == NULL))
		why = "listen: more than SOCKS5_LISTENERS, or none given";
	else if (!listen_specs_ok(cf))
		why = "listen: an entry is not ADDR, ADDR:PORT or [ADDR]:PORT, "
		    "or is IPv4-mapped";
	else if (cf->nlisten_fds < 0 || cf->nlisten_fds > SOCKS5_LISTENERS ||
	    (cf->nlisten_fds > 0 && cf->listen_fds == NULL))
		why = "listen_fds: more than SOCKS5_LISTENERS, or none given";
	else if (cf->nrules < 0 || cf->nrules > SOCKS5_MAXRULES ||
	    (cf->nrules > 0 && cf->rules == NULL))
		why = "rules: too many, or none given";
	else if (!WITH_RULES && cf->nrules > 0)
		why = "rules: access rules are left out of this build";
	else if (!WITH_AUTH && cf->user_file != NULL)
		why = "user_file: logins are left out of this build";
	else if (!WITH_BIND && !WITH_UDP && cf->external_addr != NULL)
		why = "external_addr: BIND and UDP are left out of this build";
	if (why == NULL)
		return 0;
	logmsg(LOG_ERR, "fatal: bad configuration: %s", why);
	return -1;
}

static int
startup_common(const struct socks5_config *cf, int maxsess, int nspill,
    int nudpbuf)
{
	socklen_t	 alen;

	if (config_check(cf) == -1)
		return -1;
	server_init();
	srv.open = 1;
	srv.owner = getpid();
	srv.conf = *cf;
	srv.have_bind = srv.conf.bind_addr != NULL &&
	    addr_parse(&srv.bind_sa, &alen, srv.conf.bind_addr, 0) == 0;
	srv.have_ext = srv.conf.external_addr != NULL &&
	    addr_parse(&srv.ext_sa, &alen, srv.conf.external_addr, 0) == 0;
	if (srv.conf.idle_timeout < 1)
		srv.conf.idle_timeout = SOCKS5_IDLE_SECS;
	srv.handshake_ms = (srv.conf.idle_timeout < SOCKS5_HANDSHAKE_SECS ?
	    srv.conf.idle_timeout : SOCKS5_HANDSHAKE_SECS) * 1000;
	srv.bind_ms = (srv.conf.idle_timeout < SOCKS5_BIND_SECS ?
	    srv.conf.idle_timeout : SOCKS5_BIND_SECS) * 1000;
	srv.nworkers = 1;
	srv.pace_ms = SOCKS5_AUTH_DELAY_MS;
	clock_update();
	if (srv.conf.log == SOCKS5_LOG_SYSLOG)
		openlog("socks5", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	if (srv.conf.frag_timeout < SOCKS5_FRAG_SECS)
		srv.conf.frag_timeout = SOCKS5_FRAG_SECS;
#if WITH_RULES
	for (srv.nrules = 0; srv.nrules < srv.conf.nrules; )
		if (rule_add(srv.conf.rules[srv.nrules]) == -1) {
			logmsg(LOG_ERR, "fatal: bad rule: %s", srv.conf.rules[srv.nrules]);
			srv.rules_invalid = 1;
			return -1;
		}
#endif
	if (tables_alloc(maxsess, nspill, nudpbuf) == -1) {
		logmsg(LOG_ERR, "fatal: out of memory");
		return -1;
	}
#if WITH_AUTH
	if (srv.conf.user_file != NULL && users_load(1) == -1) {
		srv.users_unreadable = 1;
		return -1;
	}
#endif
	return 0;
}

/* ------------------------------------------------------------------ */
/* The embedding API (socks5.h).                                       */

void
socks5_config_init(struct socks5_config *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->listen_addr = "127.0.0.1";
	cf->port = 1080;
	cf->max_sessions = SOCKS5_MAXSESS;
	cf->idle_timeout = SOCKS5_IDLE_SECS;
	cf->frag_timeout = SOCKS5_FRAG_SECS;
	cf->log = SOCKS5_LOG_STDERR;
}

void
socks5_stop(void)
{
	on_signal(SIGTERM);
}

/* What main() adds around the loop (-d, -P, -U, -w); the API has none. */
struct run_opts {
	int		 daemon;
	const char	*pidfile;
	const char	*user;
	int		 workers;	/* 0 or 1: none */
	struct gss_conf	 gss;		/* -g, -k, -L */
};

static void	server_forget(void);

/*
 * One server per process. Another one opened while this process has
 * one open is refused; in a child forked from a process that has one,
 * the parent's server is forgotten (its descriptors closed) first.
 */
static int
server_claim(void)
{
	if (srv.open && srv.owner == getpid()) {
		logmsg(LOG_ERR, "fatal: a server is already open in this "
		    "process");
		return -1;
	}
	if (srv.open)
		server_forget();
	return 0;
}

/* Tables, descriptor limit and listener: what every server needs. */
static int
server_open(const struct socks5_config *cf, int workers)
{
	struct sigaction	 sa;
	int			 maxsess, nspill, nudpbuf;

	maxsess = cf->max_sessions > 0 ? cf->max_sessions : SOCKS5_MAXSESS;
	nspill = maxsess / SOCKS5_POOL_DIV;
	nudpbuf = maxsess / SOCKS5_UDP_DIV;
	if (nspill < SOCKS5_POOL_MIN)
		nspill = SOCKS5_POOL_MIN;
	if (cf->spill_buffers > 0)
		nspill = cf->spill_buffers;
	if (nudpbuf < SOCKS5_UDP_MIN)
		nudpbuf = SOCKS5_UDP_MIN;
	if (nudpbuf > SOCKS5_UDP_MAX)
		nudpbuf = SOCKS5_UDP_MAX;
	if (!WITH_UDP)
		nudpbuf = 0;
	got_term = 0;
	if (startup_common(cf, maxsess, nspill, nudpbuf) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	fdlimit_raise();
	srv.spread = workers > 1;
	if (listeners_open() == -1)
		return -1;
	srv.spare_fd = open("/dev/null", O_RDONLY);
	return 0;
}

int
socks5_open(const struct socks5_config *cf)
{
	if (server_claim() == -1)
		return -1;
	if (server_open(cf, 1) == -1) {
		socks5_close();
		return -1;
	}
	resolvers_init();
	fd_budget_start();
	listening_log();
	return 0;
}

int
socks5_port(void)
{
	if (srv.nls == 0)
		return -1;
	return (int)sa_port(&srv.ls[0].sa);
}

int
socks5_pollfds_max(void)
{
	return srv.nsess * NFD + PFD_OWN;
}

int
socks5_pollfds(struct pollfd *fds, int max, int *timeout)
{
	*timeout = poll_build();
	if (srv.npfd > max)
		return -1;
	memcpy(fds, srv.pfd, sizeof(*srv.pfd) * (size_t)srv.npfd);
	return srv.npfd;
}

void
socks5_dispatch(const struct pollfd *fds, int n)
{
	int	 i;

	for (i = 0; i < n && i < srv.npfd; i++)
		srv.pfd[i].revents = fds[i].revents;
	loop_dispatch();
}

void
socks5_close(void)
{
	int	 i;

	if (!srv.open)
		return;
	if (srv.owner != getpid()) {	/* the parent's, in a child */
		server_forget();
		return;
	}
	while (srv.nactive > 0)
		session_free(&srv.sess[srv.active[0]]);
	gss_sessions_stop();
	listeners_close();
	close_fd(&srv.spare_fd);
	for (i = 0; i < srv.nresolvers; i++)	/* they read EOF and exit */
		close_fd(&srv.helpers[i].fd);
	for (i = 0; i < srv.nresolvers; i++)
		if (srv.helpers[i].pid > 0) {
			(void)kill(srv.helpers[i].pid, SIGTERM);
			(void)waitpid(srv.helpers[i].pid, NULL, 0);
		}
	while (srv.nkilled > 0)
		(void)waitpid(srv.killed[--srv.nkilled], NULL, 0);
	srv.nresolvers = 0;
	close_fd(&sig_pipe[0]);
	close_fd(&sig_pipe[1]);
	tables_free();
	srv.open = 0;
}

/* ------------------------------------------------------------------ */
/* Workers (-w N): N copies of the loop under a supervisor.            */

/*
 * The process that opened the listeners forks N workers. Each is a
 * whole server: its own copy of the tables (copy-on-write: zero pages
 * until it uses them), its own resolver helpers, its own signal pipe,
 * all of them accepting on the same listeners. Login pacing holds
 * across them without shared state: each worker paces an address at N
 * times the delay, so together they answer it no faster than one
 * worker would. The supervisor passes SIGHUP, SIGUSR1 and SIGTERM on,
 * and forks a worker again when one dies (a second later if it died
 * within a second of its start, so a worker that cannot run does not
 * become a fork loop).
 */

/* The signals the loop handles, blocked while a worker is forked. */
static void
signals_block(int how)
{
	sigset_t	 set;

	(void)sigemptyset(&set);
	(void)sigaddset(&set, SIGTERM);
	(void)sigaddset(&set, SIGINT);
	(void)sigaddset(&set, SIGHUP);
	(void)sigaddset(&set, SIGCHLD);
	(void)sigaddset(&set, SIGUSR1);
#ifdef SIGINFO
	(void)sigaddset(&set, SIGINFO);
#endif
	(void)sigprocmask(how, &set, NULL);
}

/* A signal pipe of this process's own (after a fork). */
static int
sig_pipe_open(void)
{
	close_fd(&sig_pipe[0]);
	close_fd(&sig_pipe[1]);
	if (pipe(sig_pipe) == -1)
		return -1;
	(void)set_nonblock(sig_pipe[0]);
	(void)set_nonblock(sig_pipe[1]);
	set_cloexec(sig_pipe[0]);
	set_cloexec(sig_pipe[1]);
	return 0;
}

/* In worker k (from 1): serve until SIGTERM, then exit. */
static void
worker_run(int k)
{
	int	 i;

	srv.owner = getpid();
	srv.worker = k;
	close_fd(&srv.lifeline[1]);	/* EOF on [0]: the supervisor is gone */
	for (i = 0; i < SOCKS5_MAXWORKERS; i++)
		srv.workers[i].pid = -1;	/* the supervisor's */
	listeners_mine(k);
	got_term = got_hup = got_chld = got_status = 0;
	if (sig_pipe_open() == -1) {
		logmsg(LOG_ERR, "fatal: worker %d: pipe: %s", k,
		    strerror(errno));
		_exit(1);
	}
	signals_block(SIG_UNBLOCK);
	clock_update();
	srv.last_reap = srv.now;
	fd_budget_start();
	while (!got_term)
		if (loop_once() == -1)
			break;
	socks5_close();
	_exit(got_term ? 0 : 1);
}

/* Fork worker k (from 0). */
static int
worker_fork(int k)
{
	pid_t	 pid;

	signals_block(SIG_BLOCK);
	pid = fork();
	if (pid == 0)
		worker_run(k + 1);
	signals_block(SIG_UNBLOCK);
	if (pid == -1) {
		logmsg(LOG_ERR, "warning: worker %d: fork: %s", k + 1,
		    strerror(errno));
		srv.workers[k].restart = srv.now + 1000UL;
		return -1;
	}
	srv.workers[k].pid = pid;
	srv.workers[k].started = srv.now;
	return 0;
}

static void
workers_signal(int sig)
{
	int	 k;

	for (k = 0; k < srv.nworkers; k++)
		if (srv.workers[k].pid > 0)
			(void)kill(srv.workers[k].pid, sig);
}

/* Reap the workers that died: fork them again, now or in a second. */
static void
workers_reap(void)
{
	struct worker	*w;
	int		 k, st;

	for (k = 0; k < srv.nworkers; k++) {
		w = &srv.workers[k];
		if (w->pid <= 0 || waitpid(w->pid, &st, WNOHANG) != w->pid)
			continue;
		if (WIFSIGNALED(st))
			logmsg(LOG_ERR, "warning: worker %ld killed by signal "
			    "%d, restarting it", (long)w->pid, WTERMSIG(st));
		else
			logmsg(LOG_ERR, "warning: worker %ld exited with "
			    "status %d, restarting it", (long)w->pid,
			    WEXITSTATUS(st));
		w->pid = -1;
		w->restart = srv.now - w->started < 1000UL ?
		    srv.now + 1000UL : srv.now;
	}
}

/* Fork the workers whose time has come; the poll timeout till the next. */
static int
workers_start(void)
{
	unsigned long	 first = 0;
	int		 k, have = 0;

	for (k = 0; k < srv.nworkers; k++) {
		if (srv.workers[k].pid > 0)
			continue;
		if (DUE(srv.workers[k].restart, srv.now) &&
		    worker_fork(k) == 0)
			continue;
		timer_earliest(&first, &have, srv.workers[k].restart);
	}
	if (!have)
		return -1;
	return DUE(first, srv.now) ? 0 : (int)(first - srv.now);
}

/* Has worker w exited? Reaped then; 0 while it runs. */
static int
worker_gone(struct worker *w)
{
	pid_t	 r;

	if (w->pid <= 0)
		return 1;
	if ((r = waitpid(w->pid, NULL, WNOHANG)) == 0 ||
	    (r == -1 && errno == EINTR))
		return 0;
	w->pid = -1;
	return 1;
}

/* Reap the workers as they exit, for ms at most; how many are left. */
static int
workers_wait(unsigned long ms)
{
	struct pollfd	 p;
	unsigned long	 until;
	int		 k, left;

	clock_update();
	until = srv.now + ms;
	for (;;) {
		for (k = left = 0; k < srv.nworkers; k++)
			left += !worker_gone(&srv.workers[k]);
		if (left == 0 || DUE(until, srv.now))
			return left;
		p.fd = sig_pipe[0];	/* SIGCHLD pokes it */
		p.events = POLLIN;
		(void)poll(&p, 1, (int)(until - srv.now));
		signals_drain();
		clock_update();
	}
}

/*
 * Stop the workers: SIGTERM, and SIGCONT for one that is stopped
 * (SIGSTOP) so that it acts on it, as systemd does. One still there
 * SOCKS5_STOP_MS later (held by a debugger, wedged) is killed, logged,
 * and waited for as long again: a traced one is reaped only once its
 * tracer lets it go. The supervisor exits, and lets go of the
 * listening sockets, in a bounded time whatever its workers do.
 */
static void
workers_stop(void)
{
	int	 k;

	workers_signal(SIGTERM);
	workers_signal(SIGCONT);
	if (workers_wait(SOCKS5_STOP_MS) == 0)
		return;
	for (k = 0; k < srv.nworkers; k++)
		if (srv.workers[k].pid > 0) {
			logmsg(LOG_ERR, "warning: worker %ld did not stop "
			    "within %d ms of SIGTERM: killing it",
			    (long)srv.workers[k].pid, SOCKS5_STOP_MS);
			(void)kill(srv.workers[k].pid, SIGKILL);
		}
	(void)workers_wait(SOCKS5_STOP_MS);
}

/* The supervisor: n workers, until SIGTERM; then they stop, and it. */
static int
supervise(int n)
{
	struct pollfd	 p;
	int		 k, timeout;

	srv.nworkers = n;
	srv.pace_ms = (unsigned long)SOCKS5_AUTH_DELAY_MS * (unsigned long)n;
	if (pipe(srv.lifeline) == -1) {
		logmsg(LOG_WARNING, "warning: lifeline pipe: %s: workers "
		    "outlive a killed supervisor", strerror(errno));
		srv.lifeline[0] = srv.lifeline[1] = -1;
	} else {
		set_cloexec(srv.lifeline[0]);
		set_cloexec(srv.lifeline[1]);
	}
	for (k = 0; k < n; k++) {
		srv.workers[k].pid = -1;
		srv.workers[k].restart = srv.now;
	}
	while (!got_term) {
		timeout = workers_start();
		p.fd = sig_pipe[0];
		p.events = POLLIN;
		if (poll(&p, 1, timeout) == -1 && errno != EINTR) {
			logmsg(LOG_ERR, "fatal: poll: %s", strerror(errno));
			break;
		}
		clock_update();
		signals_drain();
		if (got_term)
			break;
		if (got_chld) {
			got_chld = 0;
			workers_reap();
		}
		if (got_hup) {
			got_hup = 0;
			workers_signal(SIGHUP);
		}
		if (got_status) {
			got_status = 0;
			workers_signal(SIGUSR1);
		}
	}
	workers_stop();
	return 0;
}

/* Run the server's own loop until a signal ends it. */
static int
serve_loop(const struct socks5_config *cf, const struct run_opts *ro)
{
	int	 r = -1;

	if (server_claim() == -1)
		return -1;
	if (server_open(cf, ro->workers) == -1)
		goto out;
#if WITH_GSSAPI
	srv.gss = ro->gss;
#endif
	if (ro->workers > 1)		/* as the user that bound them */
		listeners_spread(ro->workers);
	if (pipe(sig_pipe) == -1) {
		logmsg(LOG_ERR, "fatal: pipe: %s", strerror(errno));
		goto out;
	}
	(void)set_nonblock(sig_pipe[0]);
	(void)set_nonblock(sig_pipe[1]);
	set_cloexec(sig_pipe[0]);
	set_cloexec(sig_pipe[1]);
	signals_install();
	if (ro->daemon && daemonize() == -1) {
		logmsg(LOG_ERR, "fatal: daemon: %s", strerror(errno));
		goto out;
	}
	srv.owner = getpid();		/* the daemon, after -d's fork */
	if (ro->pidfile != NULL && pidfile_write(ro->pidfile) == -1)
		goto out;
	if (ro->user != NULL && privileges_drop(ro->user) == -1)
		goto out;
	if (gss_startup() == -1)
		goto out;
	resolvers_init();
	fd_budget_start();
	listening_log();
	daemon_ready();
	if (ro->workers > 1) {
		r = supervise(ro->workers);
		goto out;
	}
	while (!got_term)
		if (loop_once() == -1)
			goto out;
	r = 0;
out:
	socks5_close();
	if (ro->pidfile != NULL)
		pidfile_remove(ro->pidfile);
	return r;
}

int
socks5_serve(const struct socks5_config *cf)
{
	struct run_opts	 none;

	memset(&none, 0, sizeof(none));
	return serve_loop(cf, &none);
}

/*
 * In a child of a running server (socks5_serve_fd after a fork): close
 * every descriptor of the parent's server, its sessions' too, so that
 * they end when the parent ends them. Nothing is logged, and the
 * resolver helpers are left alone: they are the parent's.
 */
static void
server_forget(void)
{
	struct session	*s;
	int		 i, k;

	for (i = 0; i < srv.nactive; i++) {
		s = &srv.sess[srv.active[i]];
		if (s->fd[FD_CLIENT_OUT] == s->fd[FD_CLIENT])
			s->fd[FD_CLIENT_OUT] = -1;
		for (k = 0; k < NFD; k++)
			close_fd(&s->fd[k]);
	}
	srv.nactive = 0;
	listeners_close();
	close_fd(&srv.spare_fd);
	for (k = 0; k < srv.nresolvers; k++)
		close_fd(&srv.helpers[k].fd);
	close_fd(&sig_pipe[0]);
	close_fd(&sig_pipe[1]);
	close_fd(&srv.lifeline[0]);
	close_fd(&srv.lifeline[1]);
	close_fd(&srv.pid_fd);
	close_fd(&srv.ready_fd);
	srv.nresolvers = 0;
	srv.nkilled = 0;		/* the parent's to reap */
	tables_free();
	srv.open = 0;
}

/*
 * O_NONBLOCK belongs to the open file, which the client's descriptors
 * may share with others (a shell's pipe, a terminal): a copy of fd, to
 * clear the flag again through it once the session has closed fd;
 * -1 when fd was non-blocking already, or there is no copy to be had.
 */
static int
blocking_keep(int fd)
{
	int	 fl, copy;

	if ((fl = fcntl(fd, F_GETFL)) == -1 || (fl & O_NONBLOCK) ||
	    (copy = dup(fd)) == -1)
		return -1;
	set_cloexec(copy);
	return copy;
}

/* Make the open file of copy blocking again, and close copy. */
static void
blocking_restore(int *copy)
{
	int	 fl;

	if (*copy < 0)
		return;
	if ((fl = fcntl(*copy, F_GETFL)) != -1)
		(void)fcntl(*copy, F_SETFL, fl & ~O_NONBLOCK);
	close_fd(copy);
}

/* The one session of serve_one(). */
static int
serve_client(const struct socks5_config *cf, int rfd, int wfd,
    const struct run_opts *ro)
{
	union {
		struct sockaddr_storage	 ss;
		struct sockaddr		 sa;
	} peer;
	socklen_t	 plen = sizeof(peer);
	struct sigaction sa;
	int		 rkeep, wkeep, r = 0;

	if (startup_common(cf, 1, 2, WITH_UDP ? 2 : 0) != 0)
		return -1;
	srv.fd_limit = 0;			/* one session: no budget */
#if WITH_GSSAPI
	srv.gss = ro->gss;
	srv.single = 1;
#endif
	if (ro->user != NULL && privileges_drop(ro->user) == -1)
		return -1;
	if (gss_startup() == -1)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	memset(&peer, 0, sizeof(peer));
	if (getpeername(rfd, &peer.sa, &plen) == -1)
		plen = 0;		/* a pipe: the address is unknown */
	if (client_denied(&peer.sa, plen)) {
		refuse(wfd);
		if (rfd != wfd)
			(void)close(rfd);
		return 0;
	}
	rkeep = blocking_keep(rfd);
	wkeep = wfd != rfd ? blocking_keep(wfd) : -1;
	(void)set_nonblock(rfd);
	(void)set_nonblock(wfd);
	set_nodelay(rfd);
	(void)session_new(rfd, wfd, &peer.sa, plen);
	while ((srv.nactive > 0 || gss_pump_busy()) && r == 0)
		r = loop_once();
	blocking_restore(&rkeep);
	blocking_restore(&wkeep);
	return r;
}

/*
 * Serve one connected client on rfd (read) and wfd (write), as ro says
 * (-U, -g); the server is closed again when it is done.
 */
static int
serve_one(const struct socks5_config *cf, int rfd, int wfd,
    const struct run_opts *ro)
{
	int	 r;

	if (server_claim() == -1) {
		if (rfd != wfd)
			(void)close(rfd);
		(void)close(wfd);
		return -1;
	}
	r = serve_client(cf, rfd, wfd, ro);
	socks5_close();
	return r;
}

int
socks5_serve_fd(const struct socks5_config *cf, int fd)
{
	struct run_opts	 none;

	memset(&none, 0, sizeof(none));
	return serve_one(cf, fd, fd, &none);
}

/* ------------------------------------------------------------------ */
/* GSS-API (RFC 1961): method 01, built with -DSOCKS5_GSSAPI.          */

#ifdef SOCKS5_GSSAPI

/*
 * A session that chooses method 01 runs in a process of its own,
 * forked for it, because GSS-API libraries allocate memory and parse
 * much: the server's process never calls one after startup, and what
 * a session's process allocates ends with it. There it is a
 * single-session server (as -i is, where no fork is needed). The
 * exchange is done first, in straight-line code with the handshake's
 * deadline: context tokens (01 01), then the protection level (01 02).
 * At level 0 the session goes on over the client's connection as any
 * other. At levels 1 and 2 it goes on over one end of a socket pair,
 * and the pump below moves the bytes between the other end and the
 * client, each client message (01 03 LEN TOKEN) unwrapped on the way
 * in and each read from the pair wrapped on the way out: the request,
 * the reply and the relay need to know nothing of it, back-pressure
 * and half-close pass through the pair. UDP datagrams are wrapped and
 * unwrapped where they are sent and received.
 */

#define GSS_MSG_CTX	0x01		/* RFC 1961 MTYP: context token */
#define GSS_MSG_LEVEL	0x02		/* protection level */
#define GSS_MSG_DATA	0x03		/* encapsulated data */
#define GSS_MSG_ABORT	0xff		/* failure: 01 FF, then close */
#define GSS_TOKEN_MAX	65535		/* LEN is two octets */

/*
 * What gss_unwrap() says besides success (when the client asked for
 * replay and sequence detection): on the TCP connection no token may
 * be replayed, old, out of order or missing; over UDP, loss and
 * reordering are what UDP does, replays are not.
 */
#define GSS_SEQ_TCP	(GSS_S_DUPLICATE_TOKEN | GSS_S_OLD_TOKEN | \
			    GSS_S_UNSEQ_TOKEN | GSS_S_GAP_TOKEN)
#define GSS_SEQ_UDP	(GSS_S_DUPLICATE_TOKEN | GSS_S_OLD_TOKEN)

static unsigned char	 gss_in[4 + GSS_TOKEN_MAX];	/* client bytes */
static unsigned char	 gss_out[4 + GSS_TOKEN_MAX];	/* one message out */

/* The context of this process's one GSS-API session, and its pump. */
static struct {
	gss_cred_id_t	 cred;		/* to accept with: -g's service */
	gss_ctx_id_t	 ctx;
	OM_uint32	 flags;		/* what the context has */
	int		 level;		/* granted: 0, 1 or 2 */
	OM_uint32	 chunk;		/* most plain bytes in one token */
	int		 on;		/* the pump runs (levels 1, 2) */
	struct session	*s;		/* the session on the pair */
	int		 rfd, wfd;	/* the client's connection */
	int		 pfd;		/* our end of the pair */
	int		 pi_r, pi_w, pi_pr, pi_pw; /* this pass's poll entries */
	unsigned	 inlen;		/* bytes in gss_in */
	gss_buffer_desc	 plain;		/* unwrapped, for the pair */
	size_t		 plain_off;
	size_t		 outlen, out_off; /* gss_out, for the client */
	int		 in_eof;	/* the client said EOF */
	int		 pair_eof;	/* the session's end shut or closed */
	int		 pair_shut;	/* the client's EOF passed to it */
	int		 client_shut;	/* its EOF passed to the client */
	unsigned long	 deadline;	/* after the session: flush until */
	int		 life[2];	/* the server holds [1]; its sessions'
					   processes read EOF on [0] when it
					   is gone */
	int		 life_made;
} gss;

/*
 * Append the library's text t to buf (of size bytes, NUL-terminated):
 * printable ASCII as it is, being prose, and any other byte (and the
 * backslash) as \xHH, since it may quote what a client sent.
 */
static void
gss_text(char *buf, size_t size, const gss_buffer_desc *t)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = t->value;
	size_t		 i, o = strlen(buf);

	for (i = 0; i < t->length && o + 5 < size; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
			buf[o++] = (char)p[i];
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[p[i] >> 4];
			buf[o++] = hex[p[i] & 15];
		}
	}
	buf[o] = '\0';
}

/* The library's words for a failure, in buf. */
static const char *
gss_words(char *buf, size_t size, OM_uint32 maj, OM_uint32 min)
{
	OM_uint32	 more = 0, m;
	gss_buffer_desc	 t;

	buf[0] = '\0';
	t.length = 0;
	t.value = NULL;
	(void)gss_display_status(&m, maj, GSS_C_GSS_CODE, GSS_C_NO_OID,
	    &more, &t);
	gss_text(buf, size, &t);
	(void)gss_release_buffer(&m, &t);
	if (min == 0)
		return buf;
	more = 0;
	(void)gss_display_status(&m, min, GSS_C_MECH_CODE, GSS_C_NO_OID,
	    &more, &t);
	if (t.length > 0 && strlen(buf) + 2 < size)
		(void)strcat(buf, ": ");
	gss_text(buf, size, &t);
	(void)gss_release_buffer(&m, &t);
	return buf;
}

/* Log a GSS-API failure of session s with the library's own words. */
static void
gss_log(const struct session *s, const char *what, OM_uint32 maj,
    OM_uint32 min)
{
	char	 peer[64], words[512];

	logmsg(LOG_WARNING, "gssapi failed client=%s: %s: %s",
	    addr_str(peer, sizeof(peer), &s->peer), what,
	    gss_words(words, sizeof(words), maj, min));
}

/* A refusal that is not the library's: logged the same way. */
static void
gss_refuse_log(const struct session *s, const char *why)
{
	char	 peer[64];

	logmsg(LOG_WARNING, "gssapi failed client=%s: %s",
	    addr_str(peer, sizeof(peer), &s->peer), why);
}

/*
 * The credential to accept with: -g's service on any host, as the
 * host-based name "SERVICE@" says (the keytab's other keys are not
 * taken). GSS_S_COMPLETE, or the library's failure in *min.
 */
static OM_uint32
gss_acquire(gss_cred_id_t *cred, OM_uint32 *min)
{
	OM_uint32	 maj, m;
	gss_buffer_desc	 t;
	gss_name_t	 name = GSS_C_NO_NAME;
	char		 svc[260];

	(void)sprintf(svc, "%.250s@", srv.gss.service);
	t.value = svc;
	t.length = strlen(svc);
	maj = gss_import_name(min, &t, GSS_C_NT_HOSTBASED_SERVICE, &name);
	if (!GSS_ERROR(maj))
		maj = gss_acquire_cred(min, name, GSS_C_INDEFINITE,
		    GSS_C_NO_OID_SET, GSS_C_ACCEPT, cred, NULL, NULL);
	(void)gss_release_name(&m, &name);
	return maj;
}

/*
 * Method 01 for the greeting p of session s? When -g is given and the
 * client offers it, unless the server already runs SOCKS5_GSS_SESSIONS
 * of them, or SOCKS5_GSS_PER_ADDR from the client's address: no one
 * address can take every process with greetings it never follows up.
 */
static int
gss_offered(const struct session *s, const unsigned char *p)
{
	unsigned char	 key[8], fam;
	char		 peer[64];
	int		 i, same = 0;

	if (srv.gss.service == NULL ||
	    greeting_method(p, SOCKS5_METHOD_GSSAPI) != SOCKS5_METHOD_GSSAPI)
		return 0;
	if (srv.single)
		return 1;
	if (srv.ngss >= SOCKS5_GSS_SESSIONS) {
		if (!srv.gss_full_logged)
			logmsg(LOG_WARNING, "warning: %d GSS-API sessions at "
			    "once, refusing more", SOCKS5_GSS_SESSIONS);
		srv.gss_full_logged = 1;
		return 0;
	}
	fam = peer_key(&s->peer, key);
	for (i = 0; i < srv.ngss; i++)
		same += srv.gss_fam[i] == fam &&
		    memcmp(srv.gss_key[i], key, 8) == 0;
	if (same < SOCKS5_GSS_PER_ADDR)
		return 1;
	logmsg(LOG_DEBUG, "gssapi: %d sessions from %s already, refusing more",
	    same, addr_str(peer, sizeof(peer), &s->peer));
	return 0;
}

/* SIGUSR1's status line: the GSS-API sessions, in their processes. */
static void
gss_status_log(void)
{
	if (srv.gss.service != NULL && !srv.single)
		logmsg(LOG_NOTICE, "status gssapi sessions=%d/%d", srv.ngss,
		    SOCKS5_GSS_SESSIONS);
}

/*
 * The processes of ended sessions; one killed by a signal could not log
 * its session, so this says so.
 */
static void
gss_reap(void)
{
	pid_t	 pid;
	int	 i, st = 0;

	for (i = 0; i < srv.ngss; )
		if ((pid = waitpid(srv.gss_pid[i], &st, WNOHANG)) != 0) {
			if (pid > 0 && WIFSIGNALED(st) && !got_term)
				logmsg(LOG_WARNING, "warning: gssapi: session "
				    "process %ld killed by signal %d",
				    (long)pid, WTERMSIG(st));
			srv.ngss--;
			srv.gss_pid[i] = srv.gss_pid[srv.ngss];
			srv.gss_fam[i] = srv.gss_fam[srv.ngss];
			memcpy(srv.gss_key[i], srv.gss_key[srv.ngss], 8);
			srv.gss_full_logged = 0;
		} else {
			i++;
		}
}

/*
 * The server stops: so do its GSS-API sessions, as its own do, at
 * once. Each process is asked (SIGTERM, and SIGCONT for one that was
 * stopped), given a second in all to log its session and exit, and
 * then killed; none is left behind.
 */
static void
gss_sessions_stop(void)
{
	int	 i, tries;

	for (i = 0; i < srv.ngss; i++) {
		(void)kill(srv.gss_pid[i], SIGTERM);
		(void)kill(srv.gss_pid[i], SIGCONT);
	}
	for (tries = 0; srv.ngss > 0 && tries < 100; tries++) {
		gss_reap();
		if (srv.ngss > 0)
			(void)poll(NULL, 0, 10);
	}
	while (srv.ngss > 0) {
		(void)kill(srv.gss_pid[--srv.ngss], SIGKILL);
		(void)waitpid(srv.gss_pid[srv.ngss], NULL, 0);
	}
}

/*
 * Wait for fd to be ready for ev until the session's deadline: 1, or 0
 * when the time is up, a signal asked to stop, or the server is gone
 * (EOF on the lifeline, as the loop sees it later).
 */
static int
gss_wait(const struct session *s, int fd, short ev)
{
	struct pollfd	 p[2];
	int		 n;

	for (;;) {
		clock_update();
		if (got_term || DUE(s->deadline, srv.now))
			return 0;
		p[0].fd = fd;
		p[0].events = ev;
		p[1].fd = srv.lifeline[0];
		p[1].events = POLLIN;
		p[0].revents = p[1].revents = 0;
		n = poll(p, srv.lifeline[0] >= 0 ? 2 : 1,
		    (int)(s->deadline - srv.now));
		if (n > 0 && p[1].revents != 0) {
			logmsg(LOG_ERR, "gssapi: the server is gone: stopping");
			got_term = 1;
			return 0;
		}
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 0;
	}
}

/* Send type and token to the client, whole; -1 when it cannot be. */
static int
gss_send(const struct session *s, int type, const gss_buffer_desc *t)
{
	size_t	 n, off = 0;
	ssize_t	 w;

	if (t->length > GSS_TOKEN_MAX)
		return -1;
	gss_out[0] = 1;
	gss_out[1] = (unsigned char)type;
	gss_out[2] = (unsigned char)(t->length >> 8);
	gss_out[3] = (unsigned char)(t->length & 0xff);
	if (t->length > 0)
		memcpy(gss_out + 4, t->value, t->length);
	n = 4 + t->length;
	while (off < n) {
		w = write(s->fd[FD_CLIENT_OUT], gss_out + off, n - off);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && AGAIN(errno) &&
		    gss_wait(s, s->fd[FD_CLIENT_OUT], POLLOUT))
			continue;
		else
			return -1;	/* gone, or not taking it in time */
	}
	return 0;
}

/* Tell the client no (01 FF) and end the session. */
static void
gss_abort(struct session *s, const char *result)
{
	static const unsigned char no[2] = { 1, GSS_MSG_ABORT };

	s->result = result;
	session_close_with(s, no, 2);
}

/*
 * Read the client's next message, of type want, into gss_in: its token
 * length, or -1 (logged; s->result says why). No byte past the message
 * is read: what follows stays for whoever reads next.
 */
static long
gss_recv(struct session *s, int want)
{
	size_t	 need;
	long	 len;
	ssize_t	 n;

	while ((len = gss_msg_parse(gss_in, gss.inlen, want)) == 0) {
		need = gss.inlen < 4 ? 4 :
		    4 + (size_t)((gss_in[2] << 8) | gss_in[3]);
		n = read(s->fd[FD_CLIENT], gss_in + gss.inlen, need - gss.inlen);
		if (n > 0) {
			gss.inlen += (unsigned)n;
		} else if (n < 0 && AGAIN(errno)) {
			if (!gss_wait(s, s->fd[FD_CLIENT], POLLIN)) {
				s->result = got_term ? "closed" : "timeout";
				return -1;
			}
		} else if (n == 0 && gss.inlen > 0) {
			gss_refuse_log(s, "EOF inside a message");
			s->result = "gssapi-bad-message";
			return -1;
		} else {
			s->result = n == 0 ? "closed" : "read-error";
			return -1;
		}
	}
	if (len < 0) {
		gss_refuse_log(s, len == PARSE_BADTYPE ?
		    "unexpected message type" : "bad version");
		s->result = "gssapi-bad-message";
		return -1;
	}
	return len - 4;
}

/* Take the message gss_recv() read out of gss_in. */
static void
gss_consume(size_t n)
{
	memmove(gss_in, gss_in + n, gss.inlen - n);
	gss.inlen -= (unsigned)n;
}

/*
 * Is the context's acceptor name SERVICE/<host>, the service of -g?
 * The keytab may hold other services' keys too.
 */
static int
gss_service_ok(const struct session *s)
{
	OM_uint32	 maj, min;
	gss_name_t	 target = GSS_C_NO_NAME;
	gss_buffer_desc	 t;
	size_t		 n = strlen(srv.gss.service);
	int		 ok;

	t.length = 0;
	t.value = NULL;
	maj = gss_inquire_context(&min, gss.ctx, NULL, &target, NULL, NULL,
	    NULL, NULL, NULL);
	if (!GSS_ERROR(maj))
		maj = gss_display_name(&min, target, &t, NULL);
	if (GSS_ERROR(maj)) {
		gss_log(s, "acceptor name", maj, min);
		ok = 0;
	} else {
		ok = t.length > n && memcmp(t.value, srv.gss.service, n) == 0 &&
		    ((const char *)t.value)[n] == '/';
		if (!ok)
			gss_refuse_log(s, "ticket for another service");
	}
	(void)gss_release_buffer(&min, &t);
	(void)gss_release_name(&min, &target);
	return ok;
}

/* The client's principal becomes the session's user; 0, or -1. */
static int
gss_principal(struct session *s, gss_name_t client)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 t;
	int		 r = 0;

	t.length = 0;
	t.value = NULL;
	maj = gss_display_name(&min, client, &t, NULL);
	if (GSS_ERROR(maj)) {
		gss_log(s, "client name", maj, min);
		r = -1;
	} else if (t.length == 0 || t.length > 255) {
		gss_refuse_log(s, "client name of 0 or over 255 bytes");
		r = -1;
	} else {
		memcpy(s->user, t.value, t.length);
		s->user[t.length] = '\0';
		s->ulen = (unsigned char)t.length;
	}
	(void)gss_release_buffer(&min, &t);
	return r;
}

/*
 * The context is complete: is it one to go on with? It must protect
 * integrity, be for -g's service, and name a client that fits in a
 * user field. 0, or -1 (logged).
 */
static int
gss_accepted(struct session *s, gss_name_t client)
{
	if (!(gss.flags & GSS_C_INTEG_FLAG)) {
		gss_refuse_log(s, "context without integrity");
		return -1;
	}
	if (!gss_service_ok(s) || gss_principal(s, client) == -1)
		return -1;
	return 0;
}

/*
 * Context establishment: 01 01 tokens until it is complete, each
 * answered; the last answer (which carries the mutual authentication)
 * only once the context is found good. 0, or -1.
 */
static int
gss_establish(struct session *s)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in, out;
	gss_name_t	 client = GSS_C_NO_NAME;
	long		 len;
	int		 r = 0;

	do {
		if ((len = gss_recv(s, GSS_MSG_CTX)) < 0)
			return -1;
		if (len == 0) {		/* no mechanism starts with nothing */
			gss_refuse_log(s, "empty context token");
			s->result = "gssapi-failed";
			return -1;
		}
		in.length = (size_t)len;
		in.value = gss_in + 4;
		out.length = 0;
		out.value = NULL;
		maj = gss_accept_sec_context(&min, &gss.ctx, gss.cred, &in,
		    GSS_C_NO_CHANNEL_BINDINGS, &client, NULL, &out,
		    &gss.flags, NULL, NULL);
		gss_consume(4 + (size_t)len);
		if (GSS_ERROR(maj))
			gss_log(s, "context", maj, min);
		else if (!(maj & GSS_S_CONTINUE_NEEDED))
			r = gss_accepted(s, client);
		/* one answer to each token, empty when there is none */
		if (!GSS_ERROR(maj) && r == 0 &&
		    gss_send(s, GSS_MSG_CTX, &out) == -1) {
			(void)gss_release_buffer(&min, &out);
			(void)gss_release_name(&min, &client);
			s->result = "client-gone";
			return -1;
		}
		(void)gss_release_buffer(&min, &out);
	} while (!GSS_ERROR(maj) && r == 0 && (maj & GSS_S_CONTINUE_NEEDED));
	(void)gss_release_name(&min, &client);
	if (GSS_ERROR(maj) || r == -1) {
		s->result = "gssapi-failed";
		return -1;
	}
	return 0;
}

/*
 * The level granted for the level asked: the same when -L allows it;
 * for 3 (selective per-message protection, which needs the client to
 * say per message and so is not done here) the strongest of 2 and 1
 * that -L allows; else -1.
 */
static int
gss_level_grant(int asked)
{
	if (asked >= 0 && asked <= 2)
		return srv.gss.levels & (1u << asked) ? asked : -1;
	if (asked == 3 && (srv.gss.levels & 4))
		return 2;
	if (asked == 3 && (srv.gss.levels & 2))
		return 1;
	return -1;
}

/* The protection level (01 02), wrapped without confidentiality. */
static int
gss_negotiate_level(struct session *s)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in, out, plain;
	unsigned char	 octet;
	long		 len;
	int		 asked, r;
	char		 why[64];

	if ((len = gss_recv(s, GSS_MSG_LEVEL)) < 0)
		return -1;
	in.length = (size_t)len;
	in.value = gss_in + 4;
	plain.length = 0;
	plain.value = NULL;
	maj = gss_unwrap(&min, gss.ctx, &in, &plain, NULL, NULL);
	gss_consume(4 + (size_t)len);
	if (GSS_ERROR(maj) || (maj & GSS_SEQ_TCP) || plain.length != 1) {
		if (GSS_ERROR(maj))
			gss_log(s, "protection level", maj, min);
		else if (maj & GSS_SEQ_TCP)
			gss_refuse_log(s, "protection level: a replayed or "
			    "out-of-order token");
		else
			gss_refuse_log(s, "protection level not one octet");
		(void)gss_release_buffer(&min, &plain);
		s->result = "gssapi-failed";
		return -1;
	}
	asked = *(unsigned char *)plain.value;
	(void)gss_release_buffer(&min, &plain);
	if ((gss.level = gss_level_grant(asked)) < 0 ||
	    (gss.level > 0 && !(gss.flags & GSS_C_REPLAY_FLAG))) {
		(void)sprintf(why, gss.level < 0 ? "protection level %d not "
		    "allowed" : "protection level %d without replay "
		    "detection", asked);
		gss_refuse_log(s, why);
		s->result = "gssapi-level";
		return -1;
	}
	octet = (unsigned char)gss.level;
	in.length = 1;
	in.value = &octet;
	out.length = 0;
	out.value = NULL;
	maj = gss_wrap(&min, gss.ctx, 0, GSS_C_QOP_DEFAULT, &in, NULL, &out);
	if (GSS_ERROR(maj)) {
		gss_log(s, "protection level", maj, min);
		s->result = "gssapi-failed";
		return -1;
	}
	r = gss_send(s, GSS_MSG_LEVEL, &out);
	(void)gss_release_buffer(&min, &out);
	if (r == -1)
		s->result = "client-gone";
	return r;
}

/*
 * At levels 1 and 2 the messages of a TCP stream must come in order and
 * none missing: CONNECT and BIND need a context with sequence detection.
 * UDP ASSOCIATE, where loss and reordering are what UDP does, needs
 * only the replay detection every such context has. 1, or 0 (logged).
 */
static int
gss_request_ok(const struct session *s, int cmd)
{
	if (gss.level == 0 || cmd == SOCKS5_CMD_UDP ||
	    (gss.flags & GSS_C_SEQUENCE_FLAG))
		return 1;
	gss_refuse_log(s, "CONNECT or BIND from a context without sequence "
	    "detection");
	return 0;
}

/*
 * Levels 1 and 2: the session moves to one end of a socket pair, the
 * pump takes the client's connection and the other end. 0, or -1.
 */
static int
gss_pump_start(struct session *s)
{
	OM_uint32	 min;
	int		 sp[2];

	if (gss_wrap_size_limit(&min, gss.ctx, gss.level == 2,
	    GSS_C_QOP_DEFAULT, GSS_TOKEN_MAX, &gss.chunk) != GSS_S_COMPLETE ||
	    gss.chunk == 0)
		gss.chunk = GSS_TOKEN_MAX / 2;
	if (gss.chunk > SOCKS5_BUFSIZE)
		gss.chunk = SOCKS5_BUFSIZE;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == -1) {
		logmsg(LOG_WARNING, "warning: gssapi: socketpair: %s",
		    strerror(errno));
		s->result = "general-failure";
		return -1;
	}
	(void)set_nonblock(sp[0]);
	(void)set_nonblock(sp[1]);
	set_cloexec(sp[0]);
	set_cloexec(sp[1]);
	gss.rfd = s->fd[FD_CLIENT];
	gss.wfd = s->fd[FD_CLIENT_OUT];
	gss.pfd = sp[1];
	s->fd[FD_CLIENT] = s->fd[FD_CLIENT_OUT] = sp[0];
	gss.s = s;
	gss.pi_r = gss.pi_w = gss.pi_pr = gss.pi_pw = -1;
	gss.deadline = srv.now + SOCKS5_LINGER_MS;
	gss.on = 1;
	return 0;
}

/*
 * Method 01 was chosen and 05 01 sent, in the session's own process:
 * the exchange, then on to the request, protected as agreed.
 */
static void
gss_begin(struct session *s)
{
	OM_uint32	 maj, min;
	char		 peer[64], name[1100];

	s->method = SOCKS5_METHOD_GSSAPI;
	memcpy(gss_in, s->hs, s->hslen);	/* what came behind the greeting */
	gss.inlen = s->hslen;
	hs_consume(s, s->hslen);
	while (s->state != S_DONE && s->outlen > 0)	/* 05 01 first */
		if (!gss_wait(s, s->fd[FD_CLIENT_OUT], POLLOUT) ||
		    reply_flush(s) == -1)
			session_end(s, "client-gone");
	if (s->state == S_DONE)
		return;
	if (GSS_ERROR(maj = gss_acquire(&gss.cred, &min))) {
		gss_log(s, "credential", maj, min);
		gss_abort(s, "gssapi-failed");
		return;
	}
	if (gss_establish(s) == -1 || gss_negotiate_level(s) == -1) {
		gss_abort(s, s->result);
		return;
	}
	if (srv.conf.verbose >= 1)
		logmsg(LOG_INFO, "gssapi: client=%s user=%s level=%d",
		    addr_str(peer, sizeof(peer), &s->peer),
		    user_field(name, sizeof(name), s), gss.level);
	if (gss.level > 0 && gss_pump_start(s) == -1) {
		session_end(s, s->result);
		return;
	}
	if (gss.level == 0) {			/* what followed, in the clear */
		memcpy(s->hs, gss_in, gss.inlen);
		s->hslen = gss.inlen;
		gss.inlen = 0;
	}
	state_enter(s, S_REQUEST);
}

/* ---- the pump (levels 1 and 2) ---- */

/* What the pump polls for; its deadline once the session has ended. */
static void
gss_pump_events(unsigned long *first, int *have)
{
	gss.pi_r = gss.pi_w = gss.pi_pr = gss.pi_pw = -1;
	if (!gss.on)
		return;
	if (!gss.in_eof && gss.plain.length == 0 && gss.inlen < sizeof(gss_in))
		gss.pi_r = pfd_add(gss.rfd, POLLIN);
	if (gss.plain.length > 0 && gss.pfd >= 0)
		gss.pi_pw = pfd_add(gss.pfd, POLLOUT);
	if (!gss.pair_eof && gss.outlen == 0)
		gss.pi_pr = pfd_add(gss.pfd, POLLIN);
	if (gss.outlen > 0)
		gss.pi_w = pfd_add(gss.wfd, POLLOUT);
	if (gss.plain.length == 0 &&	/* a message came with the last */
	    gss_msg_parse(gss_in, gss.inlen, GSS_MSG_DATA) != 0) {
		*first = srv.now;
		*have = 1;
	}
	if (srv.nactive == 0 && (!*have || DUE(gss.deadline, *first))) {
		*first = gss.deadline;
		*have = 1;
	}
}

/* Is the pump still moving bytes (after its session ended, too)? */
static int
gss_pump_busy(void)
{
	return gss.on;
}

/* The pump is done: its descriptors close. */
static void
gss_pump_stop(void)
{
	OM_uint32	 min;

	if (gss.wfd != gss.rfd)
		close_fd(&gss.wfd);
	close_fd(&gss.rfd);
	gss.wfd = -1;
	close_fd(&gss.pfd);
	(void)gss_release_buffer(&min, &gss.plain);
	gss.on = 0;
}

/* The session on the pair ends too, with why (unless it has). */
static void
gss_pump_fail(const char *why)
{
	if (srv.nactive > 0 && gss.s->state != S_DONE)
		session_end(gss.s, why);
	gss_pump_stop();
}

/* Unwrap the client's messages in gss_in while the pair takes them. */
static int
gss_pump_unwrap(void)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in;
	int		 conf = 0;
	long		 len;

	while (gss.plain.length == 0 && gss.inlen >= 4) {
		if ((len = gss_msg_parse(gss_in, gss.inlen, GSS_MSG_DATA)) < 0) {
			gss_refuse_log(gss.s, "not an encapsulated message");
			return -3;
		}
		if (len == 0)
			return 0;	/* not whole yet */
		in.length = (size_t)len - 4;
		in.value = gss_in + 4;
		maj = gss_unwrap(&min, gss.ctx, &in, &gss.plain, &conf, NULL);
		gss_consume((size_t)len);
		if (GSS_ERROR(maj)) {
			gss_log(gss.s, "unwrap", maj, min);
			return -1;
		}
		if (maj & GSS_SEQ_TCP) {
			gss_refuse_log(gss.s, "unwrap: a replayed, out-of-order "
			    "or missing message");
			return -1;
		}
		if (gss.level == 2 && !conf) {
			gss_refuse_log(gss.s, "message without confidentiality "
			    "at level 2");
			return -1;
		}
		gss.plain_off = 0;
	}
	return 0;
}

/*
 * Client to pair: read, unwrap, write. 0, or why the session must end:
 * -1 a message that does not unwrap, -2 the client is gone, -3 not a
 * message, or EOF inside one.
 */
static int
gss_pump_in(void)
{
	OM_uint32	 min;
	ssize_t		 n;
	int		 r;

	if (ready(gss.pi_r)) {
		n = read(gss.rfd, gss_in + gss.inlen, sizeof(gss_in) - gss.inlen);
		if (n > 0)
			gss.inlen += (unsigned)n;
		else if (n == 0)
			gss.in_eof = 1;
		else if (!AGAIN(errno))
			return -2;
	}
	for (;;) {
		if ((r = gss_pump_unwrap()) < 0)
			return r;
		if (gss.plain.length == 0 || gss.pfd < 0)
			break;
		n = write(gss.pfd, (unsigned char *)gss.plain.value +
		    gss.plain_off, gss.plain.length - gss.plain_off);
		if (n < 0 && AGAIN(errno))
			break;
		if (n < 0)		/* the session has gone */
			n = (ssize_t)(gss.plain.length - gss.plain_off);
		gss.plain_off += (size_t)n;
		if (gss.plain_off == gss.plain.length)
			(void)gss_release_buffer(&min, &gss.plain);
	}
	if (gss.in_eof && gss.plain.length == 0) {
		if (gss.inlen > 0) {
			gss_refuse_log(gss.s, "EOF inside a message");
			return -3;
		}
		if (!gss.pair_shut)
			(void)shutdown(gss.pfd, SHUT_WR);
		gss.pair_shut = 1;
	}
	return 0;
}

/* Pair to client: read, wrap, write; -1 when the session must end. */
static int
gss_pump_out(void)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in, out;
	ssize_t		 n;

	if (gss.outlen == 0 && ready(gss.pi_pr)) {
		n = read(gss.pfd, scratch, gss.chunk);
		if (n <= 0 && !(n < 0 && AGAIN(errno)))
			gss.pair_eof = 1;
		if (n > 0) {
			in.length = (size_t)n;
			in.value = scratch;
			out.length = 0;
			out.value = NULL;
			maj = gss_wrap(&min, gss.ctx, gss.level == 2,
			    GSS_C_QOP_DEFAULT, &in, NULL, &out);
			if (GSS_ERROR(maj) || out.length > GSS_TOKEN_MAX) {
				gss_log(gss.s, "wrap", maj, min);
				(void)gss_release_buffer(&min, &out);
				return -1;
			}
			gss_out[0] = 1;
			gss_out[1] = GSS_MSG_DATA;
			gss_out[2] = (unsigned char)(out.length >> 8);
			gss_out[3] = (unsigned char)(out.length & 0xff);
			memcpy(gss_out + 4, out.value, out.length);
			gss.outlen = 4 + out.length;
			gss.out_off = 0;
			(void)gss_release_buffer(&min, &out);
		}
	}
	while (gss.outlen > 0) {
		n = write(gss.wfd, gss_out + gss.out_off,
		    gss.outlen - gss.out_off);
		if (n < 0)
			return AGAIN(errno) ? 0 : -1;
		gss.out_off += (size_t)n;
		if (gss.out_off == gss.outlen)
			gss.outlen = 0;
	}
	if (gss.pair_eof && !gss.client_shut) {
		(void)shutdown(gss.wfd, SHUT_WR);
		gss.client_shut = 1;
	}
	return 0;
}

/*
 * One pass of the pump. It ends when both ways are done, or when its
 * session has ended and the last bytes are out (or SOCKS5_LINGER_MS
 * has passed since).
 */
static void
gss_pump_run(void)
{
	int	 r;

	if (!gss.on)
		return;
	if ((r = gss_pump_in()) < 0) {
		gss_pump_fail(r == -1 ? "gssapi-unwrap" : r == -2 ?
		    "client-gone" : "gssapi-bad-message");
		return;
	}
	if (gss_pump_out() == -1) {
		gss_pump_fail("client-gone");
		return;
	}
	if (srv.nactive > 0)
		gss.deadline = srv.now + SOCKS5_LINGER_MS;
	else if (gss.client_shut || DUE(gss.deadline, srv.now))
		gss_pump_stop();
}

/* ---- UDP at levels 1 and 2 ---- */

/*
 * A datagram from the client, *n bytes in p: 01 03 LEN TOKEN, unwrapped
 * in place and *n made its plain length. 0, or -1: drop it.
 */
static int
gss_udp_open(unsigned char *p, ssize_t *n)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in, plain;
	int		 conf = 0, r = -1;

	if (gss.level == 0)
		return 0;
	if (gss_msg_parse(p, (size_t)*n, GSS_MSG_DATA) != (long)*n)
		return -1;
	in.length = (size_t)*n - 4;
	in.value = p + 4;
	plain.length = 0;
	plain.value = NULL;
	maj = gss_unwrap(&min, gss.ctx, &in, &plain, &conf, NULL);
	if (!GSS_ERROR(maj) && !(maj & GSS_SEQ_UDP) &&
	    (conf || gss.level < 2) && plain.length <= (size_t)*n) {
		memcpy(p, plain.value, plain.length);
		*n = (ssize_t)plain.length;
		r = 0;
	}
	(void)gss_release_buffer(&min, &plain);
	return r;
}

/*
 * A datagram for the client, *n bytes at *p: wrapped into gss_out as
 * 01 03 LEN TOKEN, and *p, *n made to say so. 0, or -1 (drop it).
 */
static int
gss_udp_seal(const unsigned char **p, size_t *n)
{
	OM_uint32	 maj, min;
	gss_buffer_desc	 in, out;
	int		 r = -1;

	if (gss.level == 0)
		return 0;
	in.length = *n;
	in.value = (void *)*p;
	out.length = 0;
	out.value = NULL;
	maj = gss_wrap(&min, gss.ctx, gss.level == 2, GSS_C_QOP_DEFAULT, &in,
	    NULL, &out);
	if (!GSS_ERROR(maj) && out.length <= GSS_TOKEN_MAX) {
		gss_out[0] = 1;
		gss_out[1] = GSS_MSG_DATA;
		gss_out[2] = (unsigned char)(out.length >> 8);
		gss_out[3] = (unsigned char)(out.length & 0xff);
		memcpy(gss_out + 4, out.value, out.length);
		*p = gss_out;
		*n = 4 + out.length;
		r = 0;
	}
	(void)gss_release_buffer(&min, &out);
	return r;
}

/* ---- the session's process ---- */

/* The server's descriptor that is the client's socket (UDP, BIND). */
static int
client_sock(const struct session *s)
{
	return gss.on && s == gss.s ? gss.rfd : s->fd[FD_CLIENT];
}

/*
 * In the child: leave the server's tables and descriptors, become a
 * single-session server for the one client, run it, and exit.
 */
static void
gss_child(struct session *p)
{
	struct socks5_config	 cf = srv.conf;
	struct gss_conf		 g = srv.gss;
	union sockaddr_any	 peer = p->peer;
	unsigned char		 hs[SOCKS5_HS_SIZE];
	unsigned		 hslen = p->hslen;
	unsigned char		 out[sizeof(p->out)];
	unsigned		 outlen = p->outlen;
	unsigned long		 start = p->start, start_s = p->start_s;
	struct session		*s;
	int			 fd = p->fd[FD_CLIENT];

	memcpy(hs, p->hs, hslen);
	memcpy(out, p->out, outlen);		/* 05 01, if not all sent */
	p->fd[FD_CLIENT] = p->fd[FD_CLIENT_OUT] = -1;
	close_fd(&gss.life[1]);
	server_forget();
	cf.user_file = NULL;		/* no logins here */
	if (startup_common(&cf, 1, 2, WITH_UDP ? 2 : 0) != 0)
		_exit(1);
	srv.gss = g;
	srv.single = 1;
	srv.fd_limit = 0;
	srv.lifeline[0] = gss.life[0];	/* EOF: the server is gone */
	s = session_new(fd, fd, &peer.sa, sa_len(&peer));
	s->start = start;
	s->start_s = start_s;
	memcpy(s->hs, hs, hslen);
	s->hslen = hslen;
	memcpy(s->out, out, outlen);
	s->outlen = outlen;
	gss_begin(s);
	if (s->state == S_REQUEST)
		handshake_run(s);	/* a request that came with the rest */
	if (s->state == S_DONE)
		session_free(s);
	while ((srv.nactive > 0 || gss_pump_busy()) && !got_term)
		if (loop_once() == -1)
			break;
	gss_pump_stop();
	socks5_close();
	_exit(0);
}

/*
 * S_GREETING chose method 01: 05 01 at once (a client may read it
 * without waiting, as curl does), then, in a single-session server, go
 * on here; else fork the session's process and let the session go from
 * this one. When no process can be forked the session ends.
 */
static void
gss_start(struct session *s)
{
	static const unsigned char yes[2] = { SOCKS5_VERSION,
	    SOCKS5_METHOD_GSSAPI };
	char		 peer[64];
	pid_t		 pid;

	s->method = SOCKS5_METHOD_GSSAPI;
	reply_send(s, yes, 2);
	if (s->state == S_DONE)
		return;
	if (srv.single) {
		gss_begin(s);
		return;
	}
	if (!gss.life_made && pipe(gss.life) == 0) {
		set_cloexec(gss.life[0]);
		set_cloexec(gss.life[1]);
		gss.life_made = 1;
	}
	if (!gss.life_made || (pid = fork()) == -1) {
		logmsg(LOG_WARNING, "warning: gssapi: no process for a "
		    "session: %s", strerror(errno));
		session_end(s, "general-failure");
		return;
	}
	if (pid == 0)
		gss_child(s);
	srv.gss_fam[srv.ngss] = peer_key(&s->peer, srv.gss_key[srv.ngss]);
	srv.gss_pid[srv.ngss++] = pid;
	logmsg(LOG_DEBUG, "gssapi: session from %s in process %ld",
	    addr_str(peer, sizeof(peer), &s->peer), (long)pid);
	session_end(s, NULL);		/* no line here: the child logs */
}

/*
 * At startup, as the user the server runs as: is there a key of -g's
 * service to accept with? -k names the keytab through KRB5_KTNAME
 * (MIT and Heimdal read it). 0, or -1 (logged).
 */
static int
gss_startup(void)
{
	OM_uint32	 maj, min;
	gss_cred_id_t	 cred = GSS_C_NO_CREDENTIAL;
	char		 words[512];

	if (srv.gss.service == NULL)
		return 0;
	if (srv.gss.keytab != NULL && setenv("KRB5_KTNAME", srv.gss.keytab,
	    1) == -1)
		return -1;
	if (GSS_ERROR(maj = gss_acquire(&cred, &min))) {
		logmsg(LOG_ERR, "fatal: gssapi: cannot accept for %s (keytab "
		    "%s): %s", srv.gss.service, srv.gss.keytab != NULL ?
		    srv.gss.keytab : getenv("KRB5_KTNAME") != NULL ?
		    getenv("KRB5_KTNAME") : "the system's",
		    gss_words(words, sizeof(words), maj, min));
		return -1;
	}
	(void)gss_release_cred(&min, &cred);
	return 0;
}

#endif /* SOCKS5_GSSAPI */

/* ------------------------------------------------------------------ */
/* main: the command line.                                             */

#ifndef SOCKS5_NO_MAIN

static void
usage(FILE *fp)
{
	(void)fprintf(fp,
	    "usage: socks5 [-46dhiVv] [-a rule] [-b addr] [-c max] [-e addr] "
	    "[-f secs]\n"
	    "              [-g service] [-k keytab] [-L levels] [-l addr] "
	    "[-m bufs]\n"
	    "              [-p port] [-P pidfile] [-t secs] [-u file] "
	    "[-U user]\n"
	    "              [-w workers]\n");
}

/* A decimal number in [lo, hi], or -1. */
static long
number(const char *s, long lo, long hi)
{
	char	*end;
	long	 v;

	if (*s < '0' || *s > '9')	/* no sign, no blank */
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	return v;
}

/*
 * With -i among the options, descriptors 0, 1 and 2 may all be the
 * client's connection (inetd puts it on the three): option errors are
 * logged to syslog then, without the usage, and nothing is written there.
 */
static int	 opts_logged;

/*
 * Is -i among the options? Asked before getopt(), since an error may
 * come before the -i. A word of flags with an i in it counts (-i, -vi);
 * the i of "-ti" is -t's argument. The one word it can mistake, an
 * argument spelled "-i", sends no more than a usage error to syslog.
 */
static int
inetd_asked(int argc, char *argv[])
{
	const char	*p;
	int		 i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (argv[i][0] != '-')
			continue;
		for (p = argv[i] + 1; *p != '\0' && strchr("46dhVv", *p); p++)
			;
		if (*p == 'i')
			return 1;
	}
	return 0;
}

static int
bad(const char *what, const char *arg)
{
	if (opts_logged) {
		logmsg(LOG_ERR, "bad %s: %s", what, arg);
		return 64;
	}
	(void)fprintf(stderr, "socks5: bad %s: %s\n", what, arg);
	usage(stderr);
	return 64;
}

/* An option of a feature this build left out: the usage exit status. */
static int
left_out(int ch, const char *what)
{
	if (opts_logged) {
		logmsg(LOG_ERR, "-%c: %s left out of this build", ch, what);
		return 64;
	}
	(void)fprintf(stderr, "socks5: -%c: %s left out of this build\n", ch,
	    what);
	usage(stderr);
	return 64;
}

/*
 * After -h or -V: 0 when standard output took the text, or 1 saying
 * why (a full disk, a closed descriptor), as a failed write should.
 */
static int
printed(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	(void)fprintf(stderr, "socks5: standard output: %s\n",
	    strerror(errno));
	return 1;
}

/* An unknown option, or one without its argument: getopt() said which. */
static int
bad_option(int ch)
{
	if (opts_logged)
		logmsg(LOG_ERR, "bad option -%c, or its argument missing", ch);
	else
		usage(stderr);
	return 64;
}

/* What -V adds: the features this build left out, or nothing. */
static const char	 without[] =
#if !WITH_UDP || !WITH_BIND || !WITH_RULES || !WITH_AUTH
    " (without"
#if !WITH_UDP
    " udp"
#endif
#if !WITH_BIND
    " bind"
#endif
#if !WITH_RULES
    " rules"
#endif
#if !WITH_AUTH
    " auth"
#endif
    ")"
#endif
    "";

/*
 * Descriptors 0, 1 and 2 are made open before anything else is, so that
 * neither the listener nor the syslog socket lands on one of them (where
 * -d's /dev/null, or a stray write, would clobber it). In inetd mode
 * fd 0 is the client and without it there is nothing to serve; a socket
 * client that came without fd 1 is answered on fd 0. Sets *wfd, the
 * client's write side; -1 when there is no usable client.
 */
static int
stdfds_open(int inetd, int *wfd)
{
	socklen_t	 len;
	int		 fd, type, r = 0;

	*wfd = 1;
	if (inetd && fcntl(0, F_GETFD) == -1)
		r = -1;
	else if (inetd && fcntl(1, F_GETFD) == -1) {
		len = sizeof(type);
		if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) == -1)
			r = -1;
		*wfd = 0;
	}
	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		(void)close(fd);
	return r;
}

/* The command line: the configuration and what main() adds to it. */
struct cmdline {
	struct socks5_config cf;
	struct run_opts	 ro;
	int		 inetd;			/* -i */
	int		 port_given;		/* -p */
	const char	*listen[SOCKS5_LISTENERS];	/* -l */
	int		 lfds[SOCKS5_LISTENERS];	/* from the launcher */
	const char	*rules[SOCKS5_MAXRULES];
	char		 pidpath[1024];		/* -P and -u, made absolute */
	char		 userpath[1024];
	char		 keytabpath[1024];
};

/* path, or the current directory and path in buf (NULL: too long). */
static const char *
absolute(char *buf, const char *path)
{
	if (path[0] == '/')
		return path;
	if (getcwd(buf, 1024 - 1) == NULL ||
	    strlen(buf) + strlen(path) + 2 > 1024) {
		(void)strncpy(buf, path, 1023);
		buf[1023] = '\0';
		return NULL;
	}
	return strcat(strcat(buf, "/"), path);
}

#define OPT_TAKEN	(-1)	/* option() took it; go on */

/*
 * -L: the protection levels GSS-API sessions may have, a comma list of
 * clear (0), integrity (1) and confidentiality (2); OPT_TAKEN, or 64.
 */
static int
opt_levels(struct cmdline *cl, const char *arg)
{
	static const char *const names[3] = {
	    "clear", "integrity", "confidentiality" };
	const char	*p = arg;
	size_t		 n;
	int		 i;

	cl->ro.gss.levels = 0;
	do {
		n = strcspn(p, ",");
		for (i = 0; i < 3; i++)
			if ((n == strlen(names[i]) &&
			    strncmp(p, names[i], n) == 0) ||
			    (n == 1 && *p == '0' + i))
				break;
		if (i == 3)
			return bad("protection levels", arg);
		cl->ro.gss.levels |= 1u << i;
		p += n;
	} while (*p++ == ',');
	return OPT_TAKEN;
}

/* -g, -k and -L, GSS-API's: OPT_TAKEN, or the usage exit status. */
static int
opt_gss(struct cmdline *cl, int ch, const char *arg)
{
	if (!WITH_GSSAPI)
		return left_out(ch, "GSS-API is");
	if (ch == 'L')
		return opt_levels(cl, arg);
	if (ch == 'k') {
		if (*arg == '\0')
			return bad("keytab", arg);
		cl->ro.gss.keytab = arg;
		return OPT_TAKEN;
	}
	if (*arg == '\0' || strcspn(arg, "/@") != strlen(arg))
		return bad("service name", arg);	/* not a principal */
	cl->ro.gss.service = arg;
	return OPT_TAKEN;
}

/* An address option: OPT_TAKEN, or the usage exit status. */
static int
opt_address(const char **dst, const char *arg)
{
	union sockaddr_any	 a;
	socklen_t		 alen;

	if (addr_parse(&a, &alen, arg, 0) == -1)
		return bad("address", arg);
	*dst = arg;
	return OPT_TAKEN;
}

/* A number option in [lo, hi]: OPT_TAKEN, or the usage exit status. */
static int
opt_number(int *dst, const char *arg, long lo, long hi, const char *what)
{
	long	 v;

	if ((v = number(arg, lo, hi)) < 0)
		return bad(what, arg);
	*dst = (int)v;
	return OPT_TAKEN;
}

/* -l: one more listen address; OPT_TAKEN, or the usage exit status. */
static int
opt_listen(struct cmdline *cl, const char *arg)
{
	union sockaddr_any	 a;
	socklen_t		 alen;
	char			 host[LISTEN_HOST], why[96];
	int			 r;

	if (cl->cf.nlisten == SOCKS5_LISTENERS)
		return bad("listen address (too many -l)", arg);
	if ((r = listen_spec_parse(&a, &alen, host, arg, 0)) == -1)
		return bad("listen address", arg);
	if (r == LISTEN_MAPPED) {
		(void)strcpy(why, "listen address (IPv4-mapped, which "
		    "IPV6_V6ONLY refuses: use ");
		(void)inet_ntop(AF_INET, a.sin6.sin6_addr.s6_addr + 12,
		    why + strlen(why), INET_ADDRSTRLEN);
		return bad(strcat(why, ")"), arg);
	}
	cl->listen[cl->cf.nlisten++] = arg;
	cl->cf.listen = cl->listen;
	return OPT_TAKEN;
}

/* -a: one more access rule; OPT_TAKEN, or the usage exit status. */
static int
opt_rule(struct cmdline *cl, const char *arg)
{
#if WITH_RULES
	struct rule	 r;

	if (cl->cf.nrules == SOCKS5_MAXRULES || rule_parse(&r, arg) == -1)
		return bad("rule", arg);
	cl->rules[cl->cf.nrules++] = arg;
	cl->cf.rules = cl->rules;
	return OPT_TAKEN;
#else
	(void)cl;
	(void)arg;
	return left_out('a', "access rules are");
#endif
}

/* -m: the spill buffer count, if the address space can hold them. */
static int
opt_buffers(struct socks5_config *cf, const char *arg)
{
	if (number(arg, 2, 1048576) > 0 && !pool_fits(number(arg, 2, 1048576)))
		return bad("buffer count (too many for this system)", arg);
	return opt_number(&cf->spill_buffers, arg, 2, 1048576,
	    "buffer count");
}

/*
 * -h and -V: the usage or the release on standard output, exit 0 (the
 * caller checks that standard output took it); with -i a usage error,
 * as their output would go to the client.
 */
static int
opt_info(int ch)
{
	if (opts_logged)
		return bad("option with -i", ch == 'h' ? "-h" : "-V");
	if (ch == 'h')
		usage(stdout);
	else
		(void)printf("socks5 %s%s%s\n", SOCKS5_RELEASE, without,
		    WITH_GSSAPI ? " (with gssapi)" : "");
	return 0;
}

/* -d, -P, -U and -w, what main() adds around the loop: as option(). */
static int
opt_run(struct cmdline *cl, int ch, const char *arg)
{
	switch (ch) {
	case 'd':
		cl->ro.daemon = 1;
		return OPT_TAKEN;
	case 'P':
		cl->ro.pidfile = arg;
		return OPT_TAKEN;
	case 'U':
		cl->ro.user = arg;
		return OPT_TAKEN;
	default:
		return opt_number(&cl->ro.workers, arg, 1, SOCKS5_MAXWORKERS,
		    "worker count");
	}
}

/* One command-line option into cl: OPT_TAKEN, or an exit status. */
static int
option(struct cmdline *cl, int ch, const char *arg)
{
	struct socks5_config	*cf = &cl->cf;

	switch (ch) {
	case '4':
	case '6':
		if (cf->family != 0 && cf->family != ch - '0')
			return bad("family", "-4 with -6");
		cf->family = ch - '0';
		return OPT_TAKEN;
	case 'a':
		return opt_rule(cl, arg);
	case 'b':
		return opt_address(&cf->bind_addr, arg);
	case 'c':
		return opt_number(&cf->max_sessions, arg, 1, 65535,
		    "session count");
	case 'd':
	case 'P':
	case 'U':
	case 'w':
		return opt_run(cl, ch, arg);
	case 'e':
		if (!WITH_BIND && !WITH_UDP)
			return left_out(ch, "BIND and UDP ASSOCIATE are");
		return opt_address(&cf->external_addr, arg);
	case 'f':
		if (!WITH_UDP)
			return left_out(ch, "UDP ASSOCIATE is");
		return opt_number(&cf->frag_timeout, arg, SOCKS5_FRAG_SECS,
		    3600, "reassembly timeout");
	case 'g':
	case 'k':
	case 'L':
		return opt_gss(cl, ch, arg);
	case 'h':
	case 'V':
		return opt_info(ch);
	case 'i':
		cl->inetd = 1;
		return OPT_TAKEN;
	case 'l':
		return opt_listen(cl, arg);
	case 'm':
		return opt_buffers(cf, arg);
	case 'p':
		cl->port_given = 1;
		return opt_number(&cf->port, arg, 0, 65535, "port");
	case 't':
		return opt_number(&cf->idle_timeout, arg, 1, (long)LONGEST_WAIT_S,
		    "timeout");
	case 'u':
		if (!WITH_AUTH)
			return left_out(ch, "logins are");
		cf->user_file = arg;
		return OPT_TAKEN;
	case 'v':
		cf->verbose++;
		return OPT_TAKEN;
	default:
		return bad_option(optopt);
	}
}

/* What the options say together; 0, or an exit status. */
static int
options_check(struct cmdline *cl)
{
	struct socks5_config	*cf = &cl->cf;

	/* An empty name would fail only later, as the directory or no one */
	if (cl->ro.pidfile != NULL && *cl->ro.pidfile == '\0')
		return bad("pid file", cl->ro.pidfile);
	if (cf->user_file != NULL && *cf->user_file == '\0')
		return bad("user file", cf->user_file);
	if (cl->ro.user != NULL && *cl->ro.user == '\0')
		return bad("user", cl->ro.user);
	if (cf->family == 6 && cf->bind_addr != NULL &&
	    strchr(cf->bind_addr, ':') == NULL)
		return bad("-b address for -6", cf->bind_addr);
	if (cf->family == 4 && cf->bind_addr != NULL &&
	    strchr(cf->bind_addr, ':') != NULL)
		return bad("-b address for -4", cf->bind_addr);
	/* -d changes to /: keep relative names relative to here. */
	if (cl->ro.pidfile != NULL && (cl->ro.pidfile =
	    absolute(cl->pidpath, cl->ro.pidfile)) == NULL)
		return bad("pid file", cl->pidpath);
	if (cf->user_file != NULL &&
	    (cf->user_file = absolute(cl->userpath, cf->user_file)) == NULL)
		return bad("user file", cl->userpath);
	if (cl->inetd || cl->ro.daemon)
		cf->log = SOCKS5_LOG_SYSLOG;
	if (cl->ro.gss.service == NULL &&
	    (cl->ro.gss.keytab != NULL || cl->ro.gss.levels != 0))
		return bad("GSS-API options", "-k and -L need -g");
	if (cl->ro.gss.levels == 0)	/* integrity, confidentiality */
		cl->ro.gss.levels = 6;
	/* -k is read by the library after -d changes to / */
	if (cl->ro.gss.keytab != NULL && (cl->ro.gss.keytab =
	    absolute(cl->keytabpath, cl->ro.gss.keytab)) == NULL)
		return bad("keytab", cl->keytabpath);
	return 0;
}

/*
 * systemd's socket activation: when LISTEN_PID is this process,
 * LISTEN_FDS descriptors from 3 on are listening sockets. Returns how
 * many (0: none were passed), or -1. As sd_listen_fds(3) has it,
 * LISTEN_FDS=0 passes none, and one that is not a number is an error.
 */
static int
sockets_from_systemd(struct cmdline *cl)
{
	const char	*pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char		 text[64];
	long		 i, n;

	if (pid == NULL || fds == NULL ||
	    number(pid, 1, 2147483647L) != (long)getpid())
		return 0;
	(void)escape(text, sizeof(text), fds, strlen(fds));
	if (fds[0] == '\0' || fds[strspn(fds, "0123456789")] != '\0') {
		logmsg(LOG_ERR, "fatal: LISTEN_FDS=%s: not a number", text);
		return -1;
	}
	if ((n = number(fds, 0, SOCKS5_LISTENERS)) < 0) {
		logmsg(LOG_ERR, "fatal: LISTEN_FDS=%s: at most %d sockets",
		    text, SOCKS5_LISTENERS);
		return -1;
	}
	for (i = 0; i < n; i++)
		cl->lfds[i] = 3 + (int)i;
	return (int)n;
}

/*
 * inetd's wait mode: with -i, descriptor 0 may be the listening socket
 * rather than a client. It moves above 2, and 0, 1 and 2 (inetd put
 * the socket on all three) become /dev/null. Returns 1 if so, 0 if
 * descriptor 0 is not listening, -1 on an error.
 */
static int
socket_from_inetd(struct cmdline *cl)
{
#ifdef SO_ACCEPTCONN
	socklen_t	 len;
	int		 on = 0, fd, nul;

	len = sizeof(on);
	if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == -1 ||
	    on == 0)
		return 0;
	if ((fd = fcntl(0, F_DUPFD, 3)) == -1 ||
	    (nul = open("/dev/null", O_RDWR)) == -1) {
		logmsg(LOG_ERR, "fatal: -i: %s", strerror(errno));
		return -1;
	}
	(void)dup2(nul, 0);
	(void)dup2(nul, 1);
	(void)dup2(nul, 2);
	if (nul > 2)
		(void)close(nul);
	cl->lfds[0] = fd;
	return 1;
#else
	(void)cl;
	return 0;			/* no way to tell: a client */
#endif
}

/*
 * Listening sockets passed by the launcher replace -l: returns 0 (none,
 * or taken) or an exit status. In inetd's wait mode the server runs as
 * without -i, and without -d: inetd waits for it to exit. (From systemd,
 * -d works as ever.)
 */
static int
launcher_sockets(struct cmdline *cl)
{
	int	 n;

	n = cl->inetd ? socket_from_inetd(cl) : sockets_from_systemd(cl);
	if (n <= 0)
		return n == 0 ? 0 : 1;
	if (cl->cf.nlisten > 0 || cl->port_given) {
		logmsg(LOG_ERR, "fatal: -l and -p cannot be used with "
		    "listening sockets from the launcher");
		if (!opts_logged)	/* as every exit status 64 */
			usage(stderr);
		return 64;
	}
	cl->cf.listen_fds = cl->lfds;
	cl->cf.nlisten_fds = n;
	if (cl->inetd)
		cl->ro.daemon = 0;
	cl->inetd = 0;
	return 0;
}

int
main(int argc, char *argv[])
{
	struct cmdline		 cl;
	int			 ch, r, wfd;

	memset(&cl, 0, sizeof(cl));
	socks5_config_init(&cl.cf);
	if (inetd_asked(argc, argv)) {
		opts_logged = 1;
		opterr = 0;		/* getopt() would write on fd 2 */
		srv.conf.log = SOCKS5_LOG_SYSLOG;
		openlog("socks5", LOG_PID, LOG_DAEMON);
	}
	while ((ch = getopt(argc, argv, "46a:b:c:de:f:g:hik:l:L:m:p:P:t:u:U:Vvw:")) != -1)
		if ((r = option(&cl, ch, optarg)) != OPT_TAKEN)
			return r == 0 ? printed() : r;	/* 0: -h, -V */
	if (optind != argc)
		return bad("operand", argv[optind]);
	if ((r = options_check(&cl)) != 0)
		return r;
	if (stdfds_open(cl.inetd, &wfd) == -1) {
		srv.conf = cl.cf;
		logmsg(LOG_ERR, "fatal: -i: no client on descriptors 0 and 1");
		return 1;
	}
	srv.conf = cl.cf;		/* for logmsg() */
	if ((r = launcher_sockets(&cl)) != 0)
		return r;
	r = cl.inetd ? serve_one(&cl.cf, 0, wfd, &cl.ro) :
	    serve_loop(&cl.cf, &cl.ro);
	if (srv.rules_invalid)
		return 64;
	if (srv.users_unreadable)
		return 66;
	return r == 0 ? 0 : 1;
}

#endif /* SOCKS5_NO_MAIN */
