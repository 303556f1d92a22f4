/*
 * credentials: resolves an S3 client's endpoint, region, addressing style
 * and keys from, in order, the caller's explicit values, the AWS_*
 * environment, the AWS shared files (~/.aws/credentials, ~/.aws/config),
 * the skyrun.yaml `storage:` profile, and a provider preset.
 *
 * Each source is read into a `layer` of borrowed strings; the first layer
 * that sets a field wins it, except keys, which are taken as a pair from one
 * layer so an access key is never combined with another source's secret.
 * Every secret read is registered for log redaction at once, and every
 * buffer that held one is wiped before it is freed.
 */
#include "s3/credentials.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3/aws_ini.h"
#include "s3/presets.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/log.h"

#define UNSET (-1)

/* One source's values; strings are borrowed from the source's storage. */
typedef struct layer {
    const char *endpoint, *region, *ca_bundle, *account_id, *preset;
    const char *access_key, *secret_key, *session_token;
    int path_style, verify_tls;
    char source[64];          /* credential_source when the keys come from here */
    const char *key_error;    /* set when the source has half a key pair */
} layer;

/* Everything resolve() reads, owned here and freed in one place. */
typedef struct sources {
    aws_ini creds, config;
    sky_config *yaml;
    char yaml_path[4096];
} sources;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    sky_redact(err);
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

static const char *env(const char *name)
{
    return nonempty(getenv(name));
}

/* Every string of s3_settings, so that copying and freeing cannot miss one
 * when a field is added. All are wiped when freed: some are secrets. */
#define SETTINGS_STRINGS(X)                                                        \
    X(endpoint) X(region) X(access_key) X(secret_key) X(session_token) X(ca_bundle) \
    X(profile) X(account_id) X(config_file)

void s3_settings_free(s3_settings *s)
{
    if (!s)
        return;
#define FREE_FIELD(f) free_secret(s->f);
    SETTINGS_STRINGS(FREE_FIELD)
#undef FREE_FIELD
    explicit_bzero(s, sizeof *s);
}

void s3_settings_copy(s3_settings *dst, const s3_settings *src)
{
    *dst = *src;
#define COPY_FIELD(f) dst->f = sky_xstrdup(src->f);
    SETTINGS_STRINGS(COPY_FIELD)
#undef COPY_FIELD
}

/* ---- AWS shared files (parsed by aws_ini.c) ---------------------------- */

/* In ~/.aws/config a profile is "[profile NAME]", except "[default]". */
static void config_section_name(const char *profile, char *out, size_t outlen)
{
    if (strcmp(profile, "default") == 0)
        snprintf(out, outlen, "default");
    else
        snprintf(out, outlen, "profile %s", profile);
}

static int aws_profile_exists(const sources *src, const char *profile)
{
    char section[300];
    config_section_name(profile, section, sizeof section);
    return aws_ini_has_section(&src->creds, profile) || aws_ini_has_section(&src->config, section);
}

/* Keys of `profile` from the credentials file, else from the config file. */
static void aws_profile_keys(const sources *src, const char *profile, layer *l)
{
    char section[300];
    const aws_ini *files[2] = { &src->creds, &src->config };
    const char *kind[2] = { "aws-credentials-file", "aws-config-file" };

    config_section_name(profile, section, sizeof section);
    for (int i = 0; i < 2; i++) {
        const char *sec = i == 0 ? profile : section;
        const char *ak = aws_ini_get(files[i], sec, "", "aws_access_key_id");
        const char *sk = aws_ini_get(files[i], sec, "", "aws_secret_access_key");
        if (!ak && !sk)
            continue;
        if (!ak || !sk) {
            l->key_error = ak ? "aws_secret_access_key" : "aws_access_key_id";
            snprintf(l->source, sizeof l->source, "%s:%s", kind[i], profile);
            return;
        }
        l->access_key = ak;
        l->secret_key = sk;
        l->session_token = aws_ini_get(files[i], sec, "", "aws_session_token");
        snprintf(l->source, sizeof l->source, "%s:%s", kind[i], profile);
        return;
    }
}

static int parse_addressing_style(const char *s)
{
    if (!s)
        return UNSET;
    if (strcasecmp(s, "path") == 0)
        return 1;
    if (strcasecmp(s, "virtual") == 0)
        return 0;
    return UNSET;   /* "auto": let later sources decide */
}

