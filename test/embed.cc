// embed.cc - embedding test for socks5.h from C++ (the C one is embed.c).
//
// Build: cc -c -DSOCKS5_NO_MAIN -o socks5.o socks5.c   (as C!)
//        g++ -I.. -o embedxx embed.cc socks5.o
//
// A) socks5_open() on 127.0.0.1 port 0, the port found among the
//    descriptors of socks5_pollfds() (the listening TCP socket), the server
//    driven from this program's own poll() loop kept in a std::vector
//    together with the program's own echo server and clients: CONNECT by
//    IPv4 literal and by DOMAINNAME, bytes checked, half-close.
// B) socks5_serve_fd() in a forked child on one end of a socketpair, a
//    CONNECT through it, the child's exit status 0.
//
// Prints "ok: ..." per check and "embedxx: all ok"; exit 0 on success.

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "socks5.h"

namespace {

[[noreturn]] void fail(const std::string &what)
{
	std::printf("FAIL: %s\n", what.c_str());
	std::fflush(stdout);
	std::exit(1);
}

void ok(const std::string &what)
{
	std::printf("ok: %s\n", what.c_str());
	std::fflush(stdout);
}

long now_ms()
{
	using namespace std::chrono;
	return static_cast<long>(duration_cast<milliseconds>(
	    steady_clock::now().time_since_epoch()).count());
}

void nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		fail(std::string("fcntl: ") + std::strerror(errno));
}

sockaddr_in loopback(unsigned port)
{
	sockaddr_in a;
	std::memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(static_cast<unsigned short>(port));
	return a;
}

// Something with a descriptor that takes part in the poll loop.
struct Pollee {
	int fd = -1;
	virtual ~Pollee() { if (fd >= 0) ::close(fd); }
	virtual short events() const = 0;
	virtual void io(short revents) = 0;
	virtual bool gone() const { return fd < 0; }
};

std::vector<std::unique_ptr<Pollee>> own;	// the program's descriptors

struct EchoConn : Pollee {
	std::vector<unsigned char> buf;
	bool eof = false;
	explicit EchoConn(int f) { fd = f; nonblock(fd); }
	short events() const override {
		return static_cast<short>((eof ? 0 : POLLIN) |
		    (buf.empty() ? 0 : POLLOUT));
	}
	void io(short rev) override {
		unsigned char tmp[16384];
		if ((rev & (POLLIN | POLLHUP | POLLERR)) && !eof) {
			ssize_t n = ::read(fd, tmp, sizeof tmp);
			if (n > 0)
				buf.insert(buf.end(), tmp, tmp + n);
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				eof = true;
		}
		if (!buf.empty()) {
			ssize_t n = ::write(fd, buf.data(), buf.size());
			if (n > 0)
				buf.erase(buf.begin(), buf.begin() + n);
		}
		if (eof && buf.empty()) {
			::shutdown(fd, SHUT_WR);
			::close(fd);
			fd = -1;
		}
	}
};

struct EchoServer : Pollee {
	unsigned port = 0;
	unsigned long accepted = 0;
	EchoServer() {
		sockaddr_in a = loopback(0);
		socklen_t alen = sizeof a;
		fd = ::socket(AF_INET, SOCK_STREAM, 0);
		if (fd == -1 || ::bind(fd, reinterpret_cast<sockaddr *>(&a),
		    sizeof a) == -1 || ::listen(fd, 16) == -1 ||
		    ::getsockname(fd, reinterpret_cast<sockaddr *>(&a),
		    &alen) == -1)
			fail("echo listener");
		nonblock(fd);
		port = ntohs(a.sin_port);
	}
	short events() const override { return POLLIN; }
	void io(short) override;
	bool gone() const override { return false; }
};

std::vector<std::unique_ptr<Pollee>> pending;	// accepted this pass

void EchoServer::io(short)
{
	int c;
	while ((c = ::accept(fd, nullptr, nullptr)) >= 0) {
		pending.emplace_back(new EchoConn(c));
		accepted++;
	}
}

std::vector<unsigned char> make_payload(std::size_t n)
{
	std::vector<unsigned char> p(n);
	unsigned long x = 11;
	for (auto &b : p) {
		x = (x * 1103515245UL + 12345UL) & 0x7fffffffUL;
		b = static_cast<unsigned char>(x >> 16);
	}
	return p;
}

const std::vector<unsigned char> payload = make_payload(200000);

