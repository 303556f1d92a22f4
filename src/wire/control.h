/*
 * control: the records of the channel between the host and a node's keeper
 * (skyrun-worker --keeper, see src/worker/keeper.c).
 *
 * A record is a list of fields, each a netstring ("5:spawn,"), ended by a
 * newline: `5:spawn,4:/tmp,...\n`. Fields are bytes (a NUL inside is kept;
 * users of a field as a C string refuse it). The decoder is total, like the
 * frame decoder: every malformed input is an error, never a crash (fuzzed).
 *
 * host -> keeper:  spawn CWD ARGC ARG... ENVC ENV...   start a process
 *                  kill ID                             SIGKILL one it started, or one a remote
 *                                                      provider started that wrote NODE_DIR/pids/ID
 *                                                      (with its process group)
 *                  track KIND PATH / untrack KIND PATH what to undo if the host goes
 *                  mkdirs PATH                         make a folder and its parents (tracked)
 *                  write PATH DATA                     a 0600 file (tracked)
 *                  bind SRC DST RO                     bind-mount SRC at DST (tracked)
 *                  umount PATH / remove PATH           undo one tracked mount / file now
 *                  probe                               who runs there, can it use FUSE
 *                  stop                                undo everything now and exit
 * keeper -> host:  ready OWN_MOUNTS PRIVILEGED WHY     after start-up (WHY: no own mounts)
 *                  ok ID (+ its stdin, stdout, stderr as SCM_RIGHTS)
 *                  err MESSAGE
 *                  exit ID STATUS HOW                  a process it started ended
 *                  warn MESSAGE                        a step of the cleanup failed
 *                  stopped                             cleanup done, exiting
 */
#ifndef SKY_WIRE_CONTROL_H
#define SKY_WIRE_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"
#include "wire/wire.h"

#define CONTROL_MAX_FIELDS 512
#define CONTROL_MAX_FIELD (1u << 20)

typedef struct control_record {
    size_t n;
    const char *field[CONTROL_MAX_FIELDS];   /* point into the input */
    size_t len[CONTROL_MAX_FIELDS];
} control_record;

void control_field(sky_buf *out, const char *s, size_t len);
void control_field_str(sky_buf *out, const char *s);
void control_field_int(sky_buf *out, long long v);
void control_end(sky_buf *out);

/* Parses the record at the front of p[0..len). WIRE_OK: *r filled, *used
 * bytes taken; WIRE_AGAIN: incomplete; WIRE_EBAD: malformed (err says why). */
int control_next(const uint8_t *p, size_t len, control_record *r, size_t *used, wire_err *err);

/* Field i equals the C string s. */
int control_is(const control_record *r, size_t i, const char *s);
/* Field i as a new NUL-terminated string (NULL if it holds a NUL byte or i is out of range). */
char *control_dup(const control_record *r, size_t i);
/* Field i as an integer; -1 and *ok = 0 when it is not one. */
long long control_int(const control_record *r, size_t i, int *ok);

#endif
