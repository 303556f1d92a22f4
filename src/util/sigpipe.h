/*
 * sigpipe: writes to a broken pipe or socket without dying of SIGPIPE, and
 * without touching the embedding program's signal dispositions.
 *
 * A write to a worker stream whose reader is gone (a worker killed, an ssh
 * channel cut, an srun that exited) raises SIGPIPE, and its default action
 * ends the process. The library may run inside any program — skyrun, a stock
 * lua5.4 with `require "sky"`, a C embedder that leaves SIGPIPE at its
 * default — so it never changes the process-wide disposition. Instead, every
 * stretch of code that writes to such a stream is bracketed:
 *
 *     sky_sigpipe_guard g;
 *     sky_sigpipe_hold(&g);      // block SIGPIPE in this thread only
 *     ... write() fails with EPIPE, which the caller handles ...
 *     sky_sigpipe_release(&g);   // consume the SIGPIPE we caused, restore the mask
 *
 * A SIGPIPE that was already pending before hold (the program's own,
 * blocked by it) is left alone. Holds may nest.
 */
#ifndef SKY_UTIL_SIGPIPE_H
#define SKY_UTIL_SIGPIPE_H

#include <signal.h>

typedef struct sky_sigpipe_guard {
    sigset_t old;       /* the thread's mask before hold */
    int was_pending;    /* a SIGPIPE was pending already: not ours to consume */
} sky_sigpipe_guard;

void sky_sigpipe_hold(sky_sigpipe_guard *g);
void sky_sigpipe_release(sky_sigpipe_guard *g);

#endif
