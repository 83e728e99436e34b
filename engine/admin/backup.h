/*
 * POST /v1/backup: a consistent RocksDB checkpoint taken on a thread of its
 * own, because storage_checkpoint blocks (it flushes memtables and hard-links
 * table files) and no shard loop may block. One backup at a time.
 *
 * The thread writes notify_fd (an eventfd the admin server reads through
 * shard 0's io_uring) when it is done; shard 0 then collects the result with
 * backup_poll, which joins the thread.
 *
 * Thread: backup_start / backup_poll / backup_deinit on shard 0 only.
 */
#ifndef RP_ENGINE_ADMIN_BACKUP_H
#define RP_ENGINE_ADMIN_BACKUP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct storage;

#define BACKUP_MAX_DIR 1024u

struct backup {
    pthread_t thread;
    bool running;     /* a thread was started and not yet joined */
    atomic_bool done; /* set by the thread after result and took_ms */
    int result;
    uint64_t took_ms;
    struct storage *st;
    int notify_fd;
    char dir[BACKUP_MAX_DIR];
};

void backup_init(struct backup *b);

/*
 * Start a checkpoint of st into dir (absolute; must not exist; its parent
 * must). dir is copied. Returns 0, -EBUSY (a backup is running),
 * -ENAMETOOLONG, or -errno from pthread_create.
 */
int backup_start(struct backup *b, struct storage *st, const char *dir, int notify_fd);

/*
 * 1 when the running backup has finished (thread joined; *result is 0,
 * -EEXIST (dir exists), -ENOENT (its parent does not), -ENOTDIR, or
 * -RP_ESTORAGE (RocksDB refused; logged) and *took_ms its duration); 0 when
 * none has finished.
 */
int backup_poll(struct backup *b, int *result, uint64_t *took_ms);

/* Waits for a running backup (shutdown). */
void backup_deinit(struct backup *b);

#endif
