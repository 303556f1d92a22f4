/*
 * pool: bring-up — options and their defaults, the provider, nodes, workers
 * and the handshake — plus accessors and counters. See pool.h for the
 * contract and pool_internal.h for where the rest of the pool lives.
 */
#include "compute/pool_internal.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compute/node_exec.h"
#include "skyrun_config.h"
#include "util/alloc.h"
#include "util/interrupt.h"

double pool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sky_pool_options_init(sky_pool_options *o)
{
    memset(o, 0, sizeof *o);
    o->nodes = 1;
    o->workers = 1;
    o->retries = SKY_POOL_DEFAULT_RETRIES;
    o->start_timeout = SKY_POOL_DEFAULT_START_TIMEOUT;
    o->heartbeat = SKY_POOL_DEFAULT_HEARTBEAT;
}

static int check_options(const sky_pool_options *o, char *err, size_t errlen)
{
    if (o->nodes < 1 || o->nodes > SKY_POOL_MAX_NODES)
        snprintf(err, errlen, "nodes must be between 1 and %d (got %d)", SKY_POOL_MAX_NODES, o->nodes);
    else if (o->workers < 1 || o->workers > SKY_POOL_MAX_WORKERS)
        snprintf(err, errlen, "workers must be between 1 and %d (got %d)", SKY_POOL_MAX_WORKERS, o->workers);
    else if (o->retries < 0 || o->retries > SKY_POOL_MAX_RETRIES)
        snprintf(err, errlen, "retries must be between 0 and %d (got %d)", SKY_POOL_MAX_RETRIES, o->retries);
    else if (!(o->timeout >= 0))
        snprintf(err, errlen, "timeout must be 0 (none) or a positive number of seconds");
    else if (!(o->start_timeout > 0))
        snprintf(err, errlen, "start_timeout must be a positive number of seconds");
    else if (!(o->heartbeat >= 0))
        snprintf(err, errlen, "heartbeat must be 0 (none) or a positive number of seconds");
    else
        return 0;
    return -1;
}

char *sky_pool_find_worker(void)
{
    const char *env = getenv("SKYRUN_WORKER");
    if (env && *env)
        return sky_xstrdup(env);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            snprintf(slash + 1, sizeof self - (size_t)(slash + 1 - self), "skyrun-worker");
            if (access(self, X_OK) == 0)
                return sky_xstrdup(self);
        }
    }
    if (access(SKYRUN_WORKER_INSTALLED, X_OK) == 0)
        return sky_xstrdup(SKYRUN_WORKER_INSTALLED);
    if (access(SKYRUN_WORKER_BUILD, X_OK) == 0)
        return sky_xstrdup(SKYRUN_WORKER_BUILD);
    return NULL;
}

/* The worker binary, as an absolute path (nodes start their processes in
 * their own folders, where a relative path would miss). */
static int resolve_worker(sky_pool *p, char *err, size_t errlen)
{
    p->worker_path = p->opts.worker_path ? sky_xstrdup(p->opts.worker_path) : sky_pool_find_worker();
    if (p->worker_path) {
        char *abs = realpath(p->worker_path, NULL);
        if (abs) {
            free(p->worker_path);
            p->worker_path = abs;
        }
    }
    if (!p->worker_path || access(p->worker_path, X_OK) != 0) {
        snprintf(err, errlen, "cannot find skyrun-worker%s%s (set SKYRUN_WORKER to its path)",
                 p->worker_path ? " at " : "", p->worker_path ? p->worker_path : "");
        return -1;
    }
    /* Beside a skyrun-worker there may be its dynamic build (C modules);
     * a worker the user named (opts.worker_path) runs as it is. */
    const char *base = strrchr(p->worker_path, '/');
    if (!p->opts.worker_path && base && strcmp(base + 1, "skyrun-worker") == 0) {
        size_t n = strlen(p->worker_path) + 16;
        p->dynamic_path = sky_xmalloc(n);
        snprintf(p->dynamic_path, n, "%s-dynamic", p->worker_path);
        if (access(p->dynamic_path, X_OK) != 0) {
            free(p->dynamic_path);
            p->dynamic_path = NULL;
        }
    }
    return 0;
}

/* With an accelerator: only the nodes that have the GPUs asked for stay in
 * the pool (renumbered from 0); the others are stopped. None: an error
 * naming what each node has. */
