/*
 * tar: a minimal POSIX ustar writer, to ship a set of files to a node over
 * any byte stream (the node unpacks it with its own `tar -x`): folders,
 * regular files and their mode and modification time; nothing else.
 */
#ifndef SKY_COMPUTE_TAR_H
#define SKY_COMPUTE_TAR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "util/buf.h"

/* name: a relative path of at most 255 bytes ("a/b.lua"; folders without
 * the trailing slash). Returns 0, or -1 when the name cannot be stored. */
int tar_add_dir(sky_buf *out, const char *name, mode_t mode, int64_t mtime);
int tar_add_file(sky_buf *out, const char *name, mode_t mode, int64_t mtime,
                 const void *data, size_t len);
/* The two zero blocks that end an archive. */
void tar_finish(sky_buf *out);

#endif