// A SOCKS client: greeting, CONNECT, payload, half-close, echo, EOF.
struct Client : Pollee {
	enum Step { Connecting, Greeting, Reply, Relay, Eof, Done } step;
	std::vector<unsigned char> out, in, request;
	std::size_t off = 0;
	std::string why;
	bool shut = false;

	Client(int f, bool connecting, const std::string &host, unsigned port)
	{
		fd = f;
		step = connecting ? Connecting : Greeting;
		request = { SOCKS5_VERSION, SOCKS5_CMD_CONNECT, 0 };
		in_addr ia;
		if (inet_pton(AF_INET, host.c_str(), &ia) == 1) {
			request.push_back(SOCKS5_ATYP_IPV4);
			const unsigned char *p =
			    reinterpret_cast<const unsigned char *>(&ia);
			request.insert(request.end(), p, p + 4);
		} else {
			request.push_back(SOCKS5_ATYP_DOMAIN);
			request.push_back(static_cast<unsigned char>(host.size()));
			request.insert(request.end(), host.begin(), host.end());
		}
		request.push_back(static_cast<unsigned char>(port >> 8));
		request.push_back(static_cast<unsigned char>(port & 0xff));
		out = { SOCKS5_VERSION, 1, SOCKS5_METHOD_NONE };
	}
	bool gone() const override { return step == Done; }
	short events() const override {
		if (step == Connecting)
			return POLLOUT;
		return static_cast<short>(POLLIN |
		    (off < out.size() ? POLLOUT : 0));
	}
	void bad(const std::string &w) { if (why.empty()) why = w; step = Done; }
	void send(const std::vector<unsigned char> &v) { out = v; off = 0; }
	void io(short rev) override {
		if (step == Connecting) {
			int err = 0;
			socklen_t l = sizeof err;
			if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == -1 ||
			    err != 0)
				return bad("connect failed");
			step = Greeting;
		}
		if ((rev & POLLOUT) && off < out.size()) {
			ssize_t n = ::write(fd, out.data() + off, out.size() - off);
			if (n > 0)
				off += static_cast<std::size_t>(n);
			if (step == Relay && off == out.size() && !shut) {
				::shutdown(fd, SHUT_WR);
				shut = true;
			}
		}
		if (!(rev & (POLLIN | POLLHUP | POLLERR)))
			return;
		unsigned char tmp[65536];
		ssize_t n = ::read(fd, tmp, sizeof tmp);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				bad("read failed");
			return;
		}
		if (n == 0) {
			if (step == Eof)
				step = Done;
			else
				bad("server closed early in step " +
				    std::to_string(step));
			return;
		}
		in.insert(in.end(), tmp, tmp + n);
		if (step == Greeting && in.size() >= 2) {
			if (in[0] != 5 || in[1] != 0)
				return bad("greeting reply is not 05 00");
			in.erase(in.begin(), in.begin() + 2);
			step = Reply;
			send(request);
		}
		if (step == Reply && in.size() >= 10) {
			if (in[0] != 5 || in[1] != 0 ||
			    in[3] != SOCKS5_ATYP_IPV4)
				return bad("CONNECT reply is not 05 00 00 01");
			in.erase(in.begin(), in.begin() + 10);
			step = Relay;
			send(payload);
		}
		if (step == Relay && in.size() >= payload.size()) {
			if (in != payload)
				return bad("echoed bytes differ");
			step = Eof;
		}
	}
};

// The loop: the server's descriptors first (when it is open), then ours.
bool run(bool with_server, long timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	std::vector<pollfd> fds;
	for (;;) {
		bool busy = false;
		for (auto &p : own)
			if (dynamic_cast<Client *>(p.get()) && !p->gone())
				busy = true;
		if (!busy)
			return true;
		long left = deadline - now_ms();
		if (left <= 0)
			return false;
		int n = 0, t = -1;
		if (with_server) {
			fds.resize(static_cast<std::size_t>(socks5_pollfds_max()));
			n = socks5_pollfds(fds.data(), static_cast<int>(fds.size()),
			    &t);
			if (n < 0)
				fail("socks5_pollfds");
		}
		fds.resize(static_cast<std::size_t>(n));
		std::vector<Pollee *> who;
		for (auto &p : own) {
			if (p->gone())
				continue;
			pollfd e;
			e.fd = p->fd;
			e.events = p->events();
			e.revents = 0;
			fds.push_back(e);
			who.push_back(p.get());
		}
		if (t < 0 || t > left)
			t = static_cast<int>(left);
		if (::poll(fds.data(), static_cast<nfds_t>(fds.size()),
		    t > 200 ? 200 : t) == -1 && errno != EINTR)
			fail("poll");
		if (with_server)
			socks5_dispatch(fds.data(), n);
		for (std::size_t i = 0; i < who.size(); i++)
			if (fds[static_cast<std::size_t>(n) + i].revents)
				who[i]->io(fds[static_cast<std::size_t>(n) +
				    i].revents);
		for (auto &p : pending)
			own.push_back(std::move(p));
		pending.clear();
	}
}

