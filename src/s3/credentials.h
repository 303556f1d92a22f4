/*
 * credentials: where an S3 client's endpoint, region and keys come from.
 *
 * One function, s3_settings_resolve(), answers "which endpoint, which region,
 * which keys" the same way for the Lua bindings, the CLI and C callers, so a
 * script and `skyrun s3` never disagree. Resolution order (first that sets a
 * field wins, per field; keys come from one source as a pair):
 *   explicit fields → AWS_* environment → ~/.aws/credentials and ~/.aws/config
 *   → skyrun.yaml `storage:` profile → preset defaults.
 * docs/CONFIGURATION.md is the user-facing description.
 */
#ifndef SKY_S3_CREDENTIALS_H
#define SKY_S3_CREDENTIALS_H

#include <stddef.h>

/* The region when no source names one (AWS's own default). */
#define S3_DEFAULT_REGION "us-east-1"

typedef struct s3_settings {
    char *endpoint;        /* "http://127.0.0.1:4568", "https://s3.us-east-1.amazonaws.com" */
    char *region;          /* "us-east-1" */
    char *access_key, *secret_key, *session_token;   /* session_token may be NULL */
    char *ca_bundle;       /* NULL: system default */
    int path_style;        /* 1 path-style, 0 virtual-hosted */
    int verify_tls;        /* 1 unless explicitly disabled */
    char *profile;         /* profile name used, or NULL */
    char credential_source[64]; /* "explicit", "environment", "aws-credentials-file:lab", "skyrun.yaml:lab" */
    char *account_id;      /* Cloudflare R2 account id (the "r2" preset's endpoint needs it), or NULL */
    char *config_file;     /* in `given`: the skyrun.yaml to read (--config), NULL to search;
                            * in `out`: the skyrun.yaml that was read, or NULL */
    /* In `given` only: 1 when path_style / verify_tls were stated by the user.
     * A zeroed `given` therefore means "nothing stated" and can never turn
     * TLS verification off by accident. */
    int path_style_set, verify_tls_set;
} s3_settings;

/* Fills out from: explicit (fields set in `given`, may be NULL) → AWS_* environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION/AWS_DEFAULT_REGION,
 * AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE, AWS_CA_BUNDLE, AWS_SHARED_CREDENTIALS_FILE,
 * AWS_CONFIG_FILE) → ~/.aws/credentials and ~/.aws/config ([profile x] sections; region,
 * endpoint_url, s3 = addressing_style) → skyrun.yaml `storage:` profile (docs/CONFIGURATION.md).
 * preset (NULL, or a name of presets.h) gives endpoint/region/addressing defaults. Registers
 * secret_key and session_token with sky_secret_register().
 * Returns 0, or -1 with a clear message in err (e.g. "no credentials found for storage: set
 * access_key/secret_key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile in
 * ~/.aws/credentials"; "profile 'lab' not found in ~/.aws/credentials, ~/.aws/config or skyrun.yaml").
 *
 * The skyrun.yaml searched is given->config_file when set, else $SKYRUN_CONFIG, else
 * ./skyrun.yaml, else $HOME/.config/skyrun/config.yaml. `out` is always initialised
 * (safe to s3_settings_free() even on failure). `given` may be NULL; `out` must not
 * alias `given`. */
int s3_settings_resolve(const s3_settings *given, const char *preset, const char *profile,
                        s3_settings *out, char *err, size_t errlen);
void s3_settings_free(s3_settings *s);   /* wipes secrets (explicit_bzero) before freeing */
/* A deep copy of src into dst (dst's old contents are not freed); free it
 * with s3_settings_free. */
void s3_settings_copy(s3_settings *dst, const s3_settings *src);

#endif