static void aws_files_layer(const sources *src, const char *profile, layer *l)
{
    char section[300];

    config_section_name(profile, section, sizeof section);
    aws_profile_keys(src, profile, l);
    l->region = aws_ini_get(&src->config, section, "", "region");
    l->endpoint = aws_ini_get(&src->config, section, "s3", "endpoint_url");
    if (!l->endpoint)
        l->endpoint = aws_ini_get(&src->config, section, "", "endpoint_url");
    l->ca_bundle = aws_ini_get(&src->config, section, "", "ca_bundle");
    l->path_style = parse_addressing_style(aws_ini_get(&src->config, section, "s3", "addressing_style"));
}

/* ---- environment -------------------------------------------------------- */

static void environment_layer(layer *l, int include_keys)
{
    l->endpoint = env("AWS_ENDPOINT_URL_S3");
    if (!l->endpoint)
        l->endpoint = env("AWS_ENDPOINT_URL");
    l->region = env("AWS_REGION");
    if (!l->region)
        l->region = env("AWS_DEFAULT_REGION");
    l->ca_bundle = env("AWS_CA_BUNDLE");
    if (!include_keys)
        return;
    l->access_key = env("AWS_ACCESS_KEY_ID");
    l->secret_key = env("AWS_SECRET_ACCESS_KEY");
    l->session_token = env("AWS_SESSION_TOKEN");
    snprintf(l->source, sizeof l->source, "environment");
    if (!!l->access_key != !!l->secret_key) {
        l->key_error = l->access_key ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID";
        l->access_key = l->secret_key = NULL;
    }
}

/* ---- skyrun.yaml -------------------------------------------------------- */

static int yaml_bool(const sky_config *cfg, const sky_config_node *p, const char *key, int *out,
                     char *err, size_t errlen)
{
    int v;
    int rc = sky_config_bool(cfg, p, key, &v, err, errlen);
    if (rc < 0)
        return -1;
    if (rc == 1)
        *out = v;
    return 0;
}

/* storage.<profile> of skyrun.yaml into l. Returns 0 (also when the
 * profile is absent: *found = 0), -1 with err on a malformed entry. */
static int yaml_layer(sources *src, const char *profile, layer *l, int *found, char *err,
                      size_t errlen)
{
    const sky_config_node *p, *creds;
    char where[512];

    *found = 0;
    if (!src->yaml || !src->yaml->root)
        return 0;
    p = sky_config_child(sky_config_get(src->yaml->root, "storage"), profile);
    if (!p)
        return 0;
    *found = 1;
    if (p->kind != SKY_CONFIG_MAP) {
        sky_config_where(src->yaml, p, where, sizeof where);
        set_err(err, errlen, "%s: storage.%s must be a map of settings (endpoint, region, ...)",
                where, profile);
        return -1;
    }
    l->endpoint = sky_config_string(p, "endpoint");
    l->region = sky_config_string(p, "region");
    l->ca_bundle = sky_config_string(p, "ca_bundle");
    l->account_id = sky_config_string(p, "account_id");
    l->preset = sky_config_string(p, "preset");
    if (yaml_bool(src->yaml, p, "path_style", &l->path_style, err, errlen) != 0 ||
        yaml_bool(src->yaml, p, "verify_tls", &l->verify_tls, err, errlen) != 0)
        return -1;

    creds = sky_config_child(p, "credentials");
    if (!creds)
        creds = p;   /* access_key/secret_key may sit in the profile itself */
    else if (creds->kind != SKY_CONFIG_MAP) {
        sky_config_where(src->yaml, creds, where, sizeof where);
        set_err(err, errlen, "%s: storage.%s.credentials must be a map "
                "({ profile: NAME } or { access_key: ..., secret_key: ... })", where, profile);
        return -1;
    }
    l->access_key = sky_config_string(creds, "access_key");
    l->secret_key = sky_config_string(creds, "secret_key");
    l->session_token = sky_config_string(creds, "session_token");
    snprintf(l->source, sizeof l->source, "skyrun.yaml:%s", profile);
    if (!!l->access_key != !!l->secret_key) {
        l->key_error = l->access_key ? "secret_key" : "access_key";
        l->access_key = l->secret_key = NULL;
    }
    if (!l->access_key && creds != p) {
        const char *alias = sky_config_string(creds, "profile");
        if (alias) {
            if (!aws_profile_exists(src, alias)) {
                sky_config_where(src->yaml, sky_config_child(creds, "profile"), where, sizeof where);
                set_err(err, errlen, "%s: storage.%s.credentials.profile '%s' not found in %s or %s",
                        where, profile, alias, src->creds.path, src->config.path);
                return -1;
            }
            aws_profile_keys(src, alias, l);
        }
    }
    return 0;
}