unsigned server_port()
{
	std::vector<pollfd> fds(static_cast<std::size_t>(socks5_pollfds_max()));
	int t, n = socks5_pollfds(fds.data(), static_cast<int>(fds.size()), &t);
	for (int i = 0; i < n; i++) {
		int acc = 0;
		socklen_t l = sizeof acc;
		sockaddr_in a;
		socklen_t alen = sizeof a;
		if (::getsockopt(fds[i].fd, SOL_SOCKET, SO_ACCEPTCONN, &acc,
		    &l) == 0 && acc && ::getsockname(fds[i].fd,
		    reinterpret_cast<sockaddr *>(&a), &alen) == 0 &&
		    a.sin_family == AF_INET)
			return ntohs(a.sin_port);
	}
	return 0;
}

Client *connect_client(unsigned port, const std::string &host, unsigned dport)
{
	int fd = ::socket(AF_INET, SOCK_STREAM, 0);
	if (fd == -1)
		fail("socket");
	nonblock(fd);
	sockaddr_in a = loopback(port);
	bool connecting = false;
	if (::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == -1) {
		if (errno != EINPROGRESS)
			fail("connect");
		connecting = true;
	}
	Client *c = new Client(fd, connecting, host, dport);
	own.emplace_back(c);
	return c;
}

void check(const Client *c, const std::string &what)
{
	if (!c->why.empty() || c->step != Client::Done)
		fail(what + ": " + (c->why.empty() ? "timed out in step " +
		    std::to_string(c->step) : c->why));
	ok(what);
}

} // namespace

int main()
{
	struct sigaction sa;
	std::memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, nullptr);

	EchoServer *echo = new EchoServer;
	own.emplace_back(echo);

	// A: our own loop
	socks5_config cf;
	socks5_config_init(&cf);
	cf.port = 0;
	cf.max_sessions = 8;
	const std::string listen = "127.0.0.1";
	cf.listen_addr = listen.c_str();
	if (socks5_open(&cf) != 0)
		fail("socks5_open");
	unsigned port = server_port();
	if (port == 0)
		fail("no listening socket among socks5_pollfds()");
	ok("socks5_open, listening on 127.0.0.1:" + std::to_string(port));

	Client *a = connect_client(port, "127.0.0.1", echo->port);
	Client *b = connect_client(port, "localhost", echo->port);
	run(true, 20000);
	check(a, "C++ own loop: CONNECT 127.0.0.1, " +
	    std::to_string(payload.size()) + " bytes echoed, half-close");
	check(b, "C++ own loop: CONNECT localhost (resolver helpers)");
	socks5_close();
	ok("socks5_close");

	// B: socks5_serve_fd in a forked child
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fail("socketpair");
	std::fflush(stdout);
	pid_t pid = ::fork();
	if (pid == -1)
		fail("fork");
	if (pid == 0) {
		::close(sv[0]);
		socks5_config c2;
		socks5_config_init(&c2);
		::_exit(socks5_serve_fd(&c2, sv[1]) == 0 ? 0 : 3);
	}
	::close(sv[1]);
	nonblock(sv[0]);
	Client *c = new Client(sv[0], false, "127.0.0.1", echo->port);
	own.emplace_back(c);
	run(false, 20000);
	check(c, "C++ socks5_serve_fd over a socketpair: CONNECT, bytes echoed");
	own.clear();	// closes our end: the child sees EOF
	int st = -1;
	long deadline = now_ms() + 5000;
	while (now_ms() < deadline && ::waitpid(pid, &st, WNOHANG) != pid)
		::poll(nullptr, 0, 20);
	if (st == -1) {
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
		fail("socks5_serve_fd child did not exit");
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("socks5_serve_fd child status " + std::to_string(st));
	ok("C++ socks5_serve_fd child exited 0");
	std::printf("embedxx: all ok\n");
	return 0;
}
