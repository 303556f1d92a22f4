/*
 * fs: small file-system helpers shared by the host and the worker (libc
 * only: part of util's core).
 */
#ifndef SKY_UTIL_FS_H
#define SKY_UTIL_FS_H

/* Removes path and everything below it, never crossing into another mount
 * nor following links (a volume mounted inside is left alone). Best effort:
 * returns 0 when path is gone afterwards, -1 otherwise. */
int sky_remove_tree(const char *path);

#endif
