/*
 * test_scheduler: the pool's scheduler (src/compute/scheduler.c) — dispatch,
 * retry and respawn decisions, deadlines — driven through an in-process
 * provider whose "workers" are threads speaking the real frame protocol
 * over pipes. A call's payload is a small script the fake worker obeys:
 *
 *   "ok:TEXT"          answer RESULT with the bytes TEXT
 *   "err:TEXT"         answer ERROR (the function raised TEXT)
 *   "sleep:MS:TEXT"    sleep MS milliseconds, then answer like ok
 *   "die"              the worker process "exits with status 3" at once
 *   "die-once:KEY"     die the first time KEY is seen anywhere, else ok:KEY
 *   "hang"             never answer (until killed)
 *
 * The pool treats payloads and results as opaque bytes, so these tests pin
 * the scheduler's decisions without a Lua worker. The real-process suites
 * (tests/compute, tests/lua) cover the same paths end to end. No assertion
 * depends on how fast anything runs; every wait is bounded by the pool.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compute/pool.h"
#include "compute/provider.h"
#include "wire/wire.h"

/* ---- the fake worker --------------------------------------------------------- */

static sky_buf g_facts;                 /* encoded { hostname = "inproc" } */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_seen[64][32];             /* die-once keys already seen */
static int g_nseen;

typedef struct fake {
    int in, out;                        /* its stdin (read) and stdout (write) */
    int err_w;                          /* its stderr, kept open until it exits */
    atomic_int killed, exited;
    int status;
    pthread_t thread;
} fake;

static void msleep(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(fake *f, uint8_t type, const sky_buf *body)
{
    sky_buf fr = SKY_BUF_INIT;
    wire_frame_append(&fr, type, body->data, body->len);
    int rc = write_all(f->out, fr.data, fr.len);
    sky_buf_free(&fr);
    return rc;
}

static int first_time(const char *key)
{
    pthread_mutex_lock(&g_mu);
    int seen = 0;
    for (int i = 0; i < g_nseen; i++)
        seen |= strcmp(g_seen[i], key) == 0;
    if (!seen && g_nseen < 64)
        snprintf(g_seen[g_nseen++], sizeof g_seen[0], "%.31s", key);
    pthread_mutex_unlock(&g_mu);
    return !seen;
}

/* Obeys one CALL; returns 0 to go on, 1 when the worker must "die". */
static int obey(fake *f, uint64_t id, const char *script, size_t len)
{
    char s[256];
    snprintf(s, sizeof s, "%.*s", (int)len, script);
    const char *text = NULL;
    if (strncmp(s, "ok:", 3) == 0) {
        text = s + 3;
    } else if (strncmp(s, "sleep:", 6) == 0) {
        char *colon = strchr(s + 6, ':');
        int ms = atoi(s + 6);
        for (int t = 0; t < ms && !f->killed; t += 5)
            msleep(5);
        text = colon ? colon + 1 : "";
    } else if (strcmp(s, "die") == 0) {
        return 1;
    } else if (strncmp(s, "die-once:", 9) == 0) {
        if (first_time(s + 9))
            return 1;
        text = s + 9;
    } else if (strcmp(s, "hang") == 0) {
        while (!f->killed)
            msleep(5);
        return 1;
    }
    sky_buf body = SKY_BUF_INIT;
    if (text) {
        wire_result_header(&body, id);
        sky_buf_append(&body, text, strlen(text));
        send_frame(f, WIRE_RESULT, &body);
    } else {
        const char *msg = strncmp(s, "err:", 4) == 0 ? s + 4 : "unknown script";
        wire_error_append(&body, id, WIRE_ERR_USER, msg, strlen(msg), "tb", 2);
        send_frame(f, WIRE_ERROR, &body);
    }
    sky_buf_free(&body);
    return 0;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    sky_buf body = SKY_BUF_INIT, in = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    f->status = 0;
    wire_hello_append(&body, g_facts.data, g_facts.len);
    send_frame(f, WIRE_HELLO, &body);
    int done = 0;
    while (!done && !f->killed) {
        struct pollfd p = { .fd = f->in, .events = POLLIN };
        if (poll(&p, 1, 20) <= 0)
            continue;
        sky_buf_reserve(&in, 65536);
        ssize_t n = read(f->in, in.data + in.len, in.cap - in.len);
        if (n <= 0)
            break;
        in.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            wire_frame fr;
            size_t used;
            wire_err we;
            if (wire_frame_next(in.data + off, in.len - off, &scratch, &fr, &used, &we) != WIRE_OK)
                break;
            off += used;
            if (fr.type == WIRE_BYE) {
                done = 1;
                break;
            }
            if (fr.type != WIRE_CALL)
                continue;
            uint64_t id;
            double timeout;
            const uint8_t *vals;
            size_t vlen;
            if (wire_call_parse(fr.body, fr.len, &id, &timeout, &vals, &vlen, &we) != WIRE_OK)
                continue;
            if (obey(f, id, (const char *)vals, vlen)) {
                f->status = f->killed ? 128 + 9 : 3;
                done = 1;
                break;
            }
        }
        sky_buf_consume(&in, off);
    }
    if (f->killed)
        f->status = 128 + 9;
    close(f->out);
    close(f->in);
    close(f->err_w);
    sky_buf_free(&body);
    sky_buf_free(&in);
    sky_buf_free(&scratch);
    f->exited = 1;
    return NULL;
}

