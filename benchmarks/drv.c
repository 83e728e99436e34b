/*
 * The driver table and the payload stamp shared by every driver. The stamp is
 * little-endian on the wire: sender and receiver are always this machine.
 */
#include "drv.h"

#include "base/err.h"

#include <string.h>

#define STAMP_MAGIC 0x7270626eu /* "rpbn" */

static const struct drv *const drivers[] = {&drv_ringpush, &drv_redis, &drv_nats, &drv_mqtt};

const struct drv *drv_find(const char *name)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

void drv_stamp_write(uint8_t out[DRV_PAYLOAD], const struct drv_stamp *s)
{
    uint32_t magic = STAMP_MAGIC;
    memset(out, 'x', DRV_PAYLOAD);
    memcpy(out, &magic, 4);
    memcpy(out + 4, &s->sender, 4);
    memcpy(out + 8, &s->seq, 8);
    memcpy(out + 16, &s->sent_ns, 8);
}

int drv_stamp_read(const uint8_t *p, size_t len, struct drv_stamp *s)
{
    uint32_t magic;
    if (len != DRV_PAYLOAD)
        return -RP_EFRAME;
    memcpy(&magic, p, 4);
    if (magic != STAMP_MAGIC)
        return -RP_EFRAME;
    memcpy(&s->sender, p + 4, 4);
    memcpy(&s->seq, p + 8, 8);
    memcpy(&s->sent_ns, p + 16, 8);
    return 0;
}
