/*
 * scheduler: where calls are dispatched, retries and respawns decided and
 * deadlines enforced — and the event loop that drives it all (pool_pump).
 *
 * Dispatch: a call goes to the ready worker with the fewest calls in flight
 * (pinned calls only to their node). While calls are short, several are
 * written to a worker back to back (pipelining) so the pipe never runs dry;
 * once calls take longer than a few milliseconds, each worker gets one at a
 * time so a slow call cannot hold fast ones hostage. A call with a timeout
 * always waits for an idle worker, so its clock starts when it really starts.
 *
 * Retries: a call whose worker was lost (died, killed, its stream broke) is
 * put back at the front of its queue and runs again, up to opts.retries
 * extra attempts; a call that raised is never retried. Calls pipelined
 * behind a call that timed out are requeued without being charged.
 *
 * Moving: calls pipelined behind a call that stalls (it has run far longer
 * than calls usually take) are asked back (CANCEL) when another worker that
 * may run them is idle; the worker gives back those it has not started
 * (CANCELLED) and they run on the idle one, not charged an attempt. One it
 * had started already finishes where it is: a call never runs twice.
 *
 * Liveness: a worker the host has heard nothing from for opts.heartbeat
 * seconds (it answers PING at once, even during a long call) is lost.
 *
 * Respawns: a lost worker is started again at once, up to POOL_MAX_RESPAWNS
 * times without completing a call in between; then its slot stays empty
 * and calls that no worker can take fail with the last loss's reason.
 */
#include "compute/pool_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/sigpipe.h"

#define SHORT_CALL_SECONDS 0.002
#define STALL_MIN_SECONDS 0.001 /* a head call older than this (and 10x the average) stalls pipelining */

/* ---- outcomes ---------------------------------------------------------------- */

void pool_finish_call(sky_pool *p, sky_call *c)
{
    c->worker = -1;
    c->done_seq = ++p->done_counter;
    if (c->abandoned) {
        sky_call_recycle(&p->call_alloc, sky_call_table_remove(&p->calls, c->id));
        return;
    }
    if (c->stream)
        pool_stream_settle(p, c, 1);
}

void pool_fail_call(sky_pool *p, sky_call *c, int kind, const char *msg, const char *tb)
{
    c->outcome.status = SKY_CALL_FAILED;
    c->outcome.error_kind = kind;
    free(c->message);
    free(c->traceback);
    c->message = sky_xstrdup(msg ? msg : "");
    c->traceback = sky_xstrdup(tb ? tb : "");
    c->outcome.message = c->message;
    c->outcome.traceback = c->traceback;
    pool_finish_call(p, c);
}

static sky_call *inflight_pop_id(worker *w, uint64_t id)
{
    for (size_t k = 0; k < w->count; k++) {
        size_t i = (w->head + k) % POOL_MAX_DEPTH;
        sky_call *c = w->inflight[i];
        if (c->id != id)
            continue;
        /* Results come in order, so this is nearly always the head. */
        for (size_t j = k; j > 0; j--)
            w->inflight[(w->head + j) % POOL_MAX_DEPTH] = w->inflight[(w->head + j - 1) % POOL_MAX_DEPTH];
        w->head = (w->head + 1) % POOL_MAX_DEPTH;
        w->count--;
        return c;
    }
    return NULL;
}

static void note_service_time(sky_pool *p, worker *w, sky_call *c)
{
    double t = pool_now();
    double begin = c->started > w->last_done ? c->started : w->last_done;
    double d = t - begin;
    w->last_done = t;
    p->avg_call = p->avg_call == 0 ? d : 0.9 * p->avg_call + 0.1 * d;
}

/* The in-flight call a RESULT or ERROR answers (NULL if none: a stale id). */
sky_call *pool_take_answered(sky_pool *p, worker *w, uint64_t id)
{
    sky_call *c = inflight_pop_id(w, id);
    if (!c)
        return NULL;
    note_service_time(p, w, c);
    w->respawns = 0;   /* it ran a call to its end (a user error is no crash) */
    return c;
}

void pool_call_given_back(sky_pool *p, worker *w, uint64_t id)
{
    sky_call *c = inflight_pop_id(w, id);
    if (!c)
        return;   /* it finished before the CANCEL arrived */
    c->moving = 0;
    c->worker = -1;
    if (c->outcome.attempts > 0)
        c->outcome.attempts--;
    p->stats.calls_moved++;
    if (c->abandoned)
        pool_finish_call(p, c);
    else
        sky_call_queue_push_front(c->node_pin >= 0 ? &p->pinned[c->node_pin] : &p->queue, c);
}

/* ---- lost workers: retry and respawn ---------------------------------------- */

