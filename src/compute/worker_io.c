/*
 * worker_io: where worker processes are started, read and written.
 *
 * A worker is a process the provider started on a node, speaking frames
 * (wire.h) on its stdin/stdout, with its own diagnostics on stderr. Here:
 * starting one (pool_spawn), ending one (pool_end_worker), the frames it
 * is sent (DEFINE, CALL, SETUP) and those it sends (HELLO, RESULT, ERROR,
 * OUTPUT), and its output forwarded line by line with the node's prefix.
 * What to do with a result or a loss is the scheduler's (scheduler.c).
 */
#include "compute/pool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"

#define READ_CHUNK 65536

/* ---- prototypes a worker knows ------------------------------------------- */

static size_t hash_slot(const wire_hash *h, size_t cap)
{
    size_t s;
    memcpy(&s, h->b, sizeof s);
    return s & (cap - 1);
}

int protoset_has(const protoset *s, const wire_hash *h)
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

static void protoset_grow(protoset *s)
{
    protoset bigger = { 0 };
    bigger.cap = s->cap ? s->cap * 2 : 16;
    bigger.v = sky_xcalloc(bigger.cap, sizeof *bigger.v);
    bigger.used = sky_xcalloc(bigger.cap, 1);
    for (size_t i = 0; i < s->cap; i++)
        if (s->used[i])
            protoset_add(&bigger, &s->v[i]);
    free(s->v);
    free(s->used);
    *s = bigger;
}

void protoset_add(protoset *s, const wire_hash *h)
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

void protoset_free(protoset *s)
{
    free(s->v);
    free(s->used);
    memset(s, 0, sizeof *s);
}

/* ---- output ------------------------------------------------------------------ */

void pool_default_output(void *ud, int node, int worker_index, int stream, const char *line, size_t len)
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

void pool_read_diagnostics(sky_pool *p, worker *w)
{
    char chunk[4096];
    for (int rounds = 0; rounds < 16 && w->proc.diag >= 0; rounds++) {
        ssize_t n = read(w->proc.diag, chunk, sizeof chunk);
        if (n <= 0)
            break;
        emit_lines(p, w, 2, &w->diag, (const uint8_t *)chunk, (size_t)n, 0);
    }
}

/* A call's last partial lines, so the next call's output starts on its own line. */
void pool_flush_lines(sky_pool *p, worker *w)
{
    for (int s = 1; s <= 2; s++)
        emit_lines(p, w, s, &w->partial[s], NULL, 0, 1);
    pool_read_diagnostics(p, w);
    emit_lines(p, w, 2, &w->diag, NULL, 0, 1);
}

/* ---- processes ------------------------------------------------------------------ */

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void reset_worker_buffers(worker *w)
{
    sky_buf_reset(&w->in);
    sky_buf_reset(&w->out);
    w->out_off = 0;
    for (int s = 0; s < 3; s++)
        sky_buf_reset(&w->partial[s]);
    sky_buf_reset(&w->diag);
    protoset_free(&w->known);
    w->head = w->count = 0;
}

/* The GPUs worker w runs with: positions into p->gpus[node]. */
static int worker_gpus(const sky_pool *p, const worker *w, int *out)
{
    if (!p->ngpu_chosen || !p->ngpu_chosen[w->node])
        return 0;
    return sky_accel_slice(p->gpu_chosen[w->node], p->ngpu_chosen[w->node], w->index, p->per_node, out);
}

/* The worker's environment: the image's, and its GPUs for CUDA. */
static const char **worker_env(const sky_pool *p, const worker *w, sky_buf *cuda)
{
    const char *const *image = sky_node_setup_env(p->setup);
    size_t n = 0;
    while (image && image[n])
        n++;
    const char **env = sky_xcalloc(n + 3, sizeof *env);
    for (size_t i = 0; i < n; i++)
        env[i] = image[i];
    int gpus[SKY_MAX_NODE_GPUS];
    int k = worker_gpus(p, w, gpus);
    if (k > 0) {
        sky_buf_append_str(cuda, "CUDA_VISIBLE_DEVICES=");
        for (int i = 0; i < k; i++)
            sky_buf_printf(cuda, "%s%d", i ? "," : "", gpus[i]);
        env[n++] = sky_buf_cstr(cuda);
        env[n++] = "CUDA_DEVICE_ORDER=PCI_BUS_ID";
    }
    return env;
}

