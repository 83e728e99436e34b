/*
 * Runs every protocol fuzz target's one-input function, compiled into this test
 * without libFuzzer, over its regression inputs (fuzz/regress/<target>/) and
 * its seed corpus (fuzz/corpus/<target>/). A target reports a failure by
 * aborting, and sanitizers catch memory errors, so passing means every
 * stored input still runs clean. Each regress and corpus folder must exist
 * and hold at least one input, so that a lost folder cannot pass silently.
 */
#include "check.h"

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef FUZZ_ROOT
#error "FUZZ_ROOT must name the fuzz folder"
#endif

int fuzz_frame_one(const uint8_t *data, size_t size);
int fuzz_req_one(const uint8_t *data, size_t size);
int fuzz_jwt_one(const uint8_t *data, size_t size);
int fuzz_entry_one(const uint8_t *data, size_t size);
int fuzz_ws_one(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    int (*one)(const uint8_t *, size_t);
} targets[] = {
    {"fuzz_frame", fuzz_frame_one}, {"fuzz_req", fuzz_req_one}, {"fuzz_jwt", fuzz_jwt_one},
    {"fuzz_entry", fuzz_entry_one}, {"fuzz_ws", fuzz_ws_one},
};

static uint8_t input[1 << 20];

/* Runs one() over every file of dir; returns how many ran. */
static int run_dir(const char *dir, int (*one)(const uint8_t *, size_t))
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) {
        fprintf(stderr, "%s: cannot open\n", dir);
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        CHECK(f);
        size_t len = fread(input, 1, sizeof(input), f);
        CHECK(!ferror(f) && feof(f));
        fclose(f);
        CHECK(one(input, len) == 0);
        n++;
    }
    closedir(d);
    return n;
}

int main(void)
{
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/regress/%s", FUZZ_ROOT, targets[i].name);
        int r = run_dir(dir, targets[i].one);
        snprintf(dir, sizeof(dir), "%s/corpus/%s", FUZZ_ROOT, targets[i].name);
        int c = run_dir(dir, targets[i].one);
        printf("%s: %d regress, %d corpus inputs ok\n", targets[i].name, r, c);
        CHECK(r > 0 && c > 0);
    }
    return 0;
}
