/*
 * pool: nodes, workers, handshake, dispatch, retries, timeouts, teardown.
 * See pool.h for the contract. Everything here runs on the host's one
 * thread, inside sky_pool_wait*() and sky_pool_new/free.
 *
 * Dispatch: a call goes to the ready worker with the fewest calls in flight
 * (pinned calls only to their node). While calls are short, several are
 * written to a worker back to back (pipelining) so the pipe never runs dry;
 * once calls take longer than a few milliseconds, each worker gets one at a
 * time so a slow call cannot hold fast ones hostage. A call with a timeout
 * always waits for an idle worker, so its clock starts when it really starts.
 */
#include "compute/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compute/calls.h"
#include "compute/provider.h"
#include "skyrun_config.h"
#include "util/interrupt.h"
#include "util/sigpipe.h"

#define MAX_DEPTH 64            /* calls in flight per worker while calls are short */
#define SHORT_CALL_SECONDS 0.002
#define TIMEOUT_GRACE 2.0       /* after a call's timeout, the worker's own hook has this long */
#define STOP_GRACE 1.0          /* workers get this long to exit after BYE */
#define MAX_RESPAWNS 16         /* per worker slot without a successful call in between */
#define STALL_MIN_SECONDS 0.001 /* a head call older than this (and 10x the average) stalls pipelining */
#define READ_CHUNK 65536

enum worker_state { W_STARTING, W_READY, W_DEAD };

typedef struct protoset {
    wire_hash *v;
    unsigned char *used;
    size_t cap, n;
} protoset;

/* A stream: ids of finished calls, in the order they finished, waiting to
 * be handed out by sky_pool_stream_next(). */
typedef struct call_stream {
    uint32_t id;                /* 0: slot free */
    uint64_t *ready;            /* room for every id of the stream: each is added once */
    size_t head, tail, cap;     /* handed out: [0, head); waiting: [head, tail) */
    size_t pending;             /* calls tagged with this stream, not finished yet */
} call_stream;

typedef struct worker {
    int node, index;            /* index: within its node */
    sky_worker_proc proc;
    enum worker_state state;
    double started_at;
    int respawns;
    sky_buf in, out, scratch;
    sky_buf partial[3];         /* unfinished output line per stream (1, 2) */
    sky_buf diag;               /* unfinished stderr line */
    unsigned generation;        /* bumped at every spawn: frames of a lost process are dropped */
    protoset known;
    sky_call **inflight;        /* FIFO ring */
    size_t head, count;
    double last_done;
} worker;

