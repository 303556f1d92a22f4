/*
 * s3_command: `skyrun s3 ls|cp|sync|mv|rm|mb|rb|presign` — the storage client from
 * the shell, with s3://bucket/key URLs. Settings come from the same
 * s3_settings_resolve() as scripts (flags → AWS_* environment → ~/.aws →
 * skyrun.yaml profile), and a copy lands where st:upload / st:download put
 * it (s3/target.h, aws-cli's rules). This file only parses arguments and
 * prints. Exit status: 0 done, 1 the operation failed (the message on
 * stderr), 2 usage error, 128+N after signal N.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/s3_command.h"
#include "s3/client.h"
#include "s3/credentials.h"
#include "s3/multipart.h"
#include "s3/presets.h"
#include "s3/s3_url.h"
#include "s3/target.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"

#define EXIT_USAGE 2

static void print_usage(FILE *out)
{
    char presets[128];
    s3_preset_names("|", presets, sizeof presets);
    fprintf(out,
            "usage: skyrun s3 COMMAND [options]\n"
            "  ls [-r] s3://BUCKET[/PREFIX]        list keys (-r: every key below, not one level)\n"
            "  cp [-r] SRC DST                     copy file -> s3://, s3:// -> file, s3:// -> s3://\n"
            "                                      (-r: a folder or a whole prefix; a DST ending in /\n"
            "                                      or an existing folder keeps the source's name)\n"
            "  sync SRC DST [--delete] [--dryrun] [--exclude GLOB] [--include GLOB] [--checksum]\n"
            "                                      make DST like SRC (folder -> s3://, s3:// -> folder,\n"
            "                                      s3:// -> s3://): copy what is missing, of another size\n"
            "                                      or newer (--checksum: different content); --delete\n"
            "                                      removes what SRC lacks; filters apply in order, the\n"
            "                                      last match wins, '*' matches '/' too\n"
            "  mv [-r] SRC DST                     cp, then delete each source once its copy is done\n"
            "                                      (-r: a folder or prefix; --exclude/--include/--dryrun)\n"
            "  rm [-r] s3://BUCKET/KEY             delete a key (-r: every key under the prefix)\n"
            "  mb s3://BUCKET                      create a bucket\n"
            "  rb s3://BUCKET                      delete an (empty) bucket\n"
            "  presign s3://BUCKET/KEY [--expires SECONDS] [--method GET|PUT]\n"
            "options:\n"
            "  --endpoint URL   --region NAME   --preset %s\n"
            "  --part-size MIB  --parallel N    --retries N (extra attempts, default %d)   --help\n"
            "Settings not given come from AWS_* variables, ~/.aws and skyrun.yaml (--profile).\n",
            presets, S3_DEFAULT_RETRIES);
}

typedef struct s3_cli {
    const char *command;
    const char *args[2];
    int nargs;
    int recursive;
    int delete_extra, dryrun, checksum;   /* sync, mv */
    s3_sync_filter *filters;              /* --exclude / --include in order (freed by the caller) */
    size_t nfilters;
    const char *endpoint, *region, *preset, *method;
    long expires;
    long part_size_mib;
    long parallel;
    long retries;          /* -1: not given */
} s3_cli;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "skyrun s3: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(skyrun s3 --help for usage)\n");
    return EXIT_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* The options that take a value: strings, or whole numbers in [lo, hi]. */
enum flag_id { F_ENDPOINT, F_REGION, F_PRESET, F_METHOD, F_EXPIRES, F_PART_SIZE, F_PARALLEL, F_RETRIES,
               F_EXCLUDE, F_INCLUDE };

