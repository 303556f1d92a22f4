/*
 * interrupt: Ctrl-C and SIGTERM as a flag that long operations poll.
 *
 * The host installs handlers that only record the signal. Every loop that
 * can wait (the pool's event loop, S3 transfers) polls sky_interrupt_pending()
 * at least every 100 ms, stops cleanly (abort the multipart upload, remove
 * the temp file, stop the workers) and reports "interrupted". A second signal
 * while the first is still pending ends the process at once (exit 128+sig),
 * after killing the registered process groups, for a host that is stuck.
 */
#ifndef SKY_UTIL_INTERRUPT_H
#define SKY_UTIL_INTERRUPT_H

#include <sys/types.h>

/* Installs SIGINT and SIGTERM handlers (idempotent). */
void sky_interrupt_install(void);
/* A blocking wait in a host that did not install the handlers (stock
 * lua5.4 after `require "sky"`, or a C program that handles signals its own
 * way) would not notice Ctrl-C until it ended. Bracketing the wait with
 * begin/end installs the handlers for the wait's length only (a signal the
 * program ignores stays ignored) and then puts the program's own back. Nests;
 * does nothing where sky_interrupt_install() was called. At the outermost
 * end, a signal caught inside is cleared if sky_interrupt_pending() returned
 * it (the wait stopped and reported "interrupted"); otherwise it is raised
 * again for the program's own handler, so no signal is lost. */
void sky_interrupt_scope_begin(void);
void sky_interrupt_scope_end(void);
/* The pending signal number (SIGINT, SIGTERM), or 0. A caller that gets a
 * signal must stop what it is doing and report "interrupted". */
int sky_interrupt_pending(void);
/* Forget a pending signal (after it has been acted upon). */
void sky_interrupt_clear(void);
/* A function the handler calls after recording the signal (the host uses it
 * to set a Lua hook so running Lua code stops too). Must be async-signal-safe. */
void sky_interrupt_set_callback(void (*fn)(int sig));
/* Raise the flag as if signal sig arrived (tests). */
void sky_interrupt_raise(int sig);

/* Process groups that must die if the host is killed by a second signal:
 * registered by providers when they start a node, removed at teardown. */
void sky_interrupt_track_pgid(pid_t pgid);
void sky_interrupt_untrack_pgid(pid_t pgid);
/* Folders to remove in that case (node working directories): registered
 * with the process groups, removed at teardown. */
void sky_interrupt_track_dir(const char *path);
void sky_interrupt_untrack_dir(const char *path);
/* Called from the handler (async-signal-safe): SIGKILL every tracked group,
 * then remove every tracked folder (with /bin/rm, fork and execve being
 * async-signal-safe where free() and nftw() are not). */
void sky_interrupt_kill_tracked(void);

#endif
