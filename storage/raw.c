/*
 * The disk and RocksDB alone, without this layer: the reference that the
 * layer's own figures (storage_bench) are read against. See storage.h.
 */
#include "storage/storage.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>

#define RAW_VALUE_BYTES 200
#define RAW_KEYS        64

int storage_raw_puts(const char *dir, enum stg_durability dur, unsigned batch, double seconds,
                     double *puts_per_s)
{
    if (!dir || !batch || seconds <= 0 || !puts_per_s)
        return -EINVAL;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, dir, &err);
    rocksdb_options_destroy(o);
    if (err) {
        log_error("storage_raw_open", "dir=%s err=%s", dir, err);
        rocksdb_free(err);
        return -RP_ESTORAGE;
    }
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, dur == STG_SYNC);
    rocksdb_writeoptions_disable_WAL(wo, dur == STG_NONE);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char value[RAW_VALUE_BYTES];
    uint64_t x = 0x9e3779b97f4a7c15u; /* incompressible values, as the bench's entries */
    for (size_t i = 0; i < sizeof value; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        value[i] = (char)x;
    }
    int rc = 0;
    uint64_t n = 0, start = clock_mono_ns(), end = start + (uint64_t)(seconds * 1e9), now;
    do {
        rocksdb_writebatch_clear(wb);
        for (unsigned i = 0; i < batch; i++, n++) {
            /* RAW_KEYS round-robin "conversations", each with increasing seqs */
            char key[32];
            int klen = snprintf(key, sizeof key, "c%05u:%012llu", (unsigned)(n % RAW_KEYS),
                                (unsigned long long)(n / RAW_KEYS));
            rocksdb_writebatch_put(wb, key, (size_t)klen, value, sizeof value);
        }
        rocksdb_write(db, wo, wb, &err);
        if (err) {
            log_error("storage_raw_write", "err=%s", err);
            rocksdb_free(err);
            rc = -RP_ESTORAGE;
            break;
        }
        now = clock_mono_ns();
    } while (now < end);
    if (rc == 0)
        *puts_per_s = (double)n / ((double)(now - start) / 1e9);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    return rc;
}