static int load_yaml(sources *src, const char *explicit_path, char *err, size_t errlen)
{
    if (!sky_config_find(explicit_path, src->yaml_path, sizeof src->yaml_path)) {
        src->yaml_path[0] = '\0';
        return 0;
    }
    src->yaml = sky_config_load_file(src->yaml_path, err, errlen);
    return src->yaml ? 0 : -1;
}

/* ---- putting it together ------------------------------------------------ */

/* "https://s3.{region}.wasabisys.com" with the placeholders filled. */
static char *expand_template(const char *tmpl, const char *region, const char *account_id)
{
    sky_buf b = SKY_BUF_INIT;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{region}", 8) == 0) {
            sky_buf_append_str(&b, region);
            p += 8;
        } else if (strncmp(p, "{account_id}", 12) == 0) {
            sky_buf_append_str(&b, account_id);
            p += 12;
        } else {
            sky_buf_append_byte(&b, (uint8_t)*p++);
        }
    }
    sky_buf_cstr(&b);
    return (char *)b.data;
}

/* First value among the layers (in priority order) of a string / flag field. */
static const char *first_string(const layer *layers, size_t n, size_t offset)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = *(const char *const *)((const char *)&layers[i] + offset);
        if (v)
            return v;
    }
    return NULL;
}

static int first_flag(const layer *layers, size_t n, size_t offset)
{
    for (size_t i = 0; i < n; i++) {
        int v = *(const int *)((const char *)&layers[i] + offset);
        if (v != UNSET)
            return v;
    }
    return UNSET;
}

#define FIRST(field) first_string(layers, nlayers, offsetof(layer, field))
#define FIRST_FLAG(field) first_flag(layers, nlayers, offsetof(layer, field))

static void explicit_layer(const s3_settings *given, layer *l)
{
    if (!given)
        return;
    l->endpoint = nonempty(given->endpoint);
    l->region = nonempty(given->region);
    l->ca_bundle = nonempty(given->ca_bundle);
    l->account_id = nonempty(given->account_id);
    l->access_key = nonempty(given->access_key);
    l->secret_key = nonempty(given->secret_key);
    l->session_token = nonempty(given->session_token);
    if (given->path_style_set)
        l->path_style = given->path_style ? 1 : 0;
    if (given->verify_tls_set)
        l->verify_tls = given->verify_tls ? 1 : 0;
    snprintf(l->source, sizeof l->source, "explicit");
    if (!!l->access_key != !!l->secret_key) {
        l->key_error = l->access_key ? "secret_key" : "access_key";
        l->access_key = l->secret_key = NULL;
    }
}

static void init_layer(layer *l)
{
    memset(l, 0, sizeof *l);
    l->path_style = UNSET;
    l->verify_tls = UNSET;
}

static void default_path(const char *env_name, const char *home_relative, char *out, size_t outlen)
{
    const char *e = env(env_name), *home = env("HOME");
    if (e)
        snprintf(out, outlen, "%s", e);
    else
        snprintf(out, outlen, "%s/%s", home ? home : ".", home_relative);
}

/* Endpoint, region and addressing from the winning layers and the preset. */
static int resolve_location(const layer *layers, size_t nlayers, const char *preset_name,
                            s3_settings *out, char *err, size_t errlen)
{
    const s3_preset *pre = NULL;
    const char *endpoint = FIRST(endpoint), *region = FIRST(region);
    const char *account_id = FIRST(account_id);
    int path_style = FIRST_FLAG(path_style), verify_tls = FIRST_FLAG(verify_tls);
    char names[128];

    if (!preset_name)
        preset_name = FIRST(preset);
    if (preset_name) {
        pre = s3_preset_find(preset_name);
        if (!pre) {
            s3_preset_names(", ", names, sizeof names);
            set_err(err, errlen, "unknown storage preset '%s' (known: %s)", preset_name, names);
            return -1;
        }
    }
    if (!region && pre && !pre->region) {
        set_err(err, errlen, "storage preset '%s' needs a region: %s", pre->name, pre->hint);
        return -1;
    }
    if (!region)
        region = pre ? pre->region : S3_DEFAULT_REGION;
    out->region = sky_xstrdup(region);

    if (endpoint) {
        out->endpoint = sky_xstrdup(endpoint);
    } else if (pre && !pre->endpoint) {
        set_err(err, errlen, "storage preset '%s' needs an endpoint: %s", pre->name, pre->hint);
        return -1;
    } else if (pre && strstr(pre->endpoint, "{account_id}") && !account_id) {
        set_err(err, errlen, "storage preset '%s' needs account_id: %s", pre->name, pre->hint);
        return -1;
    } else {
        out->endpoint = expand_template(pre ? pre->endpoint : s3_preset_find("aws")->endpoint, region,
                                        account_id ? account_id : "");
    }
    if (strncmp(out->endpoint, "http://", 7) != 0 && strncmp(out->endpoint, "https://", 8) != 0) {
        set_err(err, errlen, "storage endpoint '%s' must start with http:// or https://",
                out->endpoint);
        return -1;
    }
    /* "http://h:9000/" and "http://h:9000" are the same endpoint. */
    for (size_t n = strlen(out->endpoint); n > 8 && out->endpoint[n - 1] == '/'; n--)
        out->endpoint[n - 1] = '\0';

    if (path_style == UNSET)
        /* A custom endpoint with no preset is almost always MinIO, Ceph or
         * a test server, which need path-style; AWS wants virtual-hosted. */
        path_style = pre ? pre->path_style : (endpoint != NULL);
    out->path_style = path_style;
    out->verify_tls = verify_tls == UNSET ? 1 : verify_tls;
    out->ca_bundle = sky_xstrdup(FIRST(ca_bundle));
    out->account_id = sky_xstrdup(account_id);
    return 0;
}