int pool_spawn(sky_pool *p, worker *w, char *err, size_t errlen)
{
    reset_worker_buffers(w);
    const char *argv[] = { p->node_worker ? p->node_worker[w->node] : p->worker_path, NULL };
    sky_buf cuda = SKY_BUF_INIT;
    const char **env = worker_env(p, w, &cuda);
    sky_spawn spec = { .argv = argv, .env = env };
    char why[400];
    int rc = p->provider->spawn(p->provider, &p->nodes[w->node], &spec, &w->proc, why, sizeof why);
    free(env);
    sky_buf_free(&cuda);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start worker %d: %s", w->index, why);
        w->state = W_DEAD;
        return -1;
    }
    set_nonblocking(w->proc.to);
    set_nonblocking(w->proc.from);
    set_nonblocking(w->proc.diag);
    w->state = W_STARTING;
    w->started_at = w->last_heard = w->last_sent = pool_now();
    w->generation++;
    return 0;
}

void pool_end_worker(sky_pool *p, worker *w, double deadline, char *how, size_t howlen)
{
    pool_read_diagnostics(p, w);   /* its last words explain the loss */
    if (w->diag.len)
        emit_lines(p, w, 2, &w->diag, NULL, 0, 1);
    p->provider->end(p->provider, &p->nodes[w->node], &w->proc, deadline, how, howlen);
    w->proc = (sky_proc)SKY_PROC_INIT;
}

/* ---- frames to a worker ------------------------------------------------------ */

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

void pool_send_call(sky_pool *p, worker *w, sky_call *c)
{
    write_define_frames(p, w, c);
    sky_buf_reset(&p->frame);
    wire_call_header(&p->frame, c->id, c->timeout);
    sky_buf_append(&p->frame, c->values, c->values_len);
    wire_frame_append(&w->out, WIRE_CALL, p->frame.data, p->frame.len);
    p->stats.calls_sent++;
    w->inflight[(w->head + w->count) % POOL_MAX_DEPTH] = c;
    w->count++;
    c->worker = (int)(w - p->workers);
    c->outcome.node = w->node;
    c->outcome.worker = w->index;
    c->outcome.host = p->hosts[w->node];
    c->outcome.attempts++;
    c->started = pool_now();
}

void pool_send_cancel(sky_pool *p, worker *w, sky_call *c)
{
    sky_buf_reset(&p->frame);
    wire_id_append(&p->frame, c->id);
    wire_frame_append(&w->out, WIRE_CANCEL, p->frame.data, p->frame.len);
    c->moving = 1;
}

