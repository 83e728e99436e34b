/*
 * The backup thread (see backup.h). The checkpoint itself is RocksDB's: a
 * point-in-time copy made of hard links to the immutable table files plus
 * copies of the small mutable ones (MANIFEST, OPTIONS, the live WAL), so it
 * is cheap on the same filesystem and consistent across column families.
 * The checks before it turn the common operator mistakes into clear errors
 * instead of a RocksDB message in the log.
 */
#include "engine/admin/backup.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "storage/storage.h"

#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void backup_init(struct backup *b)
{
    memset(b, 0, sizeof(*b));
    atomic_init(&b->done, false);
    b->notify_fd = -1;
}

static int check_target(const char *dir)
{
    struct stat stt;
    if (stat(dir, &stt) == 0)
        return -EEXIST;
    if (errno != ENOENT)
        return -errno;
    char parent[BACKUP_MAX_DIR];
    memcpy(parent, dir, strlen(dir) + 1);
    if (stat(dirname(parent), &stt) != 0)
        return -errno;
    return S_ISDIR(stt.st_mode) ? 0 : -ENOTDIR;
}

static void *backup_main(void *arg)
{
    struct backup *b = arg;
    log_set_shard(-1);
    uint64_t t0 = clock_mono_ns();
    int r = check_target(b->dir);
    if (r == 0)
        r = storage_checkpoint(b->st, b->dir);
    b->took_ms = (clock_mono_ns() - t0) / 1000000u;
    b->result = r;
    if (r == 0)
        log_info("backup_done", "dir=\"%s\" ms=%llu", b->dir, (unsigned long long)b->took_ms);
    else
        log_warn("backup_failed", "dir=\"%s\" err=\"%s\"", b->dir, err_str(r));
    atomic_store_explicit(&b->done, true, memory_order_release);
    uint64_t one = 1;
    ssize_t w = write(b->notify_fd, &one, sizeof(one));
    (void)w;
    return NULL;
}

int backup_start(struct backup *b, struct storage *st, const char *dir, int notify_fd)
{
    if (b->running)
        return -EBUSY;
    size_t n = strlen(dir);
    if (n >= sizeof(b->dir))
        return -ENAMETOOLONG;
    memcpy(b->dir, dir, n + 1);
    b->st = st;
    b->notify_fd = notify_fd;
    b->result = 0;
    b->took_ms = 0;
    atomic_store_explicit(&b->done, false, memory_order_relaxed);
    int r = pthread_create(&b->thread, NULL, backup_main, b);
    if (r)
        return -r;
    b->running = true;
    log_info("backup_started", "dir=\"%s\"", b->dir);
    return 0;
}

int backup_poll(struct backup *b, int *result, uint64_t *took_ms)
{
    if (!b->running || !atomic_load_explicit(&b->done, memory_order_acquire))
        return 0;
    pthread_join(b->thread, NULL);
    b->running = false;
    *result = b->result;
    *took_ms = b->took_ms;
    return 1;
}

void backup_deinit(struct backup *b)
{
    if (b->running) {
        pthread_join(b->thread, NULL);
        b->running = false;
    }
}
