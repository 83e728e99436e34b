/*
 * Replays one fuzz target's stored inputs without libFuzzer: the target's
 * source is compiled into this test (built with gcc and the sanitizers like
 * every test), and each file of fuzz/regress/<target>/ and
 * fuzz/corpus/<target>/ goes through LLVMFuzzerTestOneInput once, after
 * LLVMFuzzerInitialize when the target has one. A target reports a broken
 * invariant by aborting and the sanitizers catch memory errors and leaks, so
 * passing means every stored input still runs clean. Both folders must exist
 * and hold an input, so that a lost folder cannot pass silently.
 *
 * Usage: test_fuzz_<target>_replay (FUZZ_ROOT and FUZZ_TARGET are compiled in).
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if !defined(FUZZ_ROOT) || !defined(FUZZ_TARGET)
#error "FUZZ_ROOT must name the fuzz folder and FUZZ_TARGET the target"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t input[1 << 20];

/* Runs the target over every file of dir; returns how many ran. */
static int run_dir(const char *dir)
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
        if (!f) {
            fprintf(stderr, "%s: cannot open\n", path);
            exit(1);
        }
        size_t len = fread(input, 1, sizeof(input), f);
        int bad = ferror(f) || !feof(f);
        fclose(f);
        if (bad) {
            fprintf(stderr, "%s: cannot read whole\n", path);
            exit(1);
        }
        fprintf(stderr, "%s\n", path); /* the last name printed is the culprit */
        if (LLVMFuzzerTestOneInput(input, len) != 0)
            exit(1);
        n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    int r = run_dir(FUZZ_ROOT "/regress/" FUZZ_TARGET);
    int c = run_dir(FUZZ_ROOT "/corpus/" FUZZ_TARGET);
    printf("%s: %d regress, %d corpus inputs ok\n", FUZZ_TARGET, r, c);
    return r > 0 && c > 0 ? 0 : 1;
}