struct sky_pool {
    sky_pool_options opts;
    char *worker_path;
    wire_codec *codec;
    lua_State *T;               /* private Lua thread for SETUP tables and HELLO facts */
    int T_ref;
    sky_provider *provider;
    sky_node *nodes;
    int nnodes, per_node;
    worker *workers;
    int nworkers;
    sky_call_table calls;
    sky_call_alloc call_alloc;
    sky_call_queue queue;       /* unpinned calls not yet dispatched */
    sky_call_queue *pinned;     /* per node */
    uint64_t next_id;
    uint64_t done_counter;      /* completion order */
    call_stream *streams;       /* open streams (few: one per running pool:stream loop) */
    size_t nstreams;
    uint32_t next_stream;
    sky_pool_stats stats;
    double avg_call;            /* moving average of call service time (s) */
    int rr;                     /* round-robin start for dispatch */
    sky_buf frame;              /* scratch for building frame bodies */
    uint8_t **facts;            /* per node: encoded facts from the first HELLO */
    size_t *facts_len;
    char **hosts;               /* per node: hostname from the facts */
    struct pollfd *pfd;
    int *pfd_worker;
    char last_error[1200];
    int closing;
    int creating;               /* in sky_pool_new: a failed worker fails the pool, no respawn */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- known-prototype sets ------------------------------------------------ */

static size_t hash_slot(const wire_hash *h, size_t cap)
{
    size_t s;
    memcpy(&s, h->b, sizeof s);
    return s & (cap - 1);
}

static int protoset_has(const protoset *s, const wire_hash *h)
{
    if (!s->cap)
        return 0;
    for (size_t i = hash_slot(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (!s->used[i])
            return 0;
        if (memcmp(s->v[i].b, h->b, sizeof h->b) == 0)
            return 1;
    }
}

static void protoset_add(protoset *s, const wire_hash *h);

static void protoset_grow(protoset *s)
{
    protoset bigger = { 0 };
    bigger.cap = s->cap ? s->cap * 2 : 16;
    bigger.v = calloc(bigger.cap, sizeof *bigger.v);
    bigger.used = calloc(bigger.cap, 1);
    if (!bigger.v || !bigger.used)
        abort();
    for (size_t i = 0; i < s->cap; i++)
        if (s->used[i])
            protoset_add(&bigger, &s->v[i]);
    free(s->v);
    free(s->used);
    *s = bigger;
}

static void protoset_add(protoset *s, const wire_hash *h)
{
    if ((s->n + 1) * 2 > s->cap)
        protoset_grow(s);
    size_t i = hash_slot(h, s->cap);
    while (s->used[i])
        i = (i + 1) & (s->cap - 1);
    s->v[i] = *h;
    s->used[i] = 1;
    s->n++;
}

static void protoset_free(protoset *s)
{
    free(s->v);
    free(s->used);
    memset(s, 0, sizeof *s);
}

/* ---- output ---------------------------------------------------------------- */

static void default_output(void *ud, int node, int worker_index, int stream, const char *line, size_t len)
{
    (void)ud;
    (void)worker_index;
    FILE *f = stream == 2 ? stderr : stdout;
    fprintf(f, "[node %d] ", node);
    fwrite(line, 1, len, f);   /* not %.*s: the line may hold NUL bytes */
    fputc('\n', f);
    fflush(f);
}

static void emit_lines(sky_pool *p, worker *w, int stream, sky_buf *partial,
                       const uint8_t *bytes, size_t n, int flush_partial)
{
    sky_buf_append(partial, bytes, n);
    size_t start = 0;
    for (size_t i = 0; i < partial->len; i++) {
        if (partial->data[i] == '\n') {
            if (!p->opts.quiet)
                p->opts.on_output(p->opts.output_ud, w->node, w->index, stream,
                                  (const char *)partial->data + start, i - start);
            start = i + 1;
        }
    }
    sky_buf_consume(partial, start);
    if (flush_partial && partial->len) {
        if (!p->opts.quiet)
            p->opts.on_output(p->opts.output_ud, w->node, w->index, stream,
                              (const char *)partial->data, partial->len);
        sky_buf_reset(partial);
    }
}

/* ---- worker processes ------------------------------------------------------ */

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_proc(worker *w)
{
    if (w->proc.to_worker >= 0)
        close(w->proc.to_worker);
    if (w->proc.from_worker >= 0)
        close(w->proc.from_worker);
    if (w->proc.diagnostics >= 0)
        close(w->proc.diagnostics);
    w->proc.to_worker = w->proc.from_worker = w->proc.diagnostics = -1;
}

static void reset_worker_buffers(worker *w)
{
    sky_buf_reset(&w->in);
    sky_buf_reset(&w->out);
    for (int s = 0; s < 3; s++)
        sky_buf_reset(&w->partial[s]);
    sky_buf_reset(&w->diag);
    protoset_free(&w->known);
    w->head = w->count = 0;
}

static int spawn(sky_pool *p, worker *w, char *err, size_t errlen)
{
    reset_worker_buffers(w);
    if (p->provider->spawn_worker(p->provider, &p->nodes[w->node], p->worker_path, &w->proc, err, errlen) != 0) {
        w->state = W_DEAD;
        return -1;
    }
    set_nonblocking(w->proc.to_worker);
    set_nonblocking(w->proc.from_worker);
    set_nonblocking(w->proc.diagnostics);
    w->state = W_STARTING;
    w->started_at = now();
    w->generation++;
    return 0;
}

/* Describes how a worker process ended (it is reaped here). */
static void describe_exit(worker *w, char *out, size_t outlen)
{
    int status = 0;
    pid_t r = w->proc.pid > 0 ? waitpid(w->proc.pid, &status, WNOHANG) : -1;
    /* A process's pipes close before it becomes reapable (the kernel drops
     * its files, then reports the exit), so EOF can arrive a moment early.
     * Give an exiting worker up to 200 ms to report its real status. */
    for (int tries = 0; r == 0 && tries < 200; tries++) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        r = waitpid(w->proc.pid, &status, WNOHANG);
    }
    if (r == 0) {
        /* Closed its pipes but still running: make sure it is gone. */
        kill(w->proc.pid, SIGKILL);
        while (waitpid(w->proc.pid, &status, 0) < 0 && errno == EINTR)
            ;
        snprintf(out, outlen, "closed its connection");
    } else if (r > 0 && WIFSIGNALED(status)) {
        snprintf(out, outlen, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else if (r > 0 && WIFEXITED(status)) {
        snprintf(out, outlen, "exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(out, outlen, "was lost");
    }
    w->proc.pid = 0;
}

/* ---- calls ------------------------------------------------------------------ */

static call_stream *find_stream(sky_pool *p, uint32_t id)
{
    for (size_t i = 0; id && i < p->nstreams; i++)
        if (p->streams[i].id == id)
            return &p->streams[i];
    return NULL;
}

/* A tagged call left its stream's pending set: finished (ready = 1) or released. */
static void stream_settle(sky_pool *p, sky_call *c, int ready)
{
    call_stream *s = find_stream(p, c->stream);
    c->stream = 0;
    if (!s)
        return;
    s->pending--;
    if (ready && s->tail < s->cap)   /* room for every id was made when it opened */
        s->ready[s->tail++] = c->id;
}

static void finish_call(sky_pool *p, sky_call *c)
{
    c->worker = -1;
    c->done_seq = ++p->done_counter;
    if (c->abandoned) {
        sky_call_recycle(&p->call_alloc, sky_call_table_remove(&p->calls, c->id));
        return;
    }
    if (c->stream)
        stream_settle(p, c, 1);
}

static void fail_call(sky_pool *p, sky_call *c, int kind, const char *msg, const char *tb)
{
    c->outcome.status = SKY_CALL_FAILED;
    c->outcome.error_kind = kind;
    free(c->message);
    free(c->traceback);
    c->message = strdup(msg ? msg : "");
    c->traceback = strdup(tb ? tb : "");
    c->outcome.message = c->message;
    c->outcome.traceback = c->traceback;
    finish_call(p, c);
}

static sky_call *inflight_pop_id(worker *w, uint64_t id)
{
    for (size_t k = 0; k < w->count; k++) {
        size_t i = (w->head + k) % MAX_DEPTH;
        sky_call *c = w->inflight[i];
        if (c->id != id)
            continue;
        /* Results come in order, so this is nearly always the head. */
        for (size_t j = k; j > 0; j--)
            w->inflight[(w->head + j) % MAX_DEPTH] = w->inflight[(w->head + j - 1) % MAX_DEPTH];
        w->head = (w->head + 1) % MAX_DEPTH;
        w->count--;
        return c;
    }
    return NULL;
}

static void note_service_time(sky_pool *p, worker *w, sky_call *c)
{
    double t = now();
    double begin = c->started > w->last_done ? c->started : w->last_done;
    double d = t - begin;
    w->last_done = t;
    p->avg_call = p->avg_call == 0 ? d : 0.9 * p->avg_call + 0.1 * d;
}

/* The worker died or was killed: requeue or fail what it was running, start a replacement. */
static void read_diagnostics(sky_pool *p, worker *w);

static void requeue_front(sky_pool *p, sky_call *c)
{
    sky_call_queue_push_front(c->node_pin >= 0 ? &p->pinned[c->node_pin] : &p->queue, c);
}

/* The worker died or was killed: requeue or fail what it was running, start
 * a replacement. `culprit` is a call that already has its own outcome (a
 * timeout): the calls pipelined behind it are innocent and are requeued
 * without being charged an attempt. */
static void lose_worker_after(sky_pool *p, worker *w, const char *why, int innocent)
{
    char how[160];
    if (w->proc.diagnostics >= 0)
        read_diagnostics(p, w);   /* its last words explain the loss */
    if (w->diag.len)
        emit_lines(p, w, 2, &w->diag, NULL, 0, 1);
    describe_exit(w, how, sizeof how);
    p->stats.workers_lost++;
    close_proc(w);
    char msg[512];
    snprintf(msg, sizeof msg, "worker lost: node %d worker %d %s%s%s", w->node, w->index, how,
             why ? ": " : "", why ? why : "");
    /* From the newest to the oldest, each to the front: the queue keeps their order. */
    while (w->count) {
        size_t last = (w->head + w->count - 1) % MAX_DEPTH;
        sky_call *c = w->inflight[last];
        w->count--;
        c->worker = -1;
        if (innocent && c->outcome.attempts > 0)
            c->outcome.attempts--;
        if (c->abandoned) {
            finish_call(p, c);
        } else if (c->outcome.attempts <= p->opts.retries && !p->closing) {
            if (!innocent)
                p->stats.retries++;
            requeue_front(p, c);
        } else {
            char full[700];
            snprintf(full, sizeof full, "%s (after %d attempt%s)", msg, c->outcome.attempts,
                     c->outcome.attempts == 1 ? "" : "s");
            fail_call(p, c, SKY_ERR_LOST, full, "");
        }
    }
    w->head = 0;
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    w->state = W_DEAD;
    if (p->closing || p->creating)
        return;
    if (w->respawns >= MAX_RESPAWNS) {
        snprintf(p->last_error, sizeof p->last_error,
                 "no worker left: node %d worker %d was restarted %d times without completing a call; last: %.600s",
                 w->node, w->index, MAX_RESPAWNS, msg);
        return;
    }
    w->respawns++;
    char err[512];
    if (spawn(p, w, err, sizeof err) != 0)
        snprintf(p->last_error, sizeof p->last_error, "%.600s; restarting it failed: %.500s", msg, err);
}

static void lose_worker(sky_pool *p, worker *w, const char *why)
{
    lose_worker_after(p, w, why, 0);
}

static void write_define_frames(sky_pool *p, worker *w, const sky_call *c)
{
    for (size_t i = 0; i < c->protos.n; i++) {
        const wire_hash *h = &c->protos.v[i];
        if (protoset_has(&w->known, h))
            continue;
        size_t len = 0;
        const uint8_t *code = wire_codec_bytecode(p->codec, h, &len);
        if (!code)
            continue;   /* the worker will answer with a decode error naming it */
        sky_buf_reset(&p->frame);
        wire_define_append(&p->frame, h, code, len);
        wire_frame_append(&w->out, WIRE_DEFINE, p->frame.data, p->frame.len);
        protoset_add(&w->known, h);
        p->stats.defines_sent++;
    }
}

static void send_call(sky_pool *p, worker *w, sky_call *c)
{
    write_define_frames(p, w, c);
    sky_buf_reset(&p->frame);
    wire_call_header(&p->frame, c->id, c->timeout);
    sky_buf_append(&p->frame, c->values, c->values_len);
    wire_frame_append(&w->out, WIRE_CALL, p->frame.data, p->frame.len);
    p->stats.calls_sent++;
    w->inflight[(w->head + w->count) % MAX_DEPTH] = c;
    w->count++;
    c->worker = (int)(w - p->workers);
    c->outcome.node = w->node;
    c->outcome.worker = w->index;
    c->outcome.host = p->hosts[w->node];
    c->outcome.attempts++;
    c->started = now();
}

static int depth_limit(const sky_pool *p)
{
    if (p->avg_call == 0)
        return 2;
    return p->avg_call < SHORT_CALL_SECONDS ? MAX_DEPTH : 1;
}

/* Takes the next call this worker may run, or NULL. */
static sky_call *next_call_for(sky_pool *p, worker *w)
{
    sky_call_queue *qs[2] = { &p->pinned[w->node], &p->queue };
    for (int k = 0; k < 2; k++) {
        sky_call_queue *q = qs[k];
        while (q->head && q->head->abandoned)   /* released before they ran */
            finish_call(p, sky_call_queue_pop(q));
        sky_call *c = q->head;
        if (!c)
            continue;
        if (c->timeout > 0 && w->count > 0)
            continue;   /* a timed call starts only on an idle worker */
        return sky_call_queue_pop(q);
    }
    return NULL;
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
    const sky_call *tail = w->inflight[(w->head + w->count - 1) % MAX_DEPTH];
    if (tail->timeout > 0)
        return 0;
    double patience = 10 * p->avg_call > STALL_MIN_SECONDS ? 10 * p->avg_call : STALL_MIN_SECONDS;
    return t - head->started < patience;
}

static void dispatch(sky_pool *p)
{
    int limit = depth_limit(p);
    double t = now();
    for (int level = 1; level <= limit; level++) {
        int progressed = 0;
        for (int k = 0; k < p->nworkers; k++) {
            worker *w = &p->workers[(p->rr + k) % p->nworkers];
            if ((int)w->count >= level || !can_take_more(p, w, t))
                continue;
            sky_call *c = next_call_for(p, w);
            if (!c)
                continue;
            send_call(p, w, c);
            progressed = 1;
        }
        if (!progressed)
            break;
    }
    p->rr = (p->rr + 1) % p->nworkers;
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
        for (int i = 0; i < p->nworkers; i++)
            if (p->workers[i].node == n && p->workers[i].state != W_DEAD)
                alive = 1;
        if (alive)
            continue;
        sky_call *c;
        while ((c = sky_call_queue_pop(&p->pinned[n])))
            fail_call(p, c, SKY_ERR_POOL, p->last_error[0] ? p->last_error : "no worker left on this node", "");
    }
    if (!alive_any) {
        sky_call *c;
        while ((c = sky_call_queue_pop(&p->queue)))
            fail_call(p, c, SKY_ERR_POOL, p->last_error[0] ? p->last_error : "no worker left in the pool", "");
    }
}

/* ---- frames from workers ------------------------------------------------- */

static int handle_hello(sky_pool *p, worker *w, const wire_frame *f, char *err, size_t errlen)
{
    const uint8_t *facts;
    size_t facts_len;
    wire_err we;
    if (wire_hello_parse(f->body, f->len, &facts, &facts_len, &we) != WIRE_OK) {
        snprintf(err, errlen, "node %d worker %d (%s): %s", w->node, w->index, p->worker_path, we.msg);
        return -1;
    }
    lua_State *T = p->T;
    int top = lua_gettop(T);
    if (!p->facts[w->node]) {
        p->facts[w->node] = malloc(facts_len ? facts_len : 1);
        if (!p->facts[w->node])
            abort();
        memcpy(p->facts[w->node], facts, facts_len);
        p->facts_len[w->node] = facts_len;
        if (wire_decode(p->codec, T, facts, facts_len, &we) >= 1 && lua_istable(T, top + 1)) {
            lua_getfield(T, top + 1, "hostname");
            const char *hn = lua_tostring(T, -1);
            if (hn) {
                free(p->hosts[w->node]);
                p->hosts[w->node] = strdup(hn);
            }
        }
        lua_settop(T, top);
    }

    /* SETUP: who this worker is. */
    lua_createtable(T, 0, 8);
    lua_pushinteger(T, w->node);
    lua_setfield(T, -2, "node");
    lua_pushinteger(T, p->nnodes);
    lua_setfield(T, -2, "nodes");
    lua_pushinteger(T, w->index);
    lua_setfield(T, -2, "worker");
    lua_pushinteger(T, p->per_node);
    lua_setfield(T, -2, "workers");
    lua_pushinteger(T, 0);
    lua_setfield(T, -2, "heartbeat");   /* pipes: EOF tells the worker the host is gone */
    lua_pushstring(T, p->nodes[w->node].name);
    lua_setfield(T, -2, "node_name");
    lua_pushstring(T, p->nodes[w->node].workdir);
    lua_setfield(T, -2, "workdir");
    sky_buf_reset(&p->frame);
    int rc = wire_encode(p->codec, T, top + 1, 1, WIRE_ROOTS_VALUES, &p->frame, NULL, &we);
    lua_settop(T, top);
    if (rc != 0) {
        snprintf(err, errlen, "node %d worker %d: cannot encode SETUP: %s", w->node, w->index, we.msg);
        return -1;
    }
    wire_frame_append(&w->out, WIRE_SETUP, p->frame.data, p->frame.len);
    w->state = W_READY;
    w->last_done = now();
    return 0;
}

/* A call's last partial lines, so the next call's output starts on its own line. */
static void flush_call_output(sky_pool *p, worker *w)
{
    for (int s = 1; s <= 2; s++)
        emit_lines(p, w, s, &w->partial[s], NULL, 0, 1);
    if (w->proc.diagnostics >= 0)
        read_diagnostics(p, w);
    emit_lines(p, w, 2, &w->diag, NULL, 0, 1);
}

/* The in-flight call a RESULT or ERROR answers (NULL if none: a stale id). */
static sky_call *take_answered(sky_pool *p, worker *w, uint64_t id)
{
    sky_call *c = inflight_pop_id(w, id);
    if (!c)
        return NULL;
    note_service_time(p, w, c);
    w->respawns = 0;   /* it ran a call to its end (a user error is no crash) */
    return c;
}

static void handle_result(sky_pool *p, worker *w, const wire_frame *f)
{
    uint64_t id;
    const uint8_t *vals;
    size_t n;
    wire_err we;
    if (wire_result_parse(f->body, f->len, &id, &vals, &n, &we) != WIRE_OK) {
        lose_worker(p, w, we.msg);
        return;
    }
    sky_call *c = take_answered(p, w, id);
    if (!c)
        return;
    if (!c->abandoned) {
        sky_call_set_results(c, vals, n);
        c->outcome.values = c->results;
        c->outcome.values_len = n;
        c->outcome.status = SKY_CALL_OK;
    }
    flush_call_output(p, w);
    finish_call(p, c);
}

static void handle_error(sky_pool *p, worker *w, const wire_frame *f)
{
    uint64_t id;
    uint8_t kind;
    const char *msg, *tb;
    size_t msg_len, tb_len;
    wire_err we;
    if (wire_error_parse(f->body, f->len, &id, &kind, &msg, &msg_len, &tb, &tb_len, &we) != WIRE_OK) {
        lose_worker(p, w, we.msg);
        return;
    }
    sky_call *c = take_answered(p, w, id);
    if (!c)
        return;
    flush_call_output(p, w);
    char *m = strndup(msg, msg_len), *t = strndup(tb, tb_len);
    fail_call(p, c, kind, m, t);
    free(m);
    free(t);
}

static void handle_output(sky_pool *p, worker *w, const wire_frame *f)
{
    uint8_t stream;
    const uint8_t *bytes;
    size_t n;
    wire_err we;
    if (wire_output_parse(f->body, f->len, &stream, &bytes, &n, &we) != WIRE_OK)
        return;
    if (stream != 1 && stream != 2)
        stream = 1;
    emit_lines(p, w, stream, &w->partial[stream], bytes, n, 0);
}

/* Reads what the worker wrote and handles every complete frame. */
/* Handles one frame. Returns 0, or -1 when the worker process is gone (its
 * buffers were reset by then and must not be touched by the caller). */
static int handle_frame(sky_pool *p, worker *w, const wire_frame *f)
{
    unsigned gen = w->generation;
    char err[512];
    switch (f->type) {
    case WIRE_HELLO:
        if (w->state == W_STARTING && handle_hello(p, w, f, err, sizeof err) != 0) {
            snprintf(p->last_error, sizeof p->last_error, "%s", err);
            kill(w->proc.pid, SIGKILL);
            describe_exit(w, err, sizeof err);
            close_proc(w);
            w->state = W_DEAD;   /* another protocol: restarting it would not help */
            return -1;
        }
        break;
    case WIRE_RESULT:
        handle_result(p, w, f);
        break;
    case WIRE_ERROR:
        handle_error(p, w, f);
        break;
    case WIRE_OUTPUT:
        handle_output(p, w, f);
        break;
    default:
        break;   /* unknown types from a newer worker are ignored */
    }
    return w->generation == gen && w->state != W_DEAD ? 0 : -1;
}

/* Reads what the worker wrote and handles every complete frame. */
static void read_frames(sky_pool *p, worker *w)
{
    int eof = 0;
    for (int rounds = 0; rounds < 64; rounds++) {
        sky_buf_reserve(&w->in, READ_CHUNK);
        ssize_t n = read(w->proc.from_worker, w->in.data + w->in.len, READ_CHUNK);
        if (n > 0) {
            w->in.len += (size_t)n;
            p->stats.bytes_received += (uint64_t)n;
            if ((size_t)n < READ_CHUNK)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        eof = 1;   /* handle what arrived, then the worker is gone */
        break;
    }
    size_t off = 0;
    for (;;) {
        wire_frame f;
        size_t used;
        wire_err we;
        int rc = wire_frame_next(w->in.data + off, w->in.len - off, &w->scratch, &f, &used, &we);
        if (rc == WIRE_AGAIN)
            break;
        if (rc != WIRE_OK) {
            sky_buf_reset(&w->in);
            kill(w->proc.pid, SIGKILL);
            lose_worker(p, w, we.msg);
            return;
        }
        off += used;
        if (handle_frame(p, w, &f) != 0)
            return;
    }
    sky_buf_consume(&w->in, off);
    if (eof) {
        sky_buf_reset(&w->in);
        lose_worker(p, w, w->state == W_STARTING ? "before the handshake" : NULL);
    }
}

static void read_diagnostics(sky_pool *p, worker *w)
{
    char chunk[4096];
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(w->proc.diagnostics, chunk, sizeof chunk);
        if (n <= 0)
            break;
        emit_lines(p, w, 2, &w->diag, (const uint8_t *)chunk, (size_t)n, 0);
    }
}

static void flush_writes(sky_pool *p, worker *w)
{
    while (w->out.len && w->proc.to_worker >= 0) {
        ssize_t n = write(w->proc.to_worker, w->out.data, w->out.len);
        if (n > 0) {
            sky_buf_consume(&w->out, (size_t)n);
            p->stats.bytes_sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        kill(w->proc.pid, SIGKILL);
        lose_worker(p, w, "its input pipe broke");
        return;
    }
}

/* Host-side timeouts: the worker's own hook gets TIMEOUT_GRACE seconds to
 * stop the call; a worker stuck in C code past that is killed. */
static void check_deadlines(sky_pool *p)
{
    double t = now();
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state == W_STARTING && t - w->started_at > p->opts.start_timeout) {
            kill(w->proc.pid, SIGKILL);
            lose_worker(p, w, "it did not complete the handshake in time");
            continue;
        }
        if (w->state != W_READY || !w->count)
            continue;
        sky_call *c = w->inflight[w->head];
        if (c->timeout <= 0 || t - c->started < c->timeout + TIMEOUT_GRACE)
            continue;
        inflight_pop_id(w, c->id);
        char msg[256];
        snprintf(msg, sizeof msg, "call timed out after %.1f s (node %d worker %d did not stop it and was restarted)",
                 c->timeout, w->node, w->index);
        fail_call(p, c, SKY_ERR_TIMEOUT, msg, "");
        kill(w->proc.pid, SIGKILL);
        lose_worker_after(p, w, "killed after a call timed out", 1);
    }
}

static double next_deadline_in(const sky_pool *p)
{
    double best = 0.1, t = now();   /* wake at least every 100 ms to see interrupts */
    for (int i = 0; i < p->nworkers; i++) {
        const worker *w = &p->workers[i];
        if (w->state != W_READY || !w->count)
            continue;
        const sky_call *c = w->inflight[w->head];
        if (c->timeout > 0) {
            double left = c->started + c->timeout + TIMEOUT_GRACE - t;
            if (left < best)
                best = left < 0 ? 0 : left;
        }
    }
    return best;
}

/* One turn of the event loop: block = wait up to the next deadline.
 * SIGPIPE is held for the whole turn (util/sigpipe.h): a write to a worker
 * that just died fails with EPIPE and the worker is handled as lost. */
static void pump(sky_pool *p, int block)
{
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    dispatch(p);
    int n = 0;
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->state == W_DEAD)
            continue;
        flush_writes(p, w);
        if (w->state == W_DEAD)
            continue;
        p->pfd[n] = (struct pollfd){ .fd = w->proc.from_worker, .events = POLLIN };
        p->pfd_worker[n++] = i;
        p->pfd[n] = (struct pollfd){ .fd = w->proc.diagnostics, .events = POLLIN };
        p->pfd_worker[n++] = i;
        if (w->out.len) {
            p->pfd[n] = (struct pollfd){ .fd = w->proc.to_worker, .events = POLLOUT };
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
            if (p->pfd[k].fd == w->proc.diagnostics)
                read_diagnostics(p, w);
            else if (p->pfd[k].fd == w->proc.from_worker)
                read_frames(p, w);
            else if (p->pfd[k].fd == w->proc.to_worker)
                flush_writes(p, w);
        }
    }
    check_deadlines(p);
    fail_unrunnable(p);
    dispatch(p);
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].state != W_DEAD)
            flush_writes(p, &p->workers[i]);
    sky_sigpipe_release(&guard);
}

