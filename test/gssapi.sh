#!/bin/sh
# gssapi.sh CC-AND-FLAGS OUT [LIBS] [--optional]
# Build socks5.c with GSS-API (method 01, -DSOCKS5_GSSAPI) into OUT.
# The library's flags come from GSSAPI_CFLAGS and GSSAPI_LIBS when either
# is set, else from `krb5-config --cflags/--libs gssapi` (MIT Kerberos,
# Heimdal). With --optional a missing library is not an error: OUT is
# removed and the tests that need it skip, saying why.
set -u
cc=$1 out=$2 libs=${3-} opt=${4-}
cflags=${GSSAPI_CFLAGS-} glibs=${GSSAPI_LIBS-}
if [ -z "$cflags$glibs" ]; then
	if ! command -v krb5-config >/dev/null 2>&1 ||
	    ! cflags=$(krb5-config --cflags gssapi 2>/dev/null) ||
	    ! glibs=$(krb5-config --libs gssapi 2>/dev/null); then
		if [ "$opt" = --optional ]; then
			rm -f "$out"
			echo "gssapi.sh: no krb5-config: $out not built" \
			    "(the GSS-API tests will skip)"
			exit 0
		fi
		echo "gssapi.sh: no GSS-API library: install MIT Kerberos" \
		    "or Heimdal (Debian: libkrb5-dev), or set GSSAPI_CFLAGS" \
		    "and GSSAPI_LIBS" >&2
		exit 1
	fi
fi
set -x
$cc -DSOCKS5_GSSAPI $cflags -o "$out" socks5.c $glibs $libs