static void requeue_front(sky_pool *p, sky_call *c)
{
    sky_call_queue_push_front(c->node_pin >= 0 ? &p->pinned[c->node_pin] : &p->queue, c);
}

/* The worker died or must die: end its process, requeue or fail what it
 * was running, start a replacement. See pool_internal.h for the flags. */
void pool_lose_worker(sky_pool *p, worker *w, const char *why, int flags)
{
    char how[160];
    int innocent = flags & LOSE_INNOCENT;
    pool_end_worker(p, w, flags & LOSE_KILL ? 0 : pool_now() + POOL_EXIT_GRACE, how, sizeof how);
    p->stats.workers_lost++;
    char msg[512];
    snprintf(msg, sizeof msg, "worker lost: node %d worker %d %s%s%s", w->node, w->index, how,
             why ? ": " : "", why ? why : "");
    /* From the newest to the oldest, each to the front: the queue keeps their order. */
    while (w->count) {
        size_t last = (w->head + w->count - 1) % POOL_MAX_DEPTH;
        sky_call *c = w->inflight[last];
        w->count--;
        c->worker = -1;
        if (innocent && c->outcome.attempts > 0)
            c->outcome.attempts--;
        if (c->abandoned) {
            pool_finish_call(p, c);
        } else if (c->outcome.attempts <= p->opts.retries && !p->closing) {
            p->stats.retries++;
            requeue_front(p, c);
        } else {
            char full[700];
            snprintf(full, sizeof full, "%s (after %d attempt%s)", msg, c->outcome.attempts,
                     c->outcome.attempts == 1 ? "" : "s");
            pool_fail_call(p, c, SKY_ERR_LOST, full, "");
        }
    }
    w->head = 0;
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    w->state = W_DEAD;
    if (p->closing || p->creating)
        return;
    if (w->respawns >= POOL_MAX_RESPAWNS) {
        snprintf(p->last_error, sizeof p->last_error,
                 "no worker left: node %d worker %d was restarted %d times without completing a call; last: %.600s",
                 w->node, w->index, POOL_MAX_RESPAWNS, msg);
        return;
    }
    w->respawns++;
    char err[512];
    if (pool_spawn(p, w, err, sizeof err) != 0)
        snprintf(p->last_error, sizeof p->last_error, "%.600s; restarting it failed: %.500s", msg, err);
}

/* ---- dispatch ------------------------------------------------------------------ */

static int depth_limit(const sky_pool *p)
{
    if (p->avg_call == 0)
        return 2;
    return p->avg_call < SHORT_CALL_SECONDS ? POOL_MAX_DEPTH : 1;
}

/* Takes the next call this worker may run, or NULL. */
static sky_call *next_call_for(sky_pool *p, worker *w)
{
    sky_call_queue *qs[2] = { &p->pinned[w->node], &p->queue };
    for (int k = 0; k < 2; k++) {
        sky_call_queue *q = qs[k];
        while (q->head && q->head->abandoned)   /* released before they ran */
            pool_finish_call(p, sky_call_queue_pop(q));
        sky_call *c = q->head;
        if (!c)
            continue;
        if (c->timeout > 0 && w->count > 0)
            continue;   /* a timed call starts only on an idle worker */
        return sky_call_queue_pop(q);
    }
    return NULL;
}

static double patience(const sky_pool *p)
{
    return 10 * p->avg_call > STALL_MIN_SECONDS ? 10 * p->avg_call : STALL_MIN_SECONDS;
}

/* May this worker take one more call now? Nothing goes behind a call with a
 * timeout (its worker may be killed), nor behind a call that has already run
 * much longer than calls usually take (it would hold the new one hostage). */
static int can_take_more(const sky_pool *p, const worker *w, double t)
{
    if (w->state != W_READY)
        return 0;
    if (w->count == 0)
        return 1;
    const sky_call *head = w->inflight[w->head];
    if (head->timeout > 0)
        return 0;
    const sky_call *tail = w->inflight[(w->head + w->count - 1) % POOL_MAX_DEPTH];
    if (tail->timeout > 0)
        return 0;
    return t - head->started < patience(p);
}

/* An idle worker (other than busy) that may run c. */
static int idle_worker_for(const sky_pool *p, const worker *busy, const sky_call *c)
{
    for (int i = 0; i < p->nworkers; i++) {
        const worker *w = &p->workers[i];
        if (w != busy && w->state == W_READY && w->count == 0 && (c->node_pin < 0 || c->node_pin == w->node))
            return 1;
    }
    return 0;
}

/* Asks back the calls queued behind a stalled call, where they could run now. */
static void move_stalled_calls(sky_pool *p, double t)
{
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state != W_READY || w->count < 2 || t - w->inflight[w->head]->started < patience(p))
            continue;
        for (size_t k = 1; k < w->count; k++) {
            sky_call *c = w->inflight[(w->head + k) % POOL_MAX_DEPTH];
            if (!c->moving && idle_worker_for(p, w, c))
                pool_send_cancel(p, w, c);
        }
    }
}

