/*
 * embed_host: the smallest C program embedding libskyrun, for tests that must
 * hold for every kind of host (skyrun, lua5.4 + require "sky", an embedder).
 * It leaves every signal disposition at its default — SIGPIPE included — as
 * a plain C program would, and runs the Lua file argv[1] with the rest as
 * its arguments. Exit status: sky_host_run_file's.
 */
#include <skyrun.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: embed_host script.lua [args...]\n");
        return 2;
    }
    sky_host *h = sky_host_new(NULL);
    if (!h) {
        fprintf(stderr, "embed_host: cannot create a host\n");
        return 1;
    }
    int rc = sky_host_run_file(h, argv[1], argc - 2, argv + 2);
    if (rc != 0)
        fprintf(stderr, "embed_host: %s\n", sky_host_error(h));
    sky_host_free(h);
    return rc;
}
