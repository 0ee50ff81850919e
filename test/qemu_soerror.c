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
 */

#define _XOPEN_SOURCE 600

#include <sys/types.h>
#include <sys/socket.h>
#include <errno.h>
#include <stddef.h>

int	__real_getsockopt(int, int, int, void *, socklen_t *);
int	__wrap_getsockopt(int, int, int, void *, socklen_t *);

int
__wrap_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int	 r, *e;

	r = __real_getsockopt(fd, level, name, val, len);
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
