/*
 * skyrun: the command line.
 *
 *   skyrun [options] script.lua [args…]   run a pipeline (args in `arg` and `...`)
 *   skyrun [options] -e 'lua code'        run a chunk
 *   skyrun [options] s3 …                 storage from the shell (s3_command.c)
 *   skyrun slurm gc [--dry-run]           cancel Slurm jobs of pools whose client is gone
 *
 * Exit status: 0 success, 1 script error (message with file:line on stderr),
 * 2 usage error, 128+N when stopped by signal N (pools torn down first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/s3_command.h"
#include "compute/provider.h"
#include "skyrun.h"
#include "skyrun_config.h"

static const char usage_text[] =
    "usage: skyrun [options] script.lua [args...]\n"
    "       skyrun [options] -e 'lua code'\n"
    "       skyrun [options] s3 ls|cp|sync|mv|rm|mb|rb|presign ...   (skyrun s3 --help)\n"
    "       skyrun slurm gc [--dry-run]   cancel this user's pool jobs whose client is gone\n"
    "\n"
    "options:\n"
    "  -e CODE          run CODE (Lua source) instead of a script\n"
    "  -q, --quiet      only errors on stderr\n"
    "  -v, --verbose    debug diagnostics on stderr\n"
    "  --no-progress    never draw progress bars\n"
    "  --config FILE    read configuration from FILE instead of ./skyrun.yaml\n"
    "  --profile NAME   default storage profile\n"
    "  --version        print the version and exit\n"
    "  -h, --help       print this help and exit\n"
    "\n"
    "A script that raises exits with status 1; a usage error with 2.\n";

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "skyrun: %s%s%s%s\nTry 'skyrun --help'.\n", what,
            arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return 2;
}

int main(int argc, char **argv)
{
    sky_host_options opts = { .progress = -1, .handle_signals = 1 };
    const char *code = NULL;
    int i = 1;

    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0)
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("skyrun %s (%s)\n", SKYRUN_VERSION, LUA_RELEASE);
            return 0;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            opts.quiet = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            opts.verbose = 1;
        } else if (strcmp(a, "--no-progress") == 0) {
            opts.progress = 0;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--profile") == 0 || strcmp(a, "-e") == 0) {
            if (i + 1 >= argc)
                return usage_error("missing value for option", a);
            const char *v = argv[++i];
            if (a[1] == 'e')
                code = v;
            else if (a[2] == 'c')
                opts.config = v;
            else
                opts.profile = v;
        } else {
            return usage_error("unknown option", a);
        }
    }

    if (!code && i < argc && strcmp(argv[i], "s3") == 0)
        return sky_cli_s3(argc - i, argv + i, opts.progress, opts.config, opts.profile);
    if (!code && i < argc && strcmp(argv[i], "slurm") == 0) {
        int dry = i + 2 < argc && strcmp(argv[i + 2], "--dry-run") == 0;
        if (i + 1 >= argc || strcmp(argv[i + 1], "gc") != 0 || i + 2 + dry < argc)
            return usage_error("usage: skyrun slurm gc [--dry-run]", NULL);
        char gerr[800];
        if (sky_slurm_gc(dry, gerr, sizeof gerr) != 0) {
            fprintf(stderr, "%s\n", gerr);
            return 1;
        }
        return 0;
    }
    if (!code && i >= argc)
        return usage_error("no script given", NULL);

    char err[600];
    sky_host *h = sky_host_create(&opts, err, sizeof err);
    if (!h) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc;
    if (code)
        rc = sky_host_run_string(h, code, "=(command line)");
    else if (strcmp(argv[i], "-") == 0)
        rc = sky_host_run_file(h, NULL, argc - i - 1, argv + i + 1);
    else
        rc = sky_host_run_file(h, argv[i], argc - i - 1, argv + i + 1);
    if (rc != 0)
        fprintf(stderr, "skyrun: %s\n", sky_host_error(h));
    sky_host_free(h);
    return rc;
}
