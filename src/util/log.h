/*
 * log: the host's diagnostics, with secret redaction.
 *
 * Every secret the host learns (secret keys, session tokens, passwords) is
 * registered with sky_secret_register() the moment it is read. From then on
 * sky_log() and sky_redact() replace each occurrence with "[REDACTED]", so a
 * secret cannot reach a log line, an error message or a file by accident.
 * Messages go to stderr; level from SKYRUN_LOG (error|warn|info|debug) or
 * sky_log_set_level(). Thread-safe.
 */
#ifndef SKY_UTIL_LOG_H
#define SKY_UTIL_LOG_H

#include <stddef.h>
#include "util/buf.h"

enum sky_log_level { SKY_LOG_ERROR = 0, SKY_LOG_WARN, SKY_LOG_INFO, SKY_LOG_DEBUG };

void sky_log_set_level(int level);
int sky_log_get_level(void);
void sky_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Remember a secret (copied; strings shorter than 4 bytes are ignored). */
void sky_secret_register(const char *secret);
/* Replace every registered secret in the NUL-terminated text, in place
 * (the replacement is never longer than the secret it replaces... or the
 * text is shortened). Returns text. */
char *sky_redact(char *text);
/* Same for a buffer. */
void sky_redact_buf(sky_buf *b);
/* Forget all secrets (tests). */
void sky_secret_clear(void);

#endif