/* ---- public ------------------------------------------------------------- */

char *sky_pool_find_worker(void)
{
    const char *env = getenv("SKYRUN_WORKER");
    if (env && *env)
        return strdup(env);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            snprintf(slash + 1, sizeof self - (size_t)(slash + 1 - self), "skyrun-worker");
            if (access(self, X_OK) == 0)
                return strdup(self);
        }
    }
    if (access(SKYRUN_WORKER_INSTALLED, X_OK) == 0)
        return strdup(SKYRUN_WORKER_INSTALLED);
    if (access(SKYRUN_WORKER_BUILD, X_OK) == 0)
        return strdup(SKYRUN_WORKER_BUILD);
    return NULL;
}

static void stop_workers(sky_pool *p)
{
    /* BYE and EOF: a healthy worker exits by itself. One that is already
     * gone makes the write fail with EPIPE (SIGPIPE held, util/sigpipe.h). */
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->proc.to_worker < 0)
            continue;
        sky_buf_reset(&w->out);
        wire_frame_append(&w->out, WIRE_BYE, NULL, 0);
        if (write(w->proc.to_worker, w->out.data, w->out.len) < 0) {
            /* already gone: reaped below */
        }
        close(w->proc.to_worker);
        w->proc.to_worker = -1;
    }
    sky_sigpipe_release(&guard);
    double until = now() + STOP_GRACE;
    for (;;) {
        int running = 0;
        for (int i = 0; i < p->nworkers; i++) {
            worker *w = &p->workers[i];
            if (w->proc.pid <= 0)
                continue;
            if (waitpid(w->proc.pid, NULL, WNOHANG) == w->proc.pid)
                w->proc.pid = 0;
            else
                running++;
        }
        if (!running || now() > until)
            break;
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->proc.pid > 0) {
            kill(w->proc.pid, SIGKILL);
            while (waitpid(w->proc.pid, NULL, 0) < 0 && errno == EINTR)
                ;
            w->proc.pid = 0;
        }
        /* Anything it left behind (processes a call started) goes with the node's group. */
        close_proc(w);
        w->state = W_DEAD;
    }
}

