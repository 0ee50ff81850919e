/*
 * count_check.c - for counter.test: socks5.c's byte counts (struct count,
 * count_add, count_str) against a 64-bit reference, across the 32-bit
 * boundary and far beyond it, in steps of the sizes a relay adds (up to
 * a 64 KiB read). Built for the host and, where a cross compiler is at
 * hand, for 32-bit MIPS (run under qemu), where unsigned long is 32 bits.
 * Prints "count: ok N" or the first mismatch, and exits 0 or 1.
 */
#define SOCKS5_NO_MAIN
#include "../socks5.c"

typedef unsigned long long u64;	/* the test's reference only */

static void
ref_str(char *buf, u64 v)
{
	char	 rev[24];
	int	 n = 0, i;

	do {
		rev[n++] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		buf[i] = rev[n - 1 - i];
	buf[n] = '\0';
}

int
main(void)
{
	struct count	 c;
	u64		 ref = 0, seed = 12345;
	char		 a[32], b[32];
	unsigned long	 step, checks = 0;
	int		 i, phase;

	for (phase = 0; phase < 3; phase++) {
		memset(&c, 0, sizeof(c));
		ref = 0;
		if (phase == 1) {	/* start just below 2^32 */
			count_add(&c, 0xfffff000UL);
			ref = 0xfffff000ULL;
		} else if (phase == 2) {	/* and far beyond: ~2^47 */
			for (i = 0; i < 32768; i++)
				count_add(&c, 0xffff0000UL);
			ref = 32768ULL * 0xffff0000ULL;
		}
		for (i = 0; i < 200000; i++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			step = (unsigned long)(seed >> 33) % 65537UL;
			count_add(&c, step);
			ref += step;
			if (i % 97 == 0 || i > 199990) {
				count_str(a, &c);
				ref_str(b, ref);
				checks++;
				if (strcmp(a, b) != 0) {
					printf("count: phase %d step %d: %s, want %s\n",
					    phase, i, a, b);
					return 1;
				}
			}
		}
	}
	memset(&c, 0, sizeof(c));
	count_str(a, &c);
	if (strcmp(a, "0") != 0) {
		printf("count: zero prints as %s\n", a);
		return 1;
	}
	printf("count: ok %lu\n", checks);
	return 0;
}
