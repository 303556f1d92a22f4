/*
 * node_exec: runs one command on many nodes at once through the provider
 * (spawn, end) — node setup's phases, the worker and GPU probes. Each node's
 * step may feed bytes to the command's stdin and forward its output lines
 * ("[node N] …"); its exit status, stdout and the tail of its output are
 * kept for the caller to judge and to quote in errors. Ctrl-C stops it.
 */
#ifndef SKY_COMPUTE_NODE_EXEC_H
#define SKY_COMPUTE_NODE_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "compute/provider.h"
#include "util/buf.h"

/* Where forwarded lines go (the pool's on_output; worker = -1). */
typedef void (*sky_setup_output)(void *ud, int node, int worker, int stream, const char *line, size_t len);

typedef struct node_output {
    sky_setup_output fn;
    void *ud;
    int quiet;
} node_output;

typedef struct node_step {
    int active;                     /* run on this node */
    const char *const *argv;
    const uint8_t *input;           /* written to its stdin, then EOF */
    size_t input_len, input_off;
    int show;                       /* forward its lines, "[node N] " first */
    sky_proc proc;
    sky_buf out;                    /* its stdout */
    sky_buf tail;                   /* its last output, for errors */
    sky_buf partial[3];
    int open_streams;
    int status;                     /* exit status, 128 + signal, -1 unknown */
    char how[160];
    char spawn_err[400];
} node_step;

void node_step_free(node_step *st);

/* n steps, each running argv on its node (calloc'd; free each, then it). */
node_step *node_steps_same(int n, const char *const *argv);

/* Runs steps[i] on node i (where active) until all ended; timeout 0 = none.
 * Returns 0, or -1 when interrupted (everything killed). Exit statuses,
 * output and spawn errors are left in the steps for the caller to judge. */
int node_steps_run(const node_output *o, sky_provider *pr, sky_node *nodes, int n, node_step *steps,
                   const char *const *env, double timeout);

/* A step that must have exited 0: 1 if it did, else 0 with err naming node
 * and phase, how it ended and its last output. */
int node_step_ok(const node_step *st, const sky_node *node, const char *phase, char *err, size_t errlen);
/* "node 1: PHASE: WHAT" and the step's last output, into err (redacted). */
void node_step_error(const node_step *st, const sky_node *node, const char *phase, const char *what,
                     char *err, size_t errlen);

#endif
