/*
 * keeper_client: the host's side of the channel to a node's keeper
 * (src/worker/keeper.c; records of wire/control.h), over any byte stream:
 * a unix socket on localhost (where started processes' streams come back
 * as descriptors with the answer), an ssh channel or a Slurm step's stdio.
 * One request at a time; "exit" and "warn" records that arrive meanwhile
 * are kept (exits, for end()) or logged (warnings).
 */
#ifndef SKY_COMPUTE_KEEPER_CLIENT_H
#define SKY_COMPUTE_KEEPER_CLIENT_H

#include <stddef.h>

#include "util/buf.h"
#include "wire/control.h"

#define KEEPER_REPLY_SECONDS 10.0   /* a keeper answers at once; this is for a stalled machine */
#define KEEPER_MAX_HELD_FDS 64

typedef struct keeper_exit {
    long id;
    int code;
    char how[160];
} keeper_exit;

typedef struct keeper_client {
    int in_fd, out_fd;              /* from and to the keeper (may be one socket); -1 closed */
    int passes_fds;                 /* in_fd is a unix socket: read with recvmsg */
    char name[64];                  /* "node 0", first in messages */
    sky_buf in;                     /* bytes not yet parsed */
    int held[KEEPER_MAX_HELD_FDS];  /* descriptors received, not yet claimed */
    int nheld;
    keeper_exit *exits;             /* processes that ended, not yet asked about */
    size_t nexits, capexits;
    control_record rec;             /* the last answer (fields point into `last`) */
    sky_buf last;
} keeper_client;

void keeper_client_init(keeper_client *kc, int in_fd, int out_fd, int passes_fds, const char *name);
/* Closes the streams and what is held. */
void keeper_client_close(keeper_client *kc);

/* Sends a record: 0, or -1 when the keeper is gone. */
int keeper_client_send(keeper_client *kc, const sky_buf *record);
/* The next answer (not an exit, not a warning) into kc->rec: 0, or -1 with
 * err ("node 0: the node's keeper did not answer in 10 s" / "is gone"). */
int keeper_client_next(keeper_client *kc, double deadline, char *err, size_t errlen);
/* send + next; "err" answers become -1 with their message in err. */
int keeper_client_request(keeper_client *kc, const sky_buf *record, char *err, size_t errlen);
/* Asks the keeper to undo everything and exit ("stop"), and waits until
 * deadline for its "stopped" (warnings meanwhile are logged). 0 when it
 * said so, -1 otherwise (gone, or not in time). */
int keeper_client_stop(keeper_client *kc, double deadline);
/* Takes n descriptors that came with the last answer (waiting briefly for
 * them); 0, or -1 when they did not come. */
int keeper_client_take_fds(keeper_client *kc, int *fds, int n);
/* Waits until deadline for the keeper to report the exit of process id:
 * its status (how filled), or -2 when it did not. */
int keeper_client_wait_exit(keeper_client *kc, long id, double deadline, char *how, size_t howlen);

double keeper_now(void);

#endif