static void dispatch(sky_pool *p)
{
    int limit = depth_limit(p);
    double t = pool_now();
    for (int level = 1; level <= limit; level++) {
        int progressed = 0;
        for (int k = 0; k < p->nworkers; k++) {
            worker *w = &p->workers[(p->rr + k) % p->nworkers];
            if ((int)w->count >= level || !can_take_more(p, w, t))
                continue;
            sky_call *c = next_call_for(p, w);
            if (!c)
                continue;
            pool_send_call(p, w, c);
            progressed = 1;
        }
        if (!progressed)
            break;
    }
    p->rr = (p->rr + 1) % p->nworkers;
    move_stalled_calls(p, t);
}

/* Fails queued calls that no worker can ever take. */
static void fail_unrunnable(sky_pool *p)
{
    int alive_any = 0;
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].state != W_DEAD)
            alive_any = 1;
    for (int n = 0; n < p->nnodes; n++) {
        int alive = 0;
        for (int i = n * p->per_node; i < (n + 1) * p->per_node; i++)
            if (p->workers[i].state != W_DEAD)
                alive = 1;
        if (alive)
            continue;
        sky_call *c;
        while ((c = sky_call_queue_pop(&p->pinned[n])))
            pool_fail_call(p, c, SKY_ERR_POOL, p->last_error[0] ? p->last_error : "no worker left on this node", "");
    }
    if (!alive_any) {
        sky_call *c;
        while ((c = sky_call_queue_pop(&p->queue)))
            pool_fail_call(p, c, SKY_ERR_POOL, p->last_error[0] ? p->last_error : "no worker left in the pool", "");
    }
}

/* ---- deadlines ------------------------------------------------------------------ */

/* Host-side timeouts: the worker's own hook gets POOL_TIMEOUT_GRACE seconds
 * to stop the call; a worker stuck in C code past that is killed. A worker
 * that does not complete its handshake in time is killed too. */
static void check_deadlines(sky_pool *p)
{
    double t = pool_now();
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state == W_STARTING && t - w->started_at > p->opts.start_timeout) {
            pool_lose_worker(p, w, "it did not complete the handshake in time", LOSE_KILL);
            continue;
        }
        if (w->state == W_READY && p->opts.heartbeat > 0 && t - w->last_heard > p->opts.heartbeat) {
            char why[120];
            snprintf(why, sizeof why, "no word from it for %.1f s (heartbeat)", t - w->last_heard);
            pool_lose_worker(p, w, why, LOSE_KILL);
            continue;
        }
        if (w->state != W_READY || !w->count)
            continue;
        sky_call *c = w->inflight[w->head];
        if (c->timeout <= 0 || t - c->started < c->timeout + POOL_TIMEOUT_GRACE)
            continue;
        inflight_pop_id(w, c->id);
        char msg[256];
        snprintf(msg, sizeof msg, "call timed out after %.1f s (node %d worker %d did not stop it and was restarted)",
                 c->timeout, w->node, w->index);
        pool_fail_call(p, c, SKY_ERR_TIMEOUT, msg, "");
        pool_lose_worker(p, w, "killed after a call timed out", LOSE_KILL | LOSE_INNOCENT);
    }
}

static double next_deadline_in(const sky_pool *p)
{
    double best = 0.1, t = pool_now();   /* wake at least every 100 ms to see interrupts */
    for (int i = 0; i < p->nworkers; i++) {
        const worker *w = &p->workers[i];
        if (w->state != W_READY || !w->count)
            continue;
        const sky_call *c = w->inflight[w->head];
        if (c->timeout > 0) {
            double left = c->started + c->timeout + POOL_TIMEOUT_GRACE - t;
            if (left < best)
                best = left < 0 ? 0 : left;
        }
    }
    return best;
}

/* ---- the event loop -------------------------------------------------------------- */

/* One turn of the event loop: block = wait up to the next deadline.
 * SIGPIPE is held for the whole turn (util/sigpipe.h): a write to a worker
 * that just died fails with EPIPE and the worker is handled as lost. */
