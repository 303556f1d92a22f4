/*
 * teardown: where a pool stops. Every worker is told BYE and given
 * POOL_STOP_GRACE to exit, then killed; every node is stopped by its
 * provider (which undoes what was set up there: volumes, credentials,
 * folders); then the pool's memory goes. It runs from sky_pool_free(), on
 * every exit path of the host that lets it run (the `<close>` of a pool, a
 * Lua error, Ctrl-C, SIGTERM, a finalizer); when the host cannot run it
 * (SIGKILL, os.exit), each node's keeper does the same by itself.
 */
#include "compute/pool_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/sigpipe.h"

void pool_stop_workers(sky_pool *p)
{
    /* BYE and EOF: a healthy worker exits by itself. One that is already
     * gone makes the write fail with EPIPE (SIGPIPE held, util/sigpipe.h). */
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->proc.to < 0)
            continue;
        sky_buf_reset(&w->out);
        w->out_off = 0;
        wire_frame_append(&w->out, WIRE_BYE, NULL, 0);
        if (write(w->proc.to, w->out.data, w->out.len) < 0) {
            /* already gone: reaped below */
        }
        close(w->proc.to);
        w->proc.to = -1;
    }
    sky_sigpipe_release(&guard);
    /* One deadline for all: they exit in parallel. */
    double until = pool_now() + POOL_STOP_GRACE;
    for (int i = 0; i < p->nworkers; i++) {
        worker *w = &p->workers[i];
        if (w->proc.id > 0 || w->proc.from >= 0) {
            char how[160];
            p->provider->end(p->provider, &p->nodes[w->node], &w->proc, until, how, sizeof how);
            w->proc = (sky_proc)SKY_PROC_INIT;
        }
        w->state = W_DEAD;
    }
}

void sky_pool_free(sky_pool *p)
{
    if (!p)
        return;
    p->closing = 1;
    pool_heartbeat_stop(p);
    if (p->workers && p->provider)
        pool_stop_workers(p);
    if (p->setup && p->nodes && p->provider)
        sky_node_setup_teardown(p->setup, p->provider, p->nodes, p->nnodes);
    for (int n = 0; p->nodes && n < p->nnodes; n++)
        if (p->provider)
            p->provider->stop_node(p->provider, &p->nodes[n]);
    if (p->provider)
        p->provider->free(p->provider);
    sky_node_setup_free(p->setup);
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
    for (int n = 0; p->nodes && n < p->nnodes; n++) {
        free(p->nodes[n].host);
        free(p->nodes[n].workdir);
        free(p->nodes[n].private_dir);
        if (p->facts)
            free(p->facts[n]);
        if (p->hosts)
            free(p->hosts[n]);
    }
    for (int n = 0; p->gpus && n < p->nnodes; n++) {
        free(p->gpus[n]);
        free(p->gpu_chosen[n]);
    }
    free(p->gpus);
    free(p->gpu_chosen);
    free(p->ngpu_chosen);
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
    free(p->keeper_path);
    free(p->dynamic_path);
    free(p->node_worker);
    if (p->T)
        luaL_unref(p->T, LUA_REGISTRYINDEX, p->T_ref);   /* T shares the registry; L may be a dead coroutine */
    pthread_mutex_destroy(&p->io_mu);
    free(p);
}