static int resolve_keys(const layer *layers, size_t nlayers, s3_settings *out, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < nlayers; i++) {
        const layer *l = &layers[i];
        if (l->key_error) {
            set_err(err, errlen, "incomplete storage credentials from %s: %s is missing",
                    l->source, l->key_error);
            return -1;
        }
        if (l->access_key && l->secret_key) {
            out->access_key = sky_xstrdup(l->access_key);
            out->secret_key = sky_xstrdup(l->secret_key);
            out->session_token = sky_xstrdup(nonempty(l->session_token));
            snprintf(out->credential_source, sizeof out->credential_source, "%s", l->source);
            sky_secret_register(out->secret_key);
            sky_secret_register(out->session_token);
            return 0;
        }
    }
    set_err(err, errlen, "no credentials found for storage: set access_key/secret_key, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials");
    return -1;
}

/* The profile a request names: argument, then given->profile, then
 * AWS_PROFILE. *named_in_code is 1 for the first two: the caller asked for
 * this profile, so environment keys must not override it. */
static const char *chosen_profile(const s3_settings *given, const char *profile, int *named_in_code)
{
    *named_in_code = 1;
    if (nonempty(profile))
        return profile;
    if (given && nonempty(given->profile))
        return given->profile;
    *named_in_code = 0;
    return env("AWS_PROFILE");
}

static void register_layer_secrets(const layer *layers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sky_secret_register(layers[i].secret_key);
        sky_secret_register(layers[i].session_token);
    }
}

int s3_settings_resolve(const s3_settings *given, const char *preset_name, const char *profile,
                        s3_settings *out, char *err, size_t errlen)
{
    sources src;
    layer layers[4];
    size_t nlayers = 0;
    char path[4096];
    const char *name;
    int named_in_code, in_yaml = 0, rc = -1;

    memset(&src, 0, sizeof src);
    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    name = chosen_profile(given, profile, &named_in_code);

    default_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", path, sizeof path);
    aws_ini_load(&src.creds, path);
    default_path("AWS_CONFIG_FILE", ".aws/config", path, sizeof path);
    aws_ini_load(&src.config, path);
    if (load_yaml(&src, given ? given->config_file : NULL, err, errlen) != 0)
        goto done;

    for (size_t i = 0; i < 4; i++)
        init_layer(&layers[i]);
    explicit_layer(given, &layers[nlayers++]);
    environment_layer(&layers[nlayers++], !named_in_code);
    aws_files_layer(&src, name ? name : "default", &layers[nlayers++]);
    if (yaml_layer(&src, name ? name : "default", &layers[nlayers++], &in_yaml, err, errlen) != 0)
        goto done;
    /* Registered before anything can fail and print them. */
    register_layer_secrets(layers, nlayers);

    if (name && !in_yaml && !aws_profile_exists(&src, name)) {
        set_err(err, errlen, "profile '%s' not found in %s, %s or %s", name, src.creds.path,
                src.config.path, src.yaml_path[0] ? src.yaml_path : "skyrun.yaml (none found)");
        goto done;
    }
    if (resolve_location(layers, nlayers, preset_name, out, err, errlen) != 0 ||
        resolve_keys(layers, nlayers, out, err, errlen) != 0)
        goto done;
    out->profile = sky_xstrdup(name);
    out->config_file = src.yaml ? sky_xstrdup(src.yaml_path) : NULL;
    rc = 0;
done:
    if (rc != 0)
        s3_settings_free(out);
    aws_ini_free(&src.creds);
    aws_ini_free(&src.config);
    sky_config_free(src.yaml);
    return rc;
}