void sky_pool_free(sky_pool *p)
{
    if (!p)
        return;
    p->closing = 1;
    if (p->workers)
        stop_workers(p);
    for (int n = 0; p->nodes && n < p->nnodes; n++)
        if (p->provider)
            p->provider->stop_node(p->provider, &p->nodes[n]);
    if (p->provider)
        p->provider->free(p->provider);
    for (int i = 0; p->workers && i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        sky_buf_free(&w->in);
        sky_buf_free(&w->out);
        sky_buf_free(&w->scratch);
        for (int s = 0; s < 3; s++)
            sky_buf_free(&w->partial[s]);
        sky_buf_free(&w->diag);
        protoset_free(&w->known);
        free(w->inflight);
    }
    free(p->workers);
    sky_call_table_free(&p->calls, &p->call_alloc);
    sky_call_alloc_free(&p->call_alloc);
    for (int n = 0; n < p->nnodes; n++) {
        if (p->facts)
            free(p->facts[n]);
        if (p->hosts)
            free(p->hosts[n]);
    }
    free(p->facts);
    free(p->facts_len);
    free(p->hosts);
    free(p->pinned);
    free(p->nodes);
    free(p->pfd);
    free(p->pfd_worker);
    for (size_t i = 0; i < p->nstreams; i++)
        free(p->streams[i].ready);
    free(p->streams);
    sky_buf_free(&p->frame);
    free(p->worker_path);
    if (p->T)
        luaL_unref(p->T, LUA_REGISTRYINDEX, p->T_ref);
    free(p);
}

