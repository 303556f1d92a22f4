/*
 * log: the host's diagnostics on stderr, and the registry of secrets that
 * must never leave the process in a log line, an error message or a file.
 *
 * Every message is formatted, then redacted, then written with one write(2)
 * under a lock, so lines from several threads never interleave and a secret
 * never reaches stderr even for a moment. Each secret is also remembered in
 * its percent-encoded form, because it travels that way in presigned URLs
 * and query strings that may be logged.
 */
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/encode.h"

#define REDACTED "[REDACTED]"
#define MIN_SECRET_LEN 4

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static int log_level = SKY_LOG_WARN;

static char **secrets;      /* owned copies, each wiped before it is freed */
static size_t nsecrets, secrets_cap;

static const char *const LEVEL_NAMES[] = { "error", "warning", "info", "debug" };

/* ---- level -------------------------------------------------------------- */

static int parse_level(const char *s)
{
    if (strcasecmp(s, "error") == 0 || strcmp(s, "0") == 0) return SKY_LOG_ERROR;
    if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0 || strcmp(s, "1") == 0)
        return SKY_LOG_WARN;
    if (strcasecmp(s, "info") == 0 || strcmp(s, "2") == 0) return SKY_LOG_INFO;
    if (strcasecmp(s, "debug") == 0 || strcmp(s, "3") == 0) return SKY_LOG_DEBUG;
    return -1;
}

static void read_level_from_environment(void)
{
    const char *env = getenv("SKYRUN_LOG");
    int level;

    if (!env || !*env)
        return;
    level = parse_level(env);
    if (level >= 0) {
        log_level = level;
    } else {
        /* Said once, at the default level, so a typo is noticed. */
        fprintf(stderr, "skyrun: warning: SKYRUN_LOG=%s is not one of error, warn, info, "
                        "debug; using warn\n", env);
    }
}

static void ensure_level(void)
{
    pthread_once(&level_once, read_level_from_environment);
}

void sky_log_set_level(int level)
{
    ensure_level();
    if (level < SKY_LOG_ERROR)
        level = SKY_LOG_ERROR;
    if (level > SKY_LOG_DEBUG)
        level = SKY_LOG_DEBUG;
    pthread_mutex_lock(&log_lock);
    log_level = level;
    pthread_mutex_unlock(&log_lock);
}

int sky_log_get_level(void)
{
    int level;
    ensure_level();
    pthread_mutex_lock(&log_lock);
    level = log_level;
    pthread_mutex_unlock(&log_lock);
    return level;
}

/* ---- secrets ------------------------------------------------------------ */

static void wipe(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
}

/* Caller holds log_lock. */
static void add_secret_locked(const char *s)
{
    for (size_t i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i], s) == 0)
            return;
    if (nsecrets == secrets_cap) {
        size_t cap = secrets_cap ? secrets_cap * 2 : 8;
        secrets = sky_xrealloc(secrets, cap * sizeof *secrets);
        secrets_cap = cap;
    }
    secrets[nsecrets++] = sky_xstrdup(s);
}

/* The form a secret takes in a URL query (as SigV4 encodes it), or NULL
 * when that is the secret itself. */
static char *percent_encoded(const char *s)
{
    sky_buf b = SKY_BUF_INIT;
    size_t n = strlen(s);
    char *out = NULL;

    sky_buf_reserve(&b, 3 * n);   /* one allocation: no unwiped copy left behind by growth */
    sky_buf_append_percent(&b, s, n, 0);
    if (b.len != n)
        out = sky_xstrndup((const char *)b.data, b.len);
    explicit_bzero(b.data, b.len);
    sky_buf_free(&b);
    return out;
}

void sky_secret_register(const char *secret)
{
    char *encoded;

    if (!secret || strlen(secret) < MIN_SECRET_LEN)
        return;
    encoded = percent_encoded(secret);
    pthread_mutex_lock(&log_lock);
    add_secret_locked(secret);
    if (encoded)
        add_secret_locked(encoded);
    pthread_mutex_unlock(&log_lock);
    if (encoded) {
        wipe(encoded);
        free(encoded);
    }
}

