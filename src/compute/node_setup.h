/*
 * node_setup: what a pool sets up on every node before its workers start,
 * and takes down before the node goes — the image and the volumes.
 *
 *   image    apt packages (checked where the provider never installs, as
 *            on localhost), env for workers and setup commands, setup
 *            commands (sh -c, in order), includes (local Lua files and
 *            folders, shipped to a content-addressed cache on the node only
 *            when missing there, and put first on the workers' package.path)
 *   volumes  an S3 prefix seen as a folder: mode "mount" mounts it with
 *            s3fs-fuse (read-only when asked); mode "copy" downloads it
 *            before workers start and, when writable, uploads what changed
 *            at teardown (new and changed files; deletions mirrored)
 *
 * Written once against the provider seam — spawn a process on a node, ask
 * the node's keeper to make a folder, write a file, bind-mount, unmount —
 * so every provider gets the same behaviour. Phases run on all nodes in
 * parallel; each failure names the node, the phase and what went wrong,
 * with the tail of the output. What was set up is tracked by each node's
 * keeper, which undoes it even if the host disappears.
 */
#ifndef SKY_COMPUTE_NODE_SETUP_H
#define SKY_COMPUTE_NODE_SETUP_H

#include <stddef.h>

#include "compute/node_exec.h"
#include "compute/provider.h"
#include "s3/client.h"

typedef struct sky_image {
    const char *const *apt;        /* package names, NULL-terminated; NULL = none */
    const char *const *env;        /* "NAME=value" */
    const char *const *setup;      /* shell commands */
    const char *const *includes;   /* local files and folders */
} sky_image;

enum sky_volume_mode { SKY_VOLUME_MOUNT = 0, SKY_VOLUME_COPY = 1 };

typedef struct sky_volume {
    const char *bucket;
    const char *prefix;            /* "" = the whole bucket */
    const char *mount;             /* absolute path on every node */
    int read_only;
    enum sky_volume_mode mode;
    s3_client *storage;            /* borrowed: must outlive the pool */
} sky_volume;

typedef struct sky_node_setup sky_node_setup;

/* Checks the image and the volumes before any node starts — mounts
 * absolute, not / nor a system folder, not twice, not nested; prefixes
 * normalised and unable to escape with ".."; each bucket exists and its
 * credentials can list it — and copies them. NULL with err on the first
 * problem (naming the volume by its mount). */
sky_node_setup *sky_node_setup_new(const sky_image *image, const sky_volume *volumes, size_t nvolumes,
                                   char *err, size_t errlen);

/* Does it on every node, in parallel. 0, or -1 with err naming node, phase
 * and cause (the tail of its output included). Ctrl-C stops it. */
int sky_node_setup_run(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes,
                       sky_setup_output out, void *out_ud, int quiet, char *err, size_t errlen);

/* Whether workers should load C modules: the image names apt packages. */
int sky_node_setup_wants_c_modules(const sky_node_setup *s);

/* Which worker binary each node runs: dynamic (loads the node's Lua C
 * modules) where `dynamic --version` starts there, else static (runs on any
 * C library). out[i] points at one of the two. dynamic may be NULL. */
void sky_node_setup_choose_worker(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes,
                                  const char *static_path, const char *dynamic_path, const char **out);

/* What a node's workers need: extra environment ("NAME=value", NULL-
 * terminated) and the folder of the includes ("" when none). */
const char *const *sky_node_setup_env(const sky_node_setup *s);
const char *sky_node_setup_include_dir(const sky_node_setup *s, int node);
/* Whether a node must be in a namespace of its own to hold the volumes
 * (the localhost provider asks for a user namespace then). */
int sky_node_setup_needs_mounts(const sky_node_setup *s);

/* After the workers stopped, before the nodes go: writable copies uploaded
 * back, volumes unmounted, credentials removed. Problems are logged (the
 * pool is going either way); returns the number of them. */
int sky_node_setup_teardown(sky_node_setup *s, sky_provider *pr, sky_node *nodes, int nnodes);

void sky_node_setup_free(sky_node_setup *s);

#endif