/* ---- the in-process provider ------------------------------------------------ */

static int started_workers;

static int inproc_start_node(sky_provider *pr, sky_node *node, char *err, size_t errlen)
{
    (void)pr, (void)err, (void)errlen;
    node->host = strdup("inproc");
    node->workdir = strdup("/");
    node->private_dir = strdup("/");
    return 0;
}

static int inproc_spawn(sky_provider *pr, sky_node *node, const sky_spawn *spec, sky_proc *proc,
                        char *err, size_t errlen)
{
    (void)pr, (void)node, (void)spec, (void)err, (void)errlen;
    int to[2], from[2], diag[2];
    if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC) || pipe2(diag, O_CLOEXEC))
        return -1;
    fake *f = calloc(1, sizeof *f);
    f->in = to[0];
    f->out = from[1];
    f->err_w = diag[1];
    proc->to = to[1];
    proc->from = from[0];
    proc->diag = diag[0];
    proc->id = ++started_workers;
    proc->handle = f;
    pthread_create(&f->thread, NULL, fake_main, f);
    return 0;
}

static int inproc_end(sky_provider *pr, sky_node *node, sky_proc *proc, double deadline,
                      char *how, size_t howlen)
{
    (void)pr, (void)node;
    fake *f = proc->handle;
    int *fds[] = { &proc->to, &proc->from, &proc->diag };
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    if (!f)
        return -1;
    struct timespec ts;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (f->exited || (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 >= deadline)
            break;
        msleep(2);
    }
    if (!f->exited)
        f->killed = 1;
    pthread_join(f->thread, NULL);
    int status = f->status;
    if (status >= 128)
        snprintf(how, howlen, "was killed by signal %d", status - 128);
    else
        snprintf(how, howlen, "exited with status %d", status);
    free(f);
    proc->handle = NULL;
    proc->id = 0;
    return status;
}

static int inproc_request(sky_provider *pr, sky_node *node, const sky_buf *record,
                          const control_record **answer, char *err, size_t errlen)
{
    (void)pr, (void)node, (void)record, (void)answer;
    snprintf(err, errlen, "the in-process provider has no keeper");
    return -1;
}

static void inproc_stop_node(sky_provider *pr, sky_node *node) { (void)pr, (void)node; }
static void inproc_free(sky_provider *pr) { free(pr); }

static sky_provider *inproc_new(void)
{
    sky_provider *pr = calloc(1, sizeof *pr);
    pr->name = "inproc";
    pr->start_node = inproc_start_node;
    pr->spawn = inproc_spawn;
    pr->end = inproc_end;
    pr->request = inproc_request;
    pr->stop_node = inproc_stop_node;
    pr->free = inproc_free;
    return pr;
}

/* ---- helpers ------------------------------------------------------------------ */

static lua_State *g_L;
static wire_codec *g_codec;

static sky_pool *pool_with(int nodes, int workers, int retries)
{
    sky_pool_options o;
    sky_pool_options_init(&o);
    o.provider = inproc_new();
    o.nodes = nodes;
    o.workers = workers;
    o.retries = retries;
    o.quiet = 1;
    o.worker_path = "/bin/true";   /* not run: the provider makes threads */
    char err[600];
    sky_pool *p = sky_pool_new(&o, g_codec, g_L, err, sizeof err);
    if (!p)
        fail_msg("pool: %s", err);
    return p;
}

static uint64_t submit(sky_pool *p, const char *script, double timeout, int node)
{
    uint64_t id = sky_pool_submit(p, (const uint8_t *)script, strlen(script), NULL, timeout, node);
    assert_true(id > 0);
    return id;
}

static void assert_result(const sky_call_outcome *o, const char *text)
{
    if (o->status != SKY_CALL_OK)
        fail_msg("expected a result '%s', got error kind %d: %s", text, o->error_kind, o->message);
    assert_int_equal(o->values_len, strlen(text));
    assert_memory_equal(o->values, text, strlen(text));
}

/* ---- tests --------------------------------------------------------------------- */