static void *xcalloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size);
    if (!q)
        abort();
    return q;
}

sky_pool *sky_pool_new(const sky_pool_options *opts, wire_codec *codec, lua_State *L, char *err, size_t errlen)
{
    sky_pool *p = xcalloc(1, sizeof *p);
    p->opts = *opts;
    if (p->opts.nodes <= 0)
        p->opts.nodes = 1;
    if (p->opts.workers <= 0)
        p->opts.workers = 1;
    if (p->opts.retries < 0)
        p->opts.retries = 0;
    if (p->opts.start_timeout <= 0)
        p->opts.start_timeout = 30;
    if (p->opts.timeout < 0)
        p->opts.timeout = 0;
    if (!p->opts.on_output)
        p->opts.on_output = default_output;
    p->codec = codec;
    p->T = lua_newthread(L);
    p->T_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->nnodes = p->opts.nodes;
    p->per_node = p->opts.workers;
    p->nworkers = p->nnodes * p->per_node;
    p->next_id = 1;

    const char *prov = p->opts.provider ? p->opts.provider : "localhost";
    if (strcmp(prov, "localhost") != 0) {
        snprintf(err, errlen, "unknown provider '%s' (known: localhost)", prov);
        goto fail;
    }
    p->worker_path = p->opts.worker_path ? strdup(p->opts.worker_path) : sky_pool_find_worker();
    if (p->worker_path) {
        /* Workers start in their node's directory: a relative path would miss. */
        char *abs = realpath(p->worker_path, NULL);
        if (abs) {
            free(p->worker_path);
            p->worker_path = abs;
        }
    }
    if (!p->worker_path || access(p->worker_path, X_OK) != 0) {
        snprintf(err, errlen, "cannot find skyrun-worker%s%s (set SKYRUN_WORKER to its path)",
                 p->worker_path ? " at " : "", p->worker_path ? p->worker_path : "");
        goto fail;
    }
    p->provider = sky_provider_localhost_new(err, errlen);
    if (!p->provider)
        goto fail;

    p->nodes = xcalloc((size_t)p->nnodes, sizeof *p->nodes);
    p->pinned = xcalloc((size_t)p->nnodes, sizeof *p->pinned);
    p->facts = xcalloc((size_t)p->nnodes, sizeof *p->facts);
    p->facts_len = xcalloc((size_t)p->nnodes, sizeof *p->facts_len);
    p->hosts = xcalloc((size_t)p->nnodes, sizeof *p->hosts);
    p->workers = xcalloc((size_t)p->nworkers, sizeof *p->workers);
    p->pfd = xcalloc((size_t)p->nworkers * 3, sizeof *p->pfd);
    p->pfd_worker = xcalloc((size_t)p->nworkers * 3, sizeof *p->pfd_worker);
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        w->proc.to_worker = w->proc.from_worker = w->proc.diagnostics = -1;
        w->state = W_DEAD;
        w->node = i / p->per_node;
        w->index = i % p->per_node;
        w->inflight = xcalloc(MAX_DEPTH, sizeof *w->inflight);
    }
    for (int n = 0; n < p->nnodes; n++) {
        sky_node *node = &p->nodes[n];
        node->index = n;
        node->mntns_fd = -1;
        snprintf(node->name, sizeof node->name, "node %d", n);
        p->hosts[n] = strdup("localhost");
        if (p->provider->start_node(p->provider, node, err, errlen) != 0)
            goto fail;
    }
    p->creating = 1;
    for (int i = 0; i < p->nworkers; i++)
        if (spawn(p, &p->workers[i], err, errlen) != 0)
            goto fail;

    /* Handshake: every worker must say HELLO with our protocol. */
    sky_interrupt_scope_begin();   /* see util/interrupt.h: Ctrl-C reaches every blocking wait */
    for (;;) {
        int starting = 0, dead = 0;
        for (int i = 0; i < p->nworkers; i++) {
            starting += p->workers[i].state == W_STARTING;
            dead += p->workers[i].state == W_DEAD;
        }
        if (dead) {
            snprintf(err, errlen, "%s", p->last_error[0] ? p->last_error : "a worker failed to start");
            goto fail_handshake;
        }
        if (!starting)
            break;
        if (sky_interrupt_pending()) {
            snprintf(err, errlen, "interrupted while starting the pool");
            goto fail_handshake;
        }
        pump(p, 1);
    }
    p->creating = 0;
    sky_interrupt_scope_end();
    return p;
