/*
 * heartbeat: liveness in both directions, whatever the host is doing.
 *
 * A worker gives its host up after opts.heartbeat seconds without a byte
 * from it (its stream may be a network connection that dies without an
 * end: an ssh channel, an srun), and the host gives a worker up after as
 * long without a byte from it (workers answer PING at once, from their
 * input thread, even in the middle of a long call). So the host sends a
 * PING to every worker it has sent nothing for a third of the heartbeat:
 * from its event loop while it waits, and from this thread while the
 * script runs Lua code between waits. The thread only writes whole
 * frames, to workers with nothing half-written, under io_mu, which the
 * host's own thread holds whenever it touches workers.
 */
#include "compute/pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

void pool_send_pings(sky_pool *p, double t)
{
    if (p->opts.heartbeat <= 0)
        return;
    double every = p->opts.heartbeat / 3;
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state != W_READY || w->proc.to < 0 || w->out.len || t - w->last_sent < every)
            continue;
        sky_buf_reset(&w->out);
        wire_frame_append(&w->out, WIRE_PING, NULL, 0);
        ssize_t n = write(w->proc.to, w->out.data, w->out.len);
        if (n > 0)
            sky_buf_consume(&w->out, (size_t)n);   /* the rest (if any) goes with the next flush */
        w->last_sent = t;
    }
}

static void *beat(void *arg)
{
    sky_pool *p = arg;
    /* A write to a worker just gone fails with EPIPE here, never kills. */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    double every = p->opts.heartbeat / 6;
    while (!p->beat_stop) {
        struct timespec ts = { (time_t)every, (long)((every - (double)(time_t)every) * 1e9) };
        if (every > 0.2) {   /* wake often enough to stop promptly */
            ts.tv_sec = 0;
            ts.tv_nsec = 200000000L;
        }
        nanosleep(&ts, NULL);
        if (p->beat_stop)
            break;
        if (pthread_mutex_trylock(&p->io_mu) != 0)
            continue;   /* the host's thread is in its event loop: it pings */
        pool_send_pings(p, pool_now());
        pthread_mutex_unlock(&p->io_mu);
    }
    return NULL;
}

int pool_heartbeat_start(sky_pool *p)
{
    if (p->opts.heartbeat <= 0)
        return 0;
    p->beat_stop = 0;
    if (pthread_create(&p->beat_thread, NULL, beat, p) != 0)
        return -1;
    p->beat_running = 1;
    return 0;
}

void pool_heartbeat_stop(sky_pool *p)
{
    if (!p->beat_running)
        return;
    p->beat_stop = 1;
    pthread_join(p->beat_thread, NULL);
    p->beat_running = 0;
}
