/*
 * worker: the parts of skyrun-worker, shared between its files.
 *
 *   main.c       arguments, the protocol loop (frames in, frames out), exit
 *   inbox.c      the input thread: PING and CANCEL answered at once, the
 *                other frames handed to the main thread, heartbeat silence
 *   channel.c    the protocol channel: fds moved off 0/1, captured stdout
 *                forwarded live as OUTPUT by a drain thread, ordered writes
 *   call.c       SETUP, DEFINE and CALL: run a function with timeout and
 *                traceback, answer RESULT or ERROR
 *   sky_module.c the worker-side `sky` module and the node's facts (HELLO)
 *   keeper.c     `--keeper`: a node's own process (namespace, process
 *                group, processes started for the host, cleanup)
 */
#ifndef SKY_WORKER_H
#define SKY_WORKER_H

#include <lua.h>
#include <pthread.h>
#include <stdint.h>
#include "util/buf.h"
#include "wire/wire.h"

/* Exit statuses: 0 after BYE or end of input. */
enum { WORKER_EXIT_OK = 0, WORKER_EXIT_PROTOCOL = 1, WORKER_EXIT_USAGE = 2,
       WORKER_EXIT_HEARTBEAT = 3 };

/* Where this worker sits in its pool (from SETUP; a lone worker until then). */
struct worker_place {
    lua_Integer node, nodes, worker, workers;
    double heartbeat;     /* seconds of host silence tolerated while idle; 0 = forever */
    char node_name[128];
};

/* The protocol channel. Every frame to the host goes through `pending`
 * under `mu`, so RESULTs and OUTPUTs leave in the order they were made. */
struct channel {
    int in_fd, out_fd;       /* the host's byte stream (was fds 0 and 1) */
    int capture_fd;          /* read end of the pipe now behind fd 1 */
    pthread_mutex_t mu;
    sky_buf pending;         /* frames not yet written */
    sky_buf line;            /* captured output not yet sent: a partial line */
    int broken;              /* a write to the host failed: the host is gone */
};

int channel_open(struct channel *ch, char *why, size_t why_len);
int channel_start_drain(struct channel *ch);
/* Appends a frame to pending, after all output captured so far (the
 * stdout buffer is flushed first, a final partial line included). */
void channel_send_after_output(struct channel *ch, uint8_t type, const void *body, size_t len);
/* Queues all output captured so far, a final partial line included. */
void channel_take_output(struct channel *ch);
/* Writes pending frames now. Returns -1 if the host is gone. */
int channel_flush(struct channel *ch);
/* Appends a frame and writes everything pending at once (any thread). */
void channel_send_now(struct channel *ch, uint8_t type, const void *body, size_t len);

/* inbox.c: the input thread. */
struct inbox {
    struct channel *ch;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sky_buf ready;            /* decompressed frames for the main thread, in order */
    uint64_t *queued, *cancelled;  /* CALL ids arrived and not started / given back */
    size_t nqueued, capqueued, ncancelled, capcancelled;
    double heartbeat_ms;      /* -1 until SETUP; 0: no limit */
    int ended, bad;
    char why[300];
};
int inbox_start(struct inbox *ib, struct channel *ch);
/* Waits for frames: 0 with them swapped into out, 1 at the end of input,
 * -1 after a malformed frame (ib->why). */
int inbox_wait(struct inbox *ib, sky_buf *out);
/* The main thread is about to run CALL id: 0 when the host took it back. */
int inbox_start_call(struct inbox *ib, uint64_t id);
void inbox_set_heartbeat(struct inbox *ib, double seconds);

/* sky_module.c */
#define SKY_MAX_GPUS 64
#define SKY_WORKER_GPUS_KEY "skyrun.worker.gpus"   /* registry: this worker's GPUs (SETUP) */
struct gpu {
    char bus[64];         /* "0000:3b:00.0" */
    char model[200];      /* "NVIDIA H100 80GB HBM3" */
};
int sky_gpus(struct gpu *out, int max);
void sky_module_open(lua_State *L, struct worker_place *place);
/* Pushes the node's facts table (hostname, pid, cores, memory, accelerators, lua). */
void sky_push_facts(lua_State *L);

/* call.c */
struct worker {
    lua_State *L;
    wire_codec *codec;
    struct channel ch;
    struct inbox inbox;
    struct worker_place place;
    sky_buf body;            /* scratch for message bodies */
};
int worker_setup(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len);
int worker_define(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len);
int worker_call(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len);

/* main.c: one line on stderr, "PROGRAM[pid]: message". */
void worker_diagnose(const char *program, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* keeper.c */
int keeper_main(int argc, char **argv);

#endif
