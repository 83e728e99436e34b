/*
 * storage under failing disks: a tiny tmpfs that fills up, and a read-only
 * file system. A failed write completes with -RP_ESTORAGE (never a crash,
 * never success), leaves nothing of its batch behind, and writes succeed
 * again once space returns. Opening on a read-only file system fails cleanly.
 *
 * Needs a private mount namespace and tmpfs (root or CAP_SYS_ADMIN); skips
 * (77) without them.
 */
#define _GNU_SOURCE
#include "storage/storage.h"

#include "base/err.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char mnt[] = "/tmp/rp_test_storage_err_XXXXXX";

static int mount_tmpfs(const char *opts)
{
    if (mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
        fprintf(stderr, "mount tmpfs %s: %s\n", opts, strerror(errno));
        return -1;
    }
    return 0;
}

static struct stg_done wait_one(struct storage *st)
{
    struct stg_done d = {.err = -ETIMEDOUT};
    for (int i = 0; i < 200000; i++) {
        if (storage_poll(st, 0, &d, 1) == 1)
            return d;
        nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
    fprintf(stderr, "timed out waiting for a completion\n");
    failures++;
    return d;
}

/* One batch: a 4 KiB entry and its conversation record, like an append. */
static int append(struct storage *st, uint64_t seq)
{
    static char val[4096];
    struct buf k;
    buf_init(&k);
    memset(val, (int)(seq * 7), sizeof(val));
    for (size_t i = 0; i < sizeof(val); i += 8)
        memcpy(val + i, &(uint64_t){seq * 2654435761u + i}, 8); /* incompressible enough */
    struct stg_batch *b = stg_batch_new();
    stg_key_log(&k, "full", 4, seq);
    stg_batch_put(b, STG_CF_LOG, k.data, k.len, val, sizeof(val));
    stg_key_conv(&k, "full", 4);
    stg_batch_put(b, STG_CF_CONV, k.data, k.len, &seq, sizeof(seq));
    buf_deinit(&k);
    CHECK(storage_write(st, 0, b, seq) == 0);
    struct stg_done d = wait_one(st);
    CHECK(d.tag == seq && d.res == NULL);
    return d.err;
}

static bool present(struct storage *st, uint64_t seq)
{
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    stg_key_log(&k, "full", 4, seq);
    int rc = storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v);
    buf_deinit(&k);
    buf_deinit(&v);
    return rc == 0;
}

static uint64_t conv_last(struct storage *st)
{
    struct buf v;
    buf_init(&v);
    uint64_t last = 0;
    if (storage_get_sync(st, STG_CF_CONV,
                         "\x04"
                         "full",
                         5, &v) == 0 &&
        v.len == 8)
        memcpy(&last, v.data, 8);
    buf_deinit(&v);
    return last;
}

static void test_disk_full(void)
{
    char path[128];
    if (mount_tmpfs("size=6m") < 0)
        exit(77);
    snprintf(path, sizeof(path), "%s/db", mnt);
    struct storage_config cfg = {.path = path, .durability = STG_SYNC, .nshards = 1};
    struct storage *st = NULL;
    int rc = storage_open(&cfg, &st);
    CHECK(rc == 0);
    if (rc < 0)
        return;

    uint64_t seq = 1, failed_at = 0;
    for (; seq < 10000; seq++) {
        rc = append(st, seq);
        if (rc < 0) {
            failed_at = seq;
            break;
        }
    }
    fprintf(stderr, "disk full after %llu appends\n", (unsigned long long)seq - 1);
    CHECK(failed_at > 0 && rc == -RP_ESTORAGE);
    /* Further writes keep failing cleanly while the disk is full. */
    for (int i = 0; i < 3; i++)
        CHECK(append(st, failed_at + 1 + (uint64_t)i) == -RP_ESTORAGE);
    /* Nothing of a failed batch is visible: the entry and its meta agree. */
    CHECK(!present(st, failed_at));
    CHECK(conv_last(st) == failed_at - 1);
    CHECK(present(st, failed_at - 1));

    /* Space returns: service resumes without a restart. */
    CHECK(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=256m") == 0);
    bool resumed = false;
    for (int i = 0; i < 200 && !resumed; i++) {
        resumed = append(st, failed_at) == 0;
        if (!resumed)
            nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    }
    CHECK(resumed);
    CHECK(append(st, failed_at + 1) == 0);
    CHECK(present(st, failed_at) && conv_last(st) == failed_at + 1);
    struct storage_stats s;
    storage_stats_get(st, &s);
    CHECK(s.write_errors >= 4);
    storage_close(st);

    /* Everything acknowledged is there after a reopen. */
    CHECK(storage_open(&cfg, &st) == 0);
    for (uint64_t i = 1; i <= failed_at + 1; i++)
        CHECK(present(st, i));
    storage_close(st);
    umount(mnt);
}

static void test_read_only(void)
{
    char path[128];
    if (mount_tmpfs("size=64m") < 0) {
        failures++;
        return;
    }
    snprintf(path, sizeof(path), "%s/db", mnt);
    struct storage_config cfg = {.path = path, .durability = STG_SYNC, .nshards = 1};
    struct storage *st = NULL;
    CHECK(storage_open(&cfg, &st) == 0);
    storage_close(st);
    CHECK(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL) == 0);
    st = NULL;
    CHECK(storage_open(&cfg, &st) == -RP_ESTORAGE);
    CHECK(st == NULL);

    /* A path that cannot be a directory fails the same way. */
    cfg.path = "/proc/version/db";
    CHECK(storage_open(&cfg, &st) == -RP_ESTORAGE);
    umount(mnt);
}

int main(void)
{
    if (!mkdtemp(mnt)) {
        perror("mkdtemp");
        return 1;
    }
    /* Mounts stay private to this process. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        fprintf(stderr, "skip: no private mount namespace: %s\n", strerror(errno));
        rmdir(mnt);
        return 77;
    }
    test_disk_full();
    test_read_only();
    rmdir(mnt);
    if (failures) {
        fprintf(stderr, "test_storage_errors: %d failures\n", failures);
        return 1;
    }
    printf("test_storage_errors: ok\n");
    return 0;
}