static const struct value_flag {
    const char *name;
    enum flag_id id;
    int numeric;
    long lo, hi;
} VALUE_FLAGS[] = {
    { "--endpoint", F_ENDPOINT, 0, 0, 0 },
    { "--region", F_REGION, 0, 0, 0 },
    { "--preset", F_PRESET, 0, 0, 0 },
    { "--method", F_METHOD, 0, 0, 0 },
    { "--expires", F_EXPIRES, 1, 1, S3_PRESIGN_MAX_EXPIRES },
    { "--part-size", F_PART_SIZE, 1, 1, (long)(S3_MAX_PART_SIZE >> 20) },
    { "--parallel", F_PARALLEL, 1, 1, S3_MAX_PARALLEL },
    { "--retries", F_RETRIES, 1, 0, S3_MAX_RETRIES },
    { "--exclude", F_EXCLUDE, 0, 0, 0 },
    { "--include", F_INCLUDE, 0, 0, 0 },
};

static const struct value_flag *find_value_flag(const char *arg)
{
    for (size_t i = 0; i < sizeof VALUE_FLAGS / sizeof VALUE_FLAGS[0]; i++)
        if (strcmp(arg, VALUE_FLAGS[i].name) == 0)
            return &VALUE_FLAGS[i];
    return NULL;
}

static void set_flag(s3_cli *cli, enum flag_id id, const char *text, long number)
{
    switch (id) {
    case F_ENDPOINT: cli->endpoint = text; break;
    case F_REGION: cli->region = text; break;
    case F_PRESET: cli->preset = text; break;
    case F_METHOD: cli->method = text; break;
    case F_EXPIRES: cli->expires = number; break;
    case F_PART_SIZE: cli->part_size_mib = number; break;
    case F_PARALLEL: cli->parallel = number; break;
    case F_RETRIES: cli->retries = number; break;
    case F_EXCLUDE:
    case F_INCLUDE:
        cli->filters = sky_xrealloc(cli->filters, (cli->nfilters + 1) * sizeof *cli->filters);
        cli->filters[cli->nfilters++] = (s3_sync_filter){ id == F_INCLUDE, text };
        break;
    }
}