void pool_pump(sky_pool *p, int block)
{
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    pthread_mutex_lock(&p->io_mu);   /* heartbeat.c's thread stays out meanwhile */
    dispatch(p);
    int n = 0;
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state == W_DEAD)
            continue;
        pool_flush_writes(p, w);
        if (w->state == W_DEAD)
            continue;
        p->pfd[n] = (struct pollfd){ .fd = w->proc.from, .events = POLLIN };
        p->pfd_worker[n++] = i;
        p->pfd[n] = (struct pollfd){ .fd = w->proc.diag, .events = POLLIN };
        p->pfd_worker[n++] = i;
        if (w->out.len) {
            p->pfd[n] = (struct pollfd){ .fd = w->proc.to, .events = POLLOUT };
            p->pfd_worker[n++] = i;
        }
    }
    int ms = block ? (int)(next_deadline_in(p) * 1000) + 1 : 0;
    int r = poll(p->pfd, (nfds_t)n, ms);
    if (r > 0) {
        for (int k = 0; k < n; k++) {
            worker *w = &p->workers[p->pfd_worker[k]];
            if (!p->pfd[k].revents || w->state == W_DEAD)
                continue;
            if (p->pfd[k].fd == w->proc.diag)
                pool_read_diagnostics(p, w);
            else if (p->pfd[k].fd == w->proc.from)
                pool_read_frames(p, w);
            else if (p->pfd[k].fd == w->proc.to)
                pool_flush_writes(p, w);
        }
    }
    check_deadlines(p);
    fail_unrunnable(p);
    dispatch(p);
    pool_send_pings(p, pool_now());
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].state != W_DEAD)
            pool_flush_writes(p, &p->workers[i]);
    pthread_mutex_unlock(&p->io_mu);
    sky_sigpipe_release(&guard);
}

/* ---- entry points ------------------------------------------------------------------ */

uint64_t sky_pool_submit(sky_pool *p, const uint8_t *values, size_t len,
                         const wire_hashes *protos, double timeout, int node)
{
    if (p->closing || node >= p->nnodes)
        return 0;
    sky_call *c = sky_call_new(&p->call_alloc);
    c->id = p->next_id++;
    c->worker = -1;
    c->outcome.node = c->outcome.worker = -1;
    c->outcome.host = "";
    if (len > SKY_POOL_MAX_CALL_BYTES) {
        sky_call_table_put(&p->calls, c);
        pool_fail_call(p, c, SKY_ERR_POOL, "the call is too large to send", "");
        return c->id;
    }
    if (sky_call_set_values(c, values, len) != 0) {
        sky_call_table_put(&p->calls, c);
        pool_fail_call(p, c, SKY_ERR_POOL, "out of memory holding the call's arguments", "");
        return c->id;
    }
    if (protos && protos->n) {
        c->protos.v = sky_xmalloc(protos->n * sizeof *protos->v);
        memcpy(c->protos.v, protos->v, protos->n * sizeof *protos->v);
        c->protos.n = c->protos.cap = protos->n;
    }
    c->timeout = timeout > 0 ? timeout : p->opts.timeout;
    c->node_pin = node;
    sky_call_table_put(&p->calls, c);
    sky_call_queue_push(node >= 0 ? &p->pinned[node] : &p->queue, c);
    return c->id;
}

static sky_call_outcome interrupted_outcome = {
    .status = SKY_CALL_FAILED, .error_kind = SKY_ERR_INTERRUPTED,
    .message = "interrupted", .traceback = "", .node = -1, .worker = -1, .host = "",
};
static sky_call_outcome unknown_outcome = {
    .status = SKY_CALL_FAILED, .error_kind = SKY_ERR_POOL,
    .message = "no such call in this pool", .traceback = "", .node = -1, .worker = -1, .host = "",
};

const sky_call_outcome *sky_pool_poll(sky_pool *p, uint64_t id)
{
    sky_call *c = sky_call_table_get(&p->calls, id);
    if (!c)
        return &unknown_outcome;
    if (c->outcome.status == SKY_CALL_PENDING)
        pool_pump(p, 0);
    return c->outcome.status == SKY_CALL_PENDING ? NULL : &c->outcome;
}

const sky_call_outcome *sky_pool_wait(sky_pool *p, uint64_t id)
{
    sky_call *c = sky_call_table_get(&p->calls, id);
    if (!c)
        return &unknown_outcome;
    if (c->outcome.status == SKY_CALL_PENDING) {
        sky_interrupt_scope_begin();
        while (c->outcome.status == SKY_CALL_PENDING && !sky_interrupt_pending())
            pool_pump(p, 1);
        sky_interrupt_scope_end();
        if (c->outcome.status == SKY_CALL_PENDING)
            return &interrupted_outcome;
    }
    return &c->outcome;
}

void sky_pool_release(sky_pool *p, uint64_t id)
{
    sky_call *c = sky_call_table_get(&p->calls, id);
    if (!c)
        return;
    if (c->stream)
        pool_stream_settle(p, c, 0);
    if (c->outcome.status == SKY_CALL_PENDING) {
        c->abandoned = 1;   /* freed when its worker answers or it leaves the queue */
        return;
    }
    sky_call_recycle(&p->call_alloc, sky_call_table_remove(&p->calls, id));
}
