/*
 * Structured logging to stderr, one line per event:
 *   ts=2026-11-26T13:00:00.123Z level=info shard=0 event=listen port=7400
 * The caller passes the event name and a printf-style tail of key=value fields.
 * Safe from any thread; each line is written with a single write(2).
 */
#ifndef RP_BASE_LOG_H
#define RP_BASE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped. Set once at start-up. */
void log_set_level(enum log_level level);

/* The shard id printed on lines from the calling thread; -1 for none. */
void log_set_shard(int shard);

void log_emit(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_emit(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_emit(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_emit(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_emit(LOG_ERROR, ev, __VA_ARGS__)

#endif