/* Returns 0, 1 for --help (usage printed), or EXIT_USAGE. */
static int parse_args(int argc, char **argv, s3_cli *cli)
{
    memset(cli, 0, sizeof *cli);
    cli->expires = 3600;
    cli->retries = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct value_flag *f = find_value_flag(a);
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout);
            return 1;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--recursive") == 0) {
            cli->recursive = 1;
        } else if (strcmp(a, "--delete") == 0) {
            cli->delete_extra = 1;
        } else if (strcmp(a, "--dryrun") == 0 || strcmp(a, "--dry-run") == 0) {
            cli->dryrun = 1;
        } else if (strcmp(a, "--checksum") == 0) {
            cli->checksum = 1;
        } else if (f) {
            long v = 0;
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            if (f->numeric && parse_long(argv[i + 1], f->lo, f->hi, &v) != 0)
                return usage_error("%s needs a whole number from %ld to %ld", a, f->lo, f->hi);
            set_flag(cli, f->id, argv[++i], v);
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (!cli->command) {
            cli->command = a;
        } else if (cli->nargs < 2) {
            cli->args[cli->nargs++] = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (!cli->command) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    return 0;
}

static s3_client *open_client(const s3_cli *cli, int progress, const char *config_path,
                              const char *profile)
{
    s3_settings given, resolved;
    char why[512];
    s3_error err;
    memset(&given, 0, sizeof given);
    given.endpoint = (char *)cli->endpoint;
    given.region = (char *)cli->region;
    given.config_file = (char *)config_path;
    if (s3_settings_resolve(&given, cli->preset, profile, &resolved, why, sizeof why) != 0) {
        s3_settings_free(&resolved);
        fprintf(stderr, "skyrun s3: %s\n", sky_redact(why));
        return NULL;
    }
    s3_client_options opts = S3_CLIENT_OPTIONS_INIT;
    opts.part_size = (size_t)cli->part_size_mib << 20;
    opts.parallel = (int)cli->parallel;
    opts.retries = (int)cli->retries;
    opts.progress = progress;
    s3_client *c = s3_client_new(&resolved, &opts, &err);
    s3_settings_free(&resolved);
    if (!c)
        fprintf(stderr, "%s\n", err.text);
    return c;
}

/* 1, or 128+N when signal N interrupted the operation (it cleaned up first). */
static int fail(const s3_error *err)
{
    fprintf(stderr, "%s\n", err->text);
    int sig = sky_interrupt_pending();
    return sig ? 128 + sig : 1;
}

/* ---- ls ---- */

static int print_entry(void *ud, const s3_object_info *o)
{
    if (o->is_prefix) {
        printf("%19s %12s  %s\n", "", "PRE", o->key);
        return 0;
    }
    char when[32] = "";
    time_t t = (time_t)o->mtime;
    struct tm tm;
    if (o->mtime && gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%19s %12llu  %s\n", when, (unsigned long long)o->size, o->key);
    return 0;
}

static int run_ls(s3_client *c, const s3_cli *cli)
{
    char *bucket, *key, why[256];
    s3_error err;
    if (cli->nargs != 1)
        return usage_error("%s needs one s3://BUCKET[/PREFIX]", "ls");
    if (s3_url_parse(cli->args[0], &bucket, &key, why, sizeof why) != 0)
        return usage_error("%s", why);
    int rc = s3_list(c, bucket, key, cli->recursive, print_entry, NULL, &err) == 0 ? 0 : fail(&err);
    free(bucket);
    free(key);
    return rc;
}

/* ---- cp: where things land is target.h's rule, shared with sky.storage ---- */

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cp_upload(s3_client *c, const s3_cli *cli, const char *src, const char *bucket, const char *key)
{
    s3_error err;
    sky_buf where = SKY_BUF_INIT;
    size_t count = 0;
    int folder = is_dir(src);
    if (folder && !cli->recursive)
        return usage_error("%s is a folder: use cp -r", src);
    int rc = s3_upload_path(c, bucket, key, src, NULL, &count, &where, &err);
    if (rc == 0 && folder)
        printf("upload: %zu files from %s to s3://%s/%s\n", count, src, bucket, sky_buf_cstr(&where));
    else if (rc == 0)
        printf("upload: %s to s3://%s/%s\n", src, bucket, sky_buf_cstr(&where));
    sky_buf_free(&where);
    return rc == 0 ? 0 : fail(&err);
}

static int cp_download(s3_client *c, const s3_cli *cli, const char *bucket, const char *key, const char *dst)
{
    s3_error err;
    sky_buf prefix = SKY_BUF_INIT, where = SKY_BUF_INIT;
    size_t count = 0;
    if (cli->recursive) {
        s3_target_prefix(key, &prefix);   /* -r s3://b/dir means the prefix dir/ */
        key = sky_buf_cstr(&prefix);
    }
    int rc = s3_download_path(c, bucket, key, dst, &count, &where, &err);
    if (rc == 0 && s3_key_is_prefix(key))
        printf("download: %zu files from s3://%s/%s to %s\n", count, bucket, key, dst);
    else if (rc == 0)
        printf("download: s3://%s/%s to %s\n", bucket, key, sky_buf_cstr(&where));
    sky_buf_free(&prefix);
    sky_buf_free(&where);
    return rc == 0 ? 0 : fail(&err);
}

static int cp_remote(s3_client *c, const s3_cli *cli, const char *sb, const char *sk,
                     const char *db, const char *dk)
{
    s3_error err;
    sky_buf from = SKY_BUF_INIT, to = SKY_BUF_INIT;
    size_t count = 0;
    int rc;
    if (cli->recursive) {
        s3_target_prefix(sk, &from);
        s3_target_prefix(dk, &to);
        rc = s3_copy_prefix(c, sb, sky_buf_cstr(&from), db, sky_buf_cstr(&to), &count, &err);
        if (rc == 0)
            printf("copy: %zu objects from s3://%s/%s to s3://%s/%s\n", count, sb, sky_buf_cstr(&from),
                   db, sky_buf_cstr(&to));
    } else {
        s3_target_key(sk, dk, &to);
        rc = s3_copy_object(c, sb, sk, db, sky_buf_cstr(&to), &err);
        if (rc == 0)
            printf("copy: s3://%s/%s to s3://%s/%s\n", sb, sk, db, sky_buf_cstr(&to));
    }
    sky_buf_free(&from);
    sky_buf_free(&to);
    return rc == 0 ? 0 : fail(&err);
}

static int run_cp(s3_client *c, const s3_cli *cli)
{
    char *sb = NULL, *sk = NULL, *db = NULL, *dk = NULL, why[256];
    int rc = EXIT_USAGE;
    if (cli->nargs != 2)
        return usage_error("%s needs SRC and DST", "cp");
    const char *src = cli->args[0], *dst = cli->args[1];
    int src_s3 = s3_url_is_s3(src), dst_s3 = s3_url_is_s3(dst);
    if (!src_s3 && !dst_s3)
        return usage_error("%s: one of SRC and DST must be an s3:// URL", "cp");
    if ((src_s3 && s3_url_parse(src, &sb, &sk, why, sizeof why) != 0) ||
        (dst_s3 && s3_url_parse(dst, &db, &dk, why, sizeof why) != 0)) {
        rc = usage_error("%s", why);
        goto done;
    }
    if (src_s3 && !cli->recursive && !*sk) {
        rc = usage_error("%s names no key (use cp -r for a whole bucket)", src);
        goto done;
    }
    if (!src_s3)
        rc = cp_upload(c, cli, src, db, dk);
    else if (!dst_s3)
        rc = cp_download(c, cli, sb, sk, dst);
    else
        rc = cp_remote(c, cli, sb, sk, db, dk);
done:
    free(sb);
    free(sk);
    free(db);
    free(dk);
    return rc;
}

/* ---- sync and mv: s3_sync does the work (s3/sync.h has the rules) ---- */

typedef struct print_state {
    int dryrun;
} print_state;

/* One line per action, as aws-cli prints them: "upload: dir/a to s3://b/a". */
static void print_action(void *ud, const char *op, const char *from, const char *to)
{
    const print_state *ps = ud;
    printf("%s%s: %s%s%s\n", ps->dryrun ? "(dryrun) " : "", op, from, to ? " to " : "", to ? to : "");
    fflush(stdout);
}

static int run_sync(s3_client *c, const s3_cli *cli, int move)
{
    const char *what = move ? "mv" : "sync";
    if (cli->nargs != 2)
        return usage_error("%s needs SRC and DST", what);
    if (!s3_url_is_s3(cli->args[0]) && !s3_url_is_s3(cli->args[1]))
        return usage_error("%s: one of SRC and DST must be an s3:// URL", what);
    if (move && cli->delete_extra)
        return usage_error("mv takes no --delete");
    for (int i = 0; i < 2; i++) {
        char *bucket, *key, why[256];
        if (!s3_url_is_s3(cli->args[i]))
            continue;
        if (s3_url_parse(cli->args[i], &bucket, &key, why, sizeof why) != 0)
            return usage_error("%s", why);
        free(bucket);
        free(key);
    }
    print_state ps = { cli->dryrun };
    s3_sync_request req = { cli->args[0], cli->args[1], cli->filters, cli->nfilters, cli->delete_extra,
                            cli->dryrun, cli->checksum, move, print_action, &ps };
    s3_error err;
    return s3_sync(c, &req, NULL, &err) == 0 ? 0 : fail(&err);
}

/* mv of one file or object: cp's rules for where it lands, then the source
 * is deleted — only once the copy is complete. */
static int run_mv_one(s3_client *c, const s3_cli *cli)
{
    char *sb = NULL, *sk = NULL, *db = NULL, *dk = NULL, why[256];
    sky_buf to = SKY_BUF_INIT, from = SKY_BUF_INIT;
    s3_error err;
    int rc = EXIT_USAGE;
    if (cli->nargs != 2)
        return usage_error("%s needs SRC and DST", "mv");
    const char *src = cli->args[0], *dst = cli->args[1];
    int src_s3 = s3_url_is_s3(src), dst_s3 = s3_url_is_s3(dst);
    if (!src_s3 && !dst_s3)
        return usage_error("%s: one of SRC and DST must be an s3:// URL", "mv");
    if ((src_s3 && s3_url_parse(src, &sb, &sk, why, sizeof why) != 0) ||
        (dst_s3 && s3_url_parse(dst, &db, &dk, why, sizeof why) != 0)) {
        rc = usage_error("%s", why);
        goto done;
    }
    if ((src_s3 && s3_key_is_prefix(sk)) || (!src_s3 && is_dir(src))) {
        rc = usage_error("%s is a folder or prefix: use mv -r", src);
        goto done;
    }
    if (!src_s3) {
        s3_target_key(src, dk, &to);
        sky_buf_printf(&from, "%s", src);
    } else {
        sky_buf_printf(&from, "s3://%s/%s", sb, sk);
        if (dst_s3)
            s3_target_key(sk, dk, &to);
        else
            s3_target_file(sk, dst, &to);
    }
    const char *target = sky_buf_cstr(&to);
    if (src_s3 && dst_s3 && strcmp(sb, db) == 0 && strcmp(sk, target) == 0) {
        rc = usage_error("mv: %s is its own destination", src);
        goto done;
    }
    int failed = 0;
    if (!cli->dryrun) {
        if (!src_s3)
            failed = s3_upload_file(c, db, target, src, NULL, &err) != 0;
        else if (!dst_s3)
            failed = s3_download_path(c, sb, sk, dst, NULL, NULL, &err) != 0;
        else
            failed = s3_copy_object(c, sb, sk, db, target, &err) != 0;
        if (!failed && src_s3) {
            failed = s3_delete_object(c, sb, sk, &err) != 0;
        } else if (!failed && unlink(src) != 0) {
            fprintf(stderr, "s3 mv: %s was copied to s3://%s/%s, but cannot be deleted: %s\n", src, db,
                    target, strerror(errno));
            rc = 1;
            goto done;
        }
    }
    if (failed) {
        rc = fail(&err);
        goto done;
    }
    if (dst_s3)
        printf("%smove: %s to s3://%s/%s\n", cli->dryrun ? "(dryrun) " : "", sky_buf_cstr(&from), db, target);
    else
        printf("%smove: %s to %s\n", cli->dryrun ? "(dryrun) " : "", sky_buf_cstr(&from), target);
    rc = 0;
done:
    sky_buf_free(&to);
    sky_buf_free(&from);
    free(sb);
    free(sk);
    free(db);
    free(dk);
    return rc;
}

/* ---- rm, mb, rb, presign ---- */

static int with_url(const s3_cli *cli, const char *what, int need_key, char **bucket, char **key)
{
    char why[256];
    if (cli->nargs != 1)
        return usage_error("%s needs one s3:// URL", what);
    if (s3_url_parse(cli->args[0], bucket, key, why, sizeof why) != 0)
        return usage_error("%s", why);
    if (need_key && !**key && !cli->recursive) {
        free(*bucket);
        free(*key);
        return usage_error("%s needs s3://BUCKET/KEY", what);
    }
    return 0;
}

static int run_rm(s3_client *c, const s3_cli *cli)
{
    char *bucket, *key;
    s3_error err;
    int rc = with_url(cli, "rm", 1, &bucket, &key);
    if (rc)
        return rc;
    if (cli->recursive) {
        size_t deleted = 0;
        rc = s3_delete_prefix(c, bucket, key, &deleted, &err);
        if (rc == 0)
            printf("delete: %zu objects under s3://%s/%s\n", deleted, bucket, key);
    } else {
        rc = s3_delete_object(c, bucket, key, &err);
        if (rc == 0)
            printf("delete: s3://%s/%s\n", bucket, key);
    }
    free(bucket);
    free(key);
    return rc == 0 ? 0 : fail(&err);
}

static int run_bucket(s3_client *c, const s3_cli *cli, int create)
{
    char *bucket, *key;
    s3_error err;
    int rc = with_url(cli, create ? "mb" : "rb", 0, &bucket, &key);
    if (rc)
        return rc;
    if (*key) {
        rc = usage_error("%s takes s3://BUCKET without a key", create ? "mb" : "rb");
    } else {
        rc = create ? s3_create_bucket(c, bucket, &err) : s3_delete_bucket(c, bucket, &err);
        rc = rc == 0 ? 0 : fail(&err);
        if (rc == 0)
            printf("%s: s3://%s\n", create ? "make_bucket" : "remove_bucket", bucket);
    }
    free(bucket);
    free(key);
    return rc;
}

static int run_presign(s3_client *c, const s3_cli *cli)
{
    char *bucket, *key;
    s3_error err;
    sky_buf url = SKY_BUF_INIT;
    int rc = with_url(cli, "presign", 1, &bucket, &key);
    if (rc)
        return rc;
    rc = s3_presign(c, bucket, key, cli->method ? cli->method : "GET", (unsigned)cli->expires, &url, &err);
    if (rc == 0)
        printf("%s\n", sky_buf_cstr(&url));
    sky_buf_free(&url);
    free(bucket);
    free(key);
    return rc == 0 ? 0 : fail(&err);
}

int sky_cli_s3(int argc, char **argv, int progress, const char *config_path, const char *profile)
{
    s3_cli cli;
    int rc = parse_args(argc, argv, &cli);
    if (rc) {
        free(cli.filters);
        return rc == 1 ? 0 : rc;
    }
    static const char *const commands[] = { "ls", "cp", "sync", "mv", "rm", "mb", "rb", "presign", NULL };
    int known = 0;
    for (int i = 0; commands[i]; i++)
        known |= strcmp(cli.command, commands[i]) == 0;
    int syncing = strcmp(cli.command, "sync") == 0 || strcmp(cli.command, "mv") == 0;
    if (!known)
        rc = usage_error("unknown command '%s' (ls, cp, sync, mv, rm, mb, rb, presign)", cli.command);
    else if (!syncing && (cli.nfilters || cli.delete_extra || cli.dryrun || cli.checksum))
        rc = usage_error("--exclude, --include, --delete, --dryrun and --checksum are for sync and mv");
    else if (strcmp(cli.command, "mv") == 0 && !cli.recursive && (cli.nfilters || cli.checksum))
        rc = usage_error("mv takes --exclude/--include only with -r");
    else if (strcmp(cli.command, "sync") == 0 && cli.recursive)
        rc = usage_error("sync is always recursive: it takes no -r");
    if (rc) {
        free(cli.filters);
        return rc;
    }
    /* Ctrl-C stops a transfer cleanly (multipart aborted, temp file removed). */
    sky_interrupt_install();
    s3_client *c = open_client(&cli, progress, config_path, profile);
    if (!c) {
        free(cli.filters);
        return 1;
    }
    if (strcmp(cli.command, "ls") == 0)
        rc = run_ls(c, &cli);
    else if (strcmp(cli.command, "cp") == 0)
        rc = run_cp(c, &cli);
    else if (strcmp(cli.command, "sync") == 0)
        rc = run_sync(c, &cli, 0);
    else if (strcmp(cli.command, "mv") == 0)
        rc = cli.recursive ? run_sync(c, &cli, 1) : run_mv_one(c, &cli);
    else if (strcmp(cli.command, "rm") == 0)
        rc = run_rm(c, &cli);
    else if (strcmp(cli.command, "mb") == 0)
        rc = run_bucket(c, &cli, 1);
    else if (strcmp(cli.command, "rb") == 0)
        rc = run_bucket(c, &cli, 0);
    else
        rc = run_presign(c, &cli);
    s3_client_free(c);
    free(cli.filters);
    return rc;
}