static void dispatch_spreads_calls_over_idle_workers(void **state)
{
    (void)state;
    sky_pool *p = pool_with(2, 2, 3);
    uint64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = submit(p, "sleep:100:x", 0, -1);
    int seen[2][2] = { { 0 } };
    for (int i = 0; i < 4; i++) {
        const sky_call_outcome *o = sky_pool_wait(p, ids[i]);
        assert_result(o, "x");
        seen[o->node][o->worker]++;
    }
    for (int n = 0; n < 2; n++)
        for (int w = 0; w < 2; w++)
            assert_int_equal(seen[n][w], 1);   /* four idle workers, four calls: one each */
    sky_pool_free(p);
}

static void pinned_calls_run_on_their_node(void **state)
{
    (void)state;
    sky_pool *p = pool_with(3, 1, 3);
    for (int i = 0; i < 12; i++) {
        uint64_t id = submit(p, "ok:pinned", 0, 2);
        const sky_call_outcome *o = sky_pool_wait(p, id);
        assert_result(o, "pinned");
        assert_int_equal(o->node, 2);
        sky_pool_release(p, id);
    }
    sky_pool_free(p);
}

static void a_call_whose_worker_was_lost_runs_again(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 2, 3);
    uint64_t id = submit(p, "die-once:again", 0, -1);
    const sky_call_outcome *o = sky_pool_wait(p, id);
    assert_result(o, "again");
    assert_int_equal(o->attempts, 2);
    sky_pool_stats st;
    sky_pool_get_stats(p, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.workers_lost, 1);
    sky_pool_free(p);
}

static void retries_are_extra_attempts_after_the_first(void **state)
{
    (void)state;
    for (int retries = 0; retries <= 2; retries++) {
        sky_pool *p = pool_with(1, 1, retries);
        const sky_call_outcome *o = sky_pool_wait(p, submit(p, "die", 0, -1));
        assert_int_equal(o->status, SKY_CALL_FAILED);
        assert_int_equal(o->error_kind, SKY_ERR_LOST);
        assert_int_equal(o->attempts, retries + 1);
        assert_non_null(strstr(o->message, "exited with status 3"));
        char want[64];
        snprintf(want, sizeof want, "after %d attempt", retries + 1);
        assert_non_null(strstr(o->message, want));
        sky_pool_free(p);
    }
}

static void a_call_that_raised_is_never_retried(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 2, 5);
    const sky_call_outcome *o = sky_pool_wait(p, submit(p, "err:boom", 0, -1));
    assert_int_equal(o->status, SKY_CALL_FAILED);
    assert_int_equal(o->error_kind, SKY_ERR_USER);
    assert_string_equal(o->message, "boom");
    assert_int_equal(o->attempts, 1);
    sky_pool_stats st;
    sky_pool_get_stats(p, &st);
    assert_int_equal(st.workers_lost, 0);
    assert_int_equal(st.retries, 0);
    sky_pool_free(p);
}

static void a_worker_that_never_completes_a_call_stops_being_restarted(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 1, 100);
    const sky_call_outcome *o = sky_pool_wait(p, submit(p, "die", 0, -1));
    assert_int_equal(o->status, SKY_CALL_FAILED);
    assert_int_equal(o->error_kind, SKY_ERR_POOL);
    assert_non_null(strstr(o->message, "no worker left"));
    assert_non_null(strstr(o->message, "restarted 16 times"));
    /* The pool has no worker now: a new call fails at once, naming why. */
    const sky_call_outcome *later = sky_pool_wait(p, submit(p, "ok:x", 0, -1));
    assert_int_equal(later->error_kind, SKY_ERR_POOL);
    assert_non_null(strstr(later->message, "no worker left"));
    sky_pool_free(p);
}

static void a_worker_restarted_now_and_then_keeps_serving(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 1, 1);
    /* Each call kills the worker once; each then completes: 20 losses, never "no worker left". */
    for (int i = 0; i < 20; i++) {
        char script[32], key[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(script, sizeof script, "die-once:%s", key);
        const sky_call_outcome *o = sky_pool_wait(p, submit(p, script, 0, -1));
        assert_result(o, key);
    }
    sky_pool_stats st;
    sky_pool_get_stats(p, &st);
    assert_int_equal(st.workers_lost, 20);
    sky_pool_free(p);
}