fail_handshake:
    sky_interrupt_scope_end();
fail:
    sky_pool_free(p);
    return NULL;
}

uint64_t sky_pool_submit(sky_pool *p, const uint8_t *values, size_t len,
                         const wire_hashes *protos, double timeout, int node)
{
    if (p->closing || node >= p->nnodes)
        return 0;
    sky_call *c = sky_call_new(&p->call_alloc);
    c->id = p->next_id++;
    if (len > SKY_POOL_MAX_CALL_BYTES) {
        c->worker = -1;
        c->outcome.node = c->outcome.worker = -1;
        c->outcome.host = "";
        sky_call_table_put(&p->calls, c);
        fail_call(p, c, SKY_ERR_POOL, "the call is too large to send", "");
        return c->id;
    }
    sky_call_set_values(c, values, len);
    if (protos && protos->n) {
        c->protos.v = malloc(protos->n * sizeof *protos->v);
        if (!c->protos.v)
            abort();
        memcpy(c->protos.v, protos->v, protos->n * sizeof *protos->v);
        c->protos.n = c->protos.cap = protos->n;
    }
    c->timeout = timeout > 0 ? timeout : p->opts.timeout;
    c->node_pin = node;
    c->worker = -1;
    c->outcome.node = c->outcome.worker = -1;
    c->outcome.host = "";
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
        pump(p, 0);
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
            pump(p, 1);
        sky_interrupt_scope_end();
        if (c->outcome.status == SKY_CALL_PENDING)
            return &interrupted_outcome;
    }
    return &c->outcome;
}

