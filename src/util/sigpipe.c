/* sigpipe: block and consume SIGPIPE around our own writes (see sigpipe.h). */
#include "util/sigpipe.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

static int sigpipe_pending(void)
{
    sigset_t pending;
    sigemptyset(&pending);
    return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

void sky_sigpipe_hold(sky_sigpipe_guard *g)
{
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &g->old);
    g->was_pending = sigpipe_pending();
}

void sky_sigpipe_release(sky_sigpipe_guard *g)
{
    /* One that became pending inside the hold is ours (a write of ours
     * broke); one pending before was the program's and stays pending. */
    if (!g->was_pending && sigpipe_pending()) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