void sky_secret_clear(void)
{
    pthread_mutex_lock(&log_lock);
    for (size_t i = 0; i < nsecrets; i++) {
        wipe(secrets[i]);
        free(secrets[i]);
    }
    free(secrets);
    secrets = NULL;
    nsecrets = secrets_cap = 0;
    pthread_mutex_unlock(&log_lock);
}

/* ---- redaction ---------------------------------------------------------- */

/* Marks in `covered` every byte of text[0..n) that belongs to an occurrence
 * of a registered secret. Marking first and replacing after means
 * overlapping or adjacent secrets become one "[REDACTED]" and no fragment
 * of either survives. Caller holds log_lock. Returns 1 if anything matched. */
static int mark_secrets_locked(const char *text, size_t n, unsigned char *covered)
{
    int any = 0;
    for (size_t s = 0; s < nsecrets; s++) {
        size_t len = strlen(secrets[s]);
        if (len > n)
            continue;
        for (const char *p = text; (size_t)(p - text) + len <= n;) {
            const char *hit = memmem(p, n - (size_t)(p - text), secrets[s], len);
            if (!hit)
                break;
            memset(covered + (hit - text), 1, len);
            any = 1;
            p = hit + 1;    /* overlapping occurrences of the same secret too */
        }
    }
    return any;
}

/* text[0..n) with every covered run replaced by REDACTED, into out. */
static void replace_covered(const char *text, size_t n, const unsigned char *covered, sky_buf *out)
{
    for (size_t i = 0; i < n;) {
        if (!covered[i]) {
            sky_buf_append_byte(out, (uint8_t)text[i++]);
            continue;
        }
        sky_buf_append_str(out, REDACTED);
        while (i < n && covered[i])
            i++;
    }
}

/* Redacted copy of text[0..n) into out; returns 1 when something was
 * replaced (out untouched otherwise). */
static int redact_into(const char *text, size_t n, sky_buf *out)
{
    unsigned char *covered;
    int any;

    if (n == 0)
        return 0;
    covered = sky_xcalloc(n, 1);
    pthread_mutex_lock(&log_lock);
    any = mark_secrets_locked(text, n, covered);
    pthread_mutex_unlock(&log_lock);
    if (any)
        replace_covered(text, n, covered, out);
    free(covered);
    return any;
}

/* In place: the text keeps its length at most. When "[REDACTED]" is longer
 * than a short secret it replaces, the end of the text is cut off rather
 * than written past the caller's buffer (no secret byte can be in what
 * remains: the cut is made on the already-redacted text). */
char *sky_redact(char *text)
{
    sky_buf out = SKY_BUF_INIT;
    size_t n;

    if (!text)
        return text;
    n = strlen(text);
    if (redact_into(text, n, &out)) {
        size_t keep = out.len < n ? out.len : n;
        memcpy(text, out.data, keep);
        text[keep] = '\0';
        explicit_bzero(text + keep, n - keep);
        sky_buf_free(&out);
    }
    return text;
}

void sky_redact_buf(sky_buf *b)
{
    sky_buf out = SKY_BUF_INIT;

    if (!b || b->len == 0)
        return;
    if (redact_into((const char *)b->data, b->len, &out)) {
        explicit_bzero(b->data, b->len);
        sky_buf_free(b);
        *b = out;
    }
}

/* ---- logging ------------------------------------------------------------ */

static void write_all(int fd, const uint8_t *p, size_t n)
{
    /* Bounded: each pass writes at least one byte or gives up. */
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void sky_log(int level, const char *fmt, ...)
{
    sky_buf line = SKY_BUF_INIT;
    va_list ap;
    char *msg = NULL;
    int len;

    if (level > sky_log_get_level())
        return;
    if (level < SKY_LOG_ERROR)
        level = SKY_LOG_ERROR;
    va_start(ap, fmt);
    len = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    sky_buf_printf(&line, "skyrun: %s: ", LEVEL_NAMES[level]);
    sky_buf_append(&line, msg, (size_t)len);
    explicit_bzero(msg, (size_t)len);
    free(msg);
    if (line.data[line.len - 1] != '\n')
        sky_buf_append_byte(&line, '\n');
    sky_redact_buf(&line);

    pthread_mutex_lock(&log_lock);
    write_all(STDERR_FILENO, line.data, line.len);
    pthread_mutex_unlock(&log_lock);
    explicit_bzero(line.data, line.len);
    sky_buf_free(&line);
}