static int by_done_seq(const void *a, const void *b)
{
    const sky_call *x = *(sky_call *const *)a, *y = *(sky_call *const *)b;
    return x->done_seq < y->done_seq ? -1 : x->done_seq > y->done_seq;
}

uint32_t sky_pool_stream_open(sky_pool *p, const uint64_t *ids, size_t n)
{
    call_stream *s = NULL;
    for (size_t i = 0; i < p->nstreams && !s; i++)
        if (!p->streams[i].id)
            s = &p->streams[i];
    if (!s) {
        call_stream *v = realloc(p->streams, (p->nstreams + 1) * sizeof *v);
        if (!v)
            return 0;
        p->streams = v;
        s = &p->streams[p->nstreams++];
        *s = (call_stream){ 0 };
    }
    sky_call **done = malloc((n ? n : 1) * sizeof *done);
    uint64_t *ready = malloc((n ? n : 1) * sizeof *ready);
    if (!done || !ready) {
        free(done);
        free(ready);
        return 0;
    }
    *s = (call_stream){ .ready = ready, .cap = n };
    if (++p->next_stream == 0)
        p->next_stream = 1;
    s->id = p->next_stream;
    size_t ndone = 0;
    for (size_t i = 0; i < n; i++) {
        sky_call *c = sky_call_table_get(&p->calls, ids[i]);
        if (!c)
            s->ready[s->tail++] = ids[i];   /* unknown: its waiter reports it */
        else if (c->outcome.status != SKY_CALL_PENDING)
            done[ndone++] = c;
        else {
            if (c->stream)
                stream_settle(p, c, 0);   /* a call belongs to one stream: the newest */
            c->stream = s->id;
            s->pending++;
        }
    }
    /* Those already finished come first, in the order they finished. */
    qsort(done, ndone, sizeof *done, by_done_seq);
    for (size_t i = 0; i < ndone; i++)
        s->ready[s->tail++] = done[i]->id;
    free(done);
    return s->id;
}