static void a_call_past_its_deadline_fails_and_its_worker_is_replaced(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 1, 3);
    uint64_t stuck = submit(p, "hang", 0.05, -1);
    uint64_t behind[3];
    for (int i = 0; i < 3; i++)
        behind[i] = submit(p, "ok:after", 0, -1);
    const sky_call_outcome *o = sky_pool_wait(p, stuck);
    assert_int_equal(o->status, SKY_CALL_FAILED);
    assert_int_equal(o->error_kind, SKY_ERR_TIMEOUT);
    assert_non_null(strstr(o->message, "timed out after 0.1 s"));
    for (int i = 0; i < 3; i++) {
        const sky_call_outcome *b = sky_pool_wait(p, behind[i]);
        assert_result(b, "after");
        assert_int_equal(b->attempts, 1);   /* nothing waited behind the timed call */
    }
    sky_pool_free(p);
}

static void a_released_call_is_dropped_when_it_ends(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 1, 3);
    uint64_t id = submit(p, "sleep:50:x", 0, -1);
    sky_pool_poll(p, id);   /* dispatched */
    sky_pool_release(p, id);
    const sky_call_outcome *o = sky_pool_wait(p, submit(p, "ok:y", 0, -1));
    assert_result(o, "y");
    sky_pool_stats st;
    sky_pool_get_stats(p, &st);
    assert_int_equal(st.calls_held, 1);   /* only the waited one, until released */
    sky_pool_free(p);
}

static void a_stream_hands_out_calls_in_completion_order(void **state)
{
    (void)state;
    sky_pool *p = pool_with(1, 3, 3);
    uint64_t ids[3] = { submit(p, "sleep:400:slow", 0, -1), submit(p, "ok:fast", 0, -1),
                        submit(p, "sleep:150:middle", 0, -1) };
    uint32_t s = sky_pool_stream_open(p, ids, 3);
    assert_true(s > 0);
    uint64_t order[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(sky_pool_stream_next(p, s, &order[i]), 1);
    uint64_t none;
    assert_int_equal(sky_pool_stream_next(p, s, &none), 0);
    assert_int_equal(order[0], ids[1]);
    assert_int_equal(order[1], ids[2]);
    assert_int_equal(order[2], ids[0]);
    sky_pool_stream_close(p, s);
    sky_pool_free(p);
}

static void options_out_of_bounds_are_refused_by_the_pool(void **state)
{
    (void)state;
    struct { int nodes, workers, retries; const char *msg; } bad[] = {
        { 0, 1, 3, "nodes must be between 1 and 1024 (got 0)" },
        { 1025, 1, 3, "nodes must be between 1 and 1024" },
        { 1, 0, 3, "workers must be between 1 and 1024 (got 0)" },
        { 1, 1, -1, "retries must be between 0 and 100 (got -1)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sky_pool_options o;
        sky_pool_options_init(&o);
        o.provider = inproc_new();   /* freed by the failing pool */
        o.nodes = bad[i].nodes;
        o.workers = bad[i].workers;
        o.retries = bad[i].retries;
        o.worker_path = "/bin/true";
        char err[600] = "";
        assert_null(sky_pool_new(&o, g_codec, g_L, err, sizeof err));
        if (!strstr(err, bad[i].msg))
            fail_msg("expected '%s' in '%s'", bad[i].msg, err);
    }
    sky_pool_options o;
    sky_pool_options_init(&o);
    assert_int_equal(o.retries, SKY_POOL_DEFAULT_RETRIES);
    assert_int_equal(o.nodes, 1);
    assert_int_equal(o.workers, 1);
}

int main(void)
{
    g_L = luaL_newstate();
    luaL_openlibs(g_L);
    g_codec = wire_codec_new(g_L, 0);
    lua_createtable(g_L, 0, 1);
    lua_pushstring(g_L, "inproc");
    lua_setfield(g_L, -2, "hostname");
    wire_err we;
    if (wire_encode(g_codec, g_L, -1, 1, WIRE_ROOTS_VALUES, &g_facts, NULL, &we) != 0)
        return 1;
    lua_pop(g_L, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dispatch_spreads_calls_over_idle_workers),
        cmocka_unit_test(pinned_calls_run_on_their_node),
        cmocka_unit_test(a_call_whose_worker_was_lost_runs_again),
        cmocka_unit_test(retries_are_extra_attempts_after_the_first),
        cmocka_unit_test(a_call_that_raised_is_never_retried),
        cmocka_unit_test(a_worker_that_never_completes_a_call_stops_being_restarted),
        cmocka_unit_test(a_worker_restarted_now_and_then_keeps_serving),
        cmocka_unit_test(a_call_past_its_deadline_fails_and_its_worker_is_replaced),
        cmocka_unit_test(a_released_call_is_dropped_when_it_ends),
        cmocka_unit_test(a_stream_hands_out_calls_in_completion_order),
        cmocka_unit_test(options_out_of_bounds_are_refused_by_the_pool),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    wire_codec_free(g_codec);
    lua_close(g_L);
    sky_buf_free(&g_facts);
    return rc;
}