static int choose_accelerator_nodes(sky_pool *p, char *err, size_t errlen)
{
    sky_accel_request req;
    if (sky_accel_parse(p->opts.accelerator, &req, err, errlen) != 0)
        return -1;
    const char *argv[] = { p->worker_path, "--gpus", NULL };
    node_step *steps = sky_xcalloc((size_t)p->nnodes, sizeof *steps);
    for (int n = 0; n < p->nnodes; n++)
        steps[n] = (node_step){ .active = 1, .argv = argv };
    node_output quiet = { NULL, NULL, 1 };
    int rc = node_steps_run(&quiet, p->provider, p->nodes, p->nnodes, steps, NULL, 60.0);
    if (rc != 0)
        snprintf(err, errlen, "interrupted while asking the nodes for their GPUs");
    p->gpus = sky_xcalloc((size_t)p->nnodes, sizeof *p->gpus);
    p->gpu_chosen = sky_xcalloc((size_t)p->nnodes, sizeof *p->gpu_chosen);
    p->ngpu_chosen = sky_xcalloc((size_t)p->nnodes, sizeof *p->ngpu_chosen);
    sky_buf have = SKY_BUF_INIT;
    int kept = 0;
    for (int n = 0; rc == 0 && n < p->nnodes; n++) {
        if (!node_step_ok(&steps[n], &p->nodes[n], "listing its GPUs", err, errlen)) {
            rc = -1;
            break;
        }
        p->gpus[n] = sky_xcalloc(SKY_MAX_NODE_GPUS, sizeof **p->gpus);
        p->gpu_chosen[n] = sky_xcalloc(SKY_MAX_NODE_GPUS, sizeof **p->gpu_chosen);
        int ngpus = sky_accel_parse_gpus(sky_buf_cstr(&steps[n].out), p->gpus[n], SKY_MAX_NODE_GPUS);
        p->ngpu_chosen[n] = sky_accel_choose(&req, p->gpus[n], ngpus, p->gpu_chosen[n]);
        char what[400];
        sky_accel_describe(p->gpus[n], ngpus, what, sizeof what);
        sky_buf_printf(&have, "%s%s has %s", have.len ? "; " : "", p->nodes[n].name, what);
        kept += p->ngpu_chosen[n] > 0;
    }
    for (int n = 0; n < p->nnodes; n++)
        node_step_free(&steps[n]);
    free(steps);
    if (rc == 0 && kept == 0) {
        snprintf(err, errlen, "no node has the accelerator '%s': %s", p->opts.accelerator, sky_buf_cstr(&have));
        rc = -1;
    }
    sky_buf_free(&have);
    if (rc != 0)
        return -1;
    /* Keep the nodes that serve the request, in order, renumbered. */
    int k = 0;
    for (int n = 0; n < p->nnodes; n++) {
        if (!p->ngpu_chosen[n]) {
            p->provider->stop_node(p->provider, &p->nodes[n]);
            free(p->nodes[n].host);
            free(p->nodes[n].workdir);
            free(p->nodes[n].private_dir);
            free(p->hosts[n]);
            free(p->gpus[n]);
            free(p->gpu_chosen[n]);
            continue;
        }
        p->nodes[k] = p->nodes[n];
        p->nodes[k].index = k;
        snprintf(p->nodes[k].name, sizeof p->nodes[k].name, "node %d", k);
        p->hosts[k] = p->hosts[n];
        p->gpus[k] = p->gpus[n];
        p->gpu_chosen[k] = p->gpu_chosen[n];
        p->ngpu_chosen[k] = p->ngpu_chosen[n];
        k++;
    }
    p->nnodes = k;
    return 0;
}

/* Every worker must say HELLO with our protocol before the pool is ready. */
static int handshake(sky_pool *p, char *err, size_t errlen)
{
    int rc = 0;
    sky_interrupt_scope_begin();   /* see util/interrupt.h: Ctrl-C reaches every blocking wait */
    for (;;) {
        int starting = 0, dead = 0;
        for (int i = 0; i < p->nworkers; i++) {
            starting += p->workers[i].state == W_STARTING;
            dead += p->workers[i].state == W_DEAD;
        }
        if (dead) {
            snprintf(err, errlen, "%s", p->last_error[0] ? p->last_error : "a worker failed to start");
            rc = -1;
            break;
        }
        if (!starting)
            break;
        if (sky_interrupt_pending()) {
            snprintf(err, errlen, "interrupted while starting the pool");
            rc = -1;
            break;
        }
        pool_pump(p, 1);
    }
    sky_interrupt_scope_end();
    return rc;
}

