/*
 * qemu_soerror.c - test-only shim for running a big-endian MIPS build of
 * socks5 under qemu-user 7.2 (Debian 12).
 *
 * qemu-user 7.2 hands getsockopt(SOL_SOCKET, SO_ERROR) values through
 * untranslated: a refused non-blocking connect reports the HOST's
 * ECONNREFUSED (111 on x86) instead of the target's (146 on MIPS), so the
 * server answers REP 01 instead of 05 and the suite's refused-connect
 * tests fail for a reason that is the emulator's, not the server's.
 * Errno values returned by system calls themselves are translated fine.
 *
 * Linked into the MIPS binary with -Wl,--wrap=getsockopt (see
 * test/portable.sh, socks5.mips-qemu); socks5.c is unchanged. Only host
 * values 100..113 are mapped: no MIPS errno lies in that range, so a
 * value that is already a MIPS errno (a fixed qemu, real hardware) is
 * left alone.
 *
 * A linker without --wrap (zig cc 0.11's): build socks5.c and this file
 * with -Dgetsockopt=qemu_soerror_getsockopt instead (socks5.mipsel-qemu).
 * The macro renames socks5.c's calls; here it is undone, and the wrapper
 * takes that name and calls the real getsockopt.
 */

#define _XOPEN_SOURCE 600

#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <stddef.h>

#if defined(getsockopt)		/* -Dgetsockopt=qemu_soerror_getsockopt */
#undef getsockopt
#define REAL_GETSOCKOPT	getsockopt
#define WRAP_GETSOCKOPT	qemu_soerror_getsockopt
#else				/* -Wl,--wrap=getsockopt */
#define REAL_GETSOCKOPT	__real_getsockopt
#define WRAP_GETSOCKOPT	__wrap_getsockopt
#endif

int	REAL_GETSOCKOPT(int, int, int, void *, socklen_t *);
int	WRAP_GETSOCKOPT(int, int, int, void *, socklen_t *);

int
WRAP_GETSOCKOPT(int fd, int level, int name, void *val, socklen_t *len)
{
	int	 r, *e;

	r = REAL_GETSOCKOPT(fd, level, name, val, len);
	if (r != 0 || level != SOL_SOCKET || name != SO_ERROR ||
	    val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return r;
	e = (int *)val;
	switch (*e) {		/* x86/generic Linux values */
	case 100: *e = ENETDOWN; break;
	case 101: *e = ENETUNREACH; break;
	case 103: *e = ECONNABORTED; break;
	case 104: *e = ECONNRESET; break;
	case 110: *e = ETIMEDOUT; break;
	case 111: *e = ECONNREFUSED; break;
	case 112: *e = EHOSTDOWN; break;
	case 113: *e = EHOSTUNREACH; break;
	default: break;
	}
	return r;
}