void pool_flush_writes(sky_pool *p, worker *w)
{
    while (w->out.len && w->proc.to >= 0) {
        ssize_t n = write(w->proc.to, w->out.data + w->out_off, w->out.len - w->out_off);
        if (n > 0) {
            w->out_off += (size_t)n;
            p->stats.bytes_sent += (uint64_t)n;
            w->last_sent = pool_now();
            if (w->out_off == w->out.len) {
                sky_buf_reset(&w->out);
                w->out_off = 0;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* Written bytes are dropped from the front only now and then:
             * moving a 64 MiB argument's rest after every 200 KiB the pipe
             * takes was most of the host's CPU (docs/PERFORMANCE.md). */
            if (w->out_off > (1u << 20) && w->out_off > w->out.len / 2) {
                sky_buf_consume(&w->out, w->out_off);
                w->out_off = 0;
            }
            return;
        }
        pool_lose_worker(p, w, "its input pipe broke", 0);
        return;
    }
}

/* ---- frames from a worker -------------------------------------------------- */

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
        p->facts[w->node] = sky_xmalloc(facts_len);
        memcpy(p->facts[w->node], facts, facts_len);
        p->facts_len[w->node] = facts_len;
        if (wire_decode(p->codec, T, facts, facts_len, &we) >= 1 && lua_istable(T, top + 1)) {
            lua_getfield(T, top + 1, "hostname");
            const char *hn = lua_tostring(T, -1);
            if (hn) {
                free(p->hosts[w->node]);
                p->hosts[w->node] = sky_xstrdup(hn);
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
    lua_pushnumber(T, p->opts.heartbeat);
    lua_setfield(T, -2, "heartbeat");
    lua_pushstring(T, p->nodes[w->node].name);
    lua_setfield(T, -2, "node_name");
    lua_pushstring(T, p->nodes[w->node].workdir);
    lua_setfield(T, -2, "workdir");
    int gpus[SKY_MAX_NODE_GPUS];
    int ngpus = worker_gpus(p, w, gpus);
    if (ngpus > 0) {
        lua_createtable(T, ngpus, 0);
        for (int i = 0; i < ngpus; i++) {
            const sky_gpu *g = &p->gpus[w->node][gpus[i]];
            lua_createtable(T, 0, 3);
            lua_pushstring(T, g->model);
            lua_setfield(T, -2, "name");
            lua_pushstring(T, g->bus);
            lua_setfield(T, -2, "bus");
            lua_pushinteger(T, gpus[i]);
            lua_setfield(T, -2, "index");
            lua_rawseti(T, -2, i + 1);
        }
        lua_setfield(T, -2, "accelerators");
    }
    const char *inc = sky_node_setup_include_dir(p->setup, w->node);
    if (inc[0]) {
        lua_pushfstring(T, "%s/?.lua;%s/?/init.lua", inc, inc);
        lua_setfield(T, -2, "package_path");
    }
    sky_buf_reset(&p->frame);
    int rc = wire_encode(p->codec, T, top + 1, 1, WIRE_ROOTS_VALUES, &p->frame, NULL, &we);
    lua_settop(T, top);
    if (rc != 0) {
        snprintf(err, errlen, "node %d worker %d: cannot encode SETUP: %s", w->node, w->index, we.msg);
        return -1;
    }
    wire_frame_append(&w->out, WIRE_SETUP, p->frame.data, p->frame.len);
    w->state = W_READY;
    w->last_done = pool_now();
    return 0;
}

/* The call an answer is for, with its worker's output flushed before the
 * answer is told; NULL when the call is no longer the worker's. */
static sky_call *answered_call(sky_pool *p, worker *w, uint64_t id)
{
    sky_call *c = pool_take_answered(p, w, id);
    if (c)
        pool_flush_lines(p, w);
    return c;
}

static void handle_result(sky_pool *p, worker *w, const wire_frame *f)
{
    uint64_t id;
    const uint8_t *vals;
    size_t n;
    wire_err we;
    if (wire_result_parse(f->body, f->len, &id, &vals, &n, &we) != WIRE_OK) {
        pool_lose_worker(p, w, we.msg, LOSE_KILL);
        return;
    }
    sky_call *c = answered_call(p, w, id);
    if (!c)
        return;
    if (c->abandoned) {
        pool_finish_call(p, c);
    } else if (sky_call_set_results(c, vals, n) != 0) {
        pool_fail_call(p, c, SKY_ERR_POOL, "out of memory holding the call's results", "");
    } else {
        c->outcome.values = c->results;
        c->outcome.values_len = n;
        c->outcome.status = SKY_CALL_OK;
        pool_finish_call(p, c);
    }
}

static void handle_error(sky_pool *p, worker *w, const wire_frame *f)
{
    uint64_t id;
    uint8_t kind;
    const char *msg, *tb;
    size_t msg_len, tb_len;
    wire_err we;
    if (wire_error_parse(f->body, f->len, &id, &kind, &msg, &msg_len, &tb, &tb_len, &we) != WIRE_OK) {
        pool_lose_worker(p, w, we.msg, LOSE_KILL);
        return;
    }
    sky_call *c = answered_call(p, w, id);
    if (!c)
        return;
    char *m = sky_xstrndup(msg, msg_len), *t = sky_xstrndup(tb, tb_len);
    pool_fail_call(p, c, kind, m, t);
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

/* Handles one frame. Returns 0, or -1 when the worker process is gone (its
 * buffers were reset by then and must not be touched by the caller). */
static int handle_frame(sky_pool *p, worker *w, const wire_frame *f)
{
    unsigned gen = w->generation;
    char err[512];
    switch (f->type) {
    case WIRE_HELLO:
        if (w->state == W_STARTING && handle_hello(p, w, f, err, sizeof err) != 0) {
            char how[160];
            snprintf(p->last_error, sizeof p->last_error, "%s", err);
            pool_end_worker(p, w, 0, how, sizeof how);
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
    case WIRE_PONG:
        break;   /* its arrival is the news (last_heard) */
    case WIRE_CANCELLED: {
        uint64_t id;
        wire_err we;
        if (wire_id_parse(f->body, f->len, &id, &we) != WIRE_OK)
            pool_lose_worker(p, w, we.msg, LOSE_KILL);
        else
            pool_call_given_back(p, w, id);
        break;
    }
    default:
        break;   /* unknown types from a newer worker are ignored */
    }
    return w->generation == gen && w->state != W_DEAD ? 0 : -1;
}

/* Reads what the worker wrote and handles every complete frame. */
void pool_read_frames(sky_pool *p, worker *w)
{
    int eof = 0;
    for (int rounds = 0; rounds < 64; rounds++) {
        sky_buf_reserve(&w->in, READ_CHUNK);
        ssize_t n = read(w->proc.from, w->in.data + w->in.len, READ_CHUNK);
        if (n > 0) {
            w->in.len += (size_t)n;
            p->stats.bytes_received += (uint64_t)n;
            w->last_heard = pool_now();
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
            pool_lose_worker(p, w, we.msg, LOSE_KILL);
            return;
        }
        off += used;
        if (handle_frame(p, w, &f) != 0)
            return;
    }
    sky_buf_consume(&w->in, off);
    if (eof) {
        sky_buf_reset(&w->in);
        pool_lose_worker(p, w, w->state == W_STARTING ? "before the handshake" : NULL, 0);
    }
}