sky_pool *sky_pool_new(const sky_pool_options *opts, wire_codec *codec, lua_State *L, char *err, size_t errlen)
{
    sky_pool *p = sky_xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->io_mu, NULL);
    p->opts = *opts;
    p->provider = opts->provider;   /* ours from here on, also on failure */
    if (!p->opts.on_output)
        p->opts.on_output = pool_default_output;
    p->codec = codec;
    p->T = lua_newthread(L);
    p->T_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->next_id = 1;
    if (check_options(&p->opts, err, errlen) != 0 || resolve_worker(p, err, errlen) != 0)
        goto fail;
    /* Image and volumes are checked before any node starts. */
    if (!(p->setup = sky_node_setup_new(p->opts.image, p->opts.volumes, p->opts.nvolumes, err, errlen)))
        goto fail;
    if (!p->provider && !(p->provider = sky_provider_localhost_new(NULL, err, errlen)))
        goto fail;
    /* Node keepers are this build's skyrun-worker even when the workers run
     * another program (opts.worker_path): a keeper must speak our control
     * records. */
    p->keeper_path = sky_pool_find_worker();
    if (p->keeper_path) {
        char *abs = realpath(p->keeper_path, NULL);
        free(p->keeper_path);
        p->keeper_path = abs;
    }
    p->provider->worker_path = p->keeper_path ? p->keeper_path : p->worker_path;

    p->nnodes = p->opts.nodes;
    p->per_node = p->opts.workers;
    p->nodes = sky_xcalloc((size_t)p->nnodes, sizeof *p->nodes);
    p->hosts = sky_xcalloc((size_t)p->nnodes, sizeof *p->hosts);
    for (int n = 0; n < p->nnodes; n++) {
        p->nodes[n].index = n;
        snprintf(p->nodes[n].name, sizeof p->nodes[n].name, "node %d", n);
    }
    if (p->provider->start_nodes) {
        if (p->provider->start_nodes(p->provider, p->nodes, p->nnodes, err, errlen) != 0)
            goto fail;
    } else {
        for (int n = 0; n < p->nnodes; n++)
            if (p->provider->start_node(p->provider, &p->nodes[n], err, errlen) != 0)
                goto fail;
    }
    for (int n = 0; n < p->nnodes; n++)
        p->hosts[n] = sky_xstrdup(p->nodes[n].host ? p->nodes[n].host : "");
    if (p->opts.accelerator && choose_accelerator_nodes(p, err, errlen) != 0)
        goto fail;
    p->nworkers = p->nnodes * p->per_node;
    p->pinned = sky_xcalloc((size_t)p->nnodes, sizeof *p->pinned);
    p->facts = sky_xcalloc((size_t)p->nnodes, sizeof *p->facts);
    p->facts_len = sky_xcalloc((size_t)p->nnodes, sizeof *p->facts_len);
    p->workers = sky_xcalloc((size_t)p->nworkers, sizeof *p->workers);
    p->pfd = sky_xcalloc((size_t)p->nworkers * 3, sizeof *p->pfd);
    p->pfd_worker = sky_xcalloc((size_t)p->nworkers * 3, sizeof *p->pfd_worker);
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        w->proc = (sky_proc)SKY_PROC_INIT;
        w->state = W_DEAD;
        w->node = i / p->per_node;
        w->index = i % p->per_node;
        w->inflight = sky_xcalloc(POOL_MAX_DEPTH, sizeof *w->inflight);
    }
    if (sky_node_setup_run(p->setup, p->provider, p->nodes, p->nnodes, p->opts.on_output,
                           p->opts.output_ud, p->opts.quiet, err, errlen) != 0)
        goto fail;
    /* An image that installs native packages wants its C modules: the
     * dynamic worker where it starts. Otherwise the static one, the
     * smallest (docs/PERFORMANCE.md), which runs on any C library. */
    p->node_worker = sky_xcalloc((size_t)p->nnodes, sizeof *p->node_worker);
    sky_node_setup_choose_worker(p->setup, p->provider, p->nodes, p->nnodes, p->worker_path,
                                 sky_node_setup_wants_c_modules(p->setup) ? p->dynamic_path : NULL,
                                 p->node_worker);
    p->creating = 1;
    for (int i = 0; i < p->nworkers; i++)
        if (pool_spawn(p, &p->workers[i], err, errlen) != 0)
            goto fail;
    if (handshake(p, err, errlen) != 0)
        goto fail;
    p->creating = 0;
    if (pool_heartbeat_start(p) != 0) {
        snprintf(err, errlen, "cannot start the heartbeat thread");
        goto fail;
    }
    return p;
fail:
    sky_pool_free(p);
    return NULL;
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
        if (p->workers[i].proc.id > 0)
            pids[n++] = (int)p->workers[i].proc.id;
    return n;
}
