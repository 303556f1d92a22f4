/*
 * accelerators: which GPUs a pool asks for (`accelerator = "H100:8"`), which
 * nodes have them, and which of them each worker gets.
 *
 * A node reports its GPUs as `skyrun-worker --gpus` prints them (bus id, a
 * tab, the model; sorted by bus id, the order CUDA uses with
 * CUDA_DEVICE_ORDER=PCI_BUS_ID). "TYPE" asks for every GPU of that type on
 * a node (at least one); "TYPE:N" for N of them. A model matches TYPE when
 * one of its words is TYPE or starts with "TYPE-", case aside: "L4" matches
 * "NVIDIA L4" but not "NVIDIA L40S"; "A100" matches "NVIDIA A100-SXM4-80GB".
 * A node's chosen GPUs are shared out among its W workers: each gets its
 * own slice when there are at least W, else worker w gets GPU w mod count.
 */
#ifndef SKY_COMPUTE_ACCELERATORS_H
#define SKY_COMPUTE_ACCELERATORS_H

#include <stddef.h>

#define SKY_MAX_NODE_GPUS 64

typedef struct sky_accel_request {
    char type[64];
    int count;            /* 0: all of that type on the node */
} sky_accel_request;

typedef struct sky_gpu {
    char bus[64];
    char model[200];
} sky_gpu;

/* "H100", "H100:8". 0, or -1 with err. */
int sky_accel_parse(const char *spec, sky_accel_request *r, char *err, size_t errlen);

/* Lines "BUS\tMODEL" into out; returns how many. */
int sky_accel_parse_gpus(const char *text, sky_gpu *out, int max);

/* Positions (in gpus) of the GPUs the request takes on this node; returns
 * their number, or 0 when the node cannot serve the request. */
int sky_accel_choose(const sky_accel_request *r, const sky_gpu *gpus, int n, int *chosen);

/* Worker w of workers gets chosen[...]: their positions into out; returns
 * how many (at least 1 when nchosen > 0). */
int sky_accel_slice(const int *chosen, int nchosen, int w, int workers, int *out);

/* "2 x NVIDIA L4" / "no GPU" / "NVIDIA L4, NVIDIA T4", for errors. */
void sky_accel_describe(const sky_gpu *gpus, int n, char *out, size_t len);

#endif
