/*
 * Durability `none`: no write-ahead log, so the column families' memtables
 * are the only copy of a write until they are flushed. A crash loses what
 * was not flushed, but a batch is never left half there: the conv family
 * (16 MiB memtable) fills and flushes long before the log family (64 MiB),
 * and after a SIGKILL the conversation's last_seq must still name entries
 * that exist (the families are flushed together).
 */
#include "storage/key.h"
#include "storage/storage.h"

#include "check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITES 1200
#define META   20000 /* bytes of a (padded) conversation record */

static void child(const char *path)
{
    struct storage_config cfg = {.path = path, .durability = STG_NONE, .nshards = 1};
    struct storage *st;
    if (storage_open(&cfg, &st) < 0)
        _exit(2);
    static char meta[META];
    struct buf k;
    buf_init(&k);
    for (uint64_t seq = 1; seq <= WRITES; seq++) {
        struct stg_batch *b = stg_batch_new();
        if (!b || stg_key_log(&k, "c", 1, seq) < 0 ||
            stg_batch_put(b, STG_CF_LOG, k.data, k.len, "entry", 5) < 0)
            _exit(3);
        memcpy(meta, &seq, sizeof(seq));
        if (stg_key_conv(&k, "c", 1) < 0 ||
            stg_batch_put(b, STG_CF_CONV, k.data, k.len, meta, sizeof(meta)) < 0 ||
            storage_write_sync(st, b) < 0)
            _exit(3);
        stg_batch_free(b);
    }
    sleep(2); /* the conv family's flush is done by then */
    kill(getpid(), SIGKILL);
}

int main(void)
{
    char dir[] = "/tmp/rp_test_none_crash_XXXXXX", path[128];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/db", dir);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        child(path);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    struct storage_config cfg = {.path = path, .durability = STG_NONE, .nshards = 1};
    struct storage *st;
    CHECK(storage_open(&cfg, &st) == 0);
    struct buf k, v;
    buf_init(&k);
    buf_init(&v);
    uint64_t last = 0, present = 0;
    CHECK(stg_key_conv(&k, "c", 1) == 0);
    if (storage_get_sync(st, STG_CF_CONV, k.data, k.len, &v) == 0 && v.len >= sizeof(last))
        memcpy(&last, v.data, sizeof(last));
    for (uint64_t s = 1; s <= last; s++) {
        CHECK(stg_key_log(&k, "c", 1, s) == 0);
        present += storage_get_sync(st, STG_CF_LOG, k.data, k.len, &v) == 0;
    }
    CHECK(present == last);
    buf_deinit(&k);
    buf_deinit(&v);
    storage_close(st);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("ok: last_seq %llu, all there\n", (unsigned long long)last);
    return 0;
}