int sky_pool_stream_next(sky_pool *p, uint32_t id, uint64_t *call_id)
{
    int scoped = 0, r;
    for (;;) {
        call_stream *s = find_stream(p, id);   /* each turn: the array may have grown meanwhile */
        if (!s) {
            r = 0;
            break;
        }
        if (s->head < s->tail) {
            *call_id = s->ready[s->head++];
            r = 1;
            break;
        }
        if (!s->pending) {
            r = 0;
            break;
        }
        if (!scoped) {
            sky_interrupt_scope_begin();   /* only once it has to wait */
            scoped = 1;
        }
        if (sky_interrupt_pending()) {
            r = -1;
            break;
        }
        pump(p, 1);
    }
    if (scoped)
        sky_interrupt_scope_end();
    return r;
}

void sky_pool_stream_close(sky_pool *p, uint32_t id)
{
    call_stream *s = find_stream(p, id);
    if (!s)
        return;
    /* Calls still tagged keep a dangling tag; find_stream() ignores it since
     * stream ids are not reused (until 2^32 streams later). */
    free(s->ready);
    *s = (call_stream){ 0 };
}

void sky_pool_release(sky_pool *p, uint64_t id)
{
    sky_call *c = sky_call_table_get(&p->calls, id);
    if (!c)
        return;
    if (c->stream)
        stream_settle(p, c, 0);
    if (c->outcome.status == SKY_CALL_PENDING) {
        c->abandoned = 1;   /* freed when its worker answers or it leaves the queue */
        return;
    }
    sky_call_recycle(&p->call_alloc, sky_call_table_remove(&p->calls, id));
}

int sky_pool_nodes(const sky_pool *p) { return p->nnodes; }
int sky_pool_workers_per_node(const sky_pool *p) { return p->per_node; }

const uint8_t *sky_pool_node_facts(const sky_pool *p, int node, size_t *len)
{
    if (node < 0 || node >= p->nnodes || !p->facts[node])
        return NULL;
    *len = p->facts_len[node];
    return p->facts[node];
}

const char *sky_pool_node_host(const sky_pool *p, int node)
{
    return node >= 0 && node < p->nnodes && p->hosts[node] ? p->hosts[node] : "";
}

void sky_pool_get_stats(const sky_pool *p, sky_pool_stats *out)
{
    *out = p->stats;
    out->calls_held = p->calls.live;
}

size_t sky_pool_worker_pids(const sky_pool *p, int *pids, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < p->nworkers && n < max; i++)
        if (p->workers[i].proc.pid > 0)
            pids[n++] = p->workers[i].proc.pid;
    return n;
}
