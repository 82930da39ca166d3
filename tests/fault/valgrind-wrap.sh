#!/bin/sh
# ECHOMASTER for `make valgrind`: runs the real daemon ($EM_VALGRIND_DAEMON)
# under memcheck. Every process (the master and each forked worker) writes
# its own report, vg.PID.log, beside the -c config, in the test's private
# directory, where tests/fault/vg_scenarios.c reads them: any error or any
# definitely lost block fails the scenario. Exit code 99 also marks errors.
conf=./echomaster.conf prev=
for a in "$@"; do
	[ "$prev" = "-c" ] && conf=$a
	prev=$a
done
exec valgrind --tool=memcheck --trace-children=yes --error-exitcode=99 \
	--leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --num-callers=30 \
	--log-file="$(dirname "$conf")/vg.%p.log" \
	"${EM_VALGRIND_DAEMON:?set EM_VALGRIND_DAEMON to the daemon binary}" "$@"
