/* Shared helpers for the cmocka unit tests: temp dirs and small file ops. */
#ifndef AGNES_TEST_HELPERS_H
#define AGNES_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under /tmp; the caller removes it with remove_tree. */
static inline char *make_temp_dir(void)
{
    char *dir = strdup("/tmp/agnes-unit-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static inline void remove_tree(char *dir)
{
    char command[4200];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    assert_int_equal(system(command), 0);
    free(dir);
}

static inline void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static inline char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Clear every variable the runtime reads, so tests start from defaults. */
static inline void clear_agnes_env(void)
{
    static const char *const names[] = {"DATA_DIR", "STATE_DIR", "CONFIG_DIR", "CONNECTORS_DIR", "AGNES_LISTEN",
                                        "AGNES_THREADS", "JWT_SECRET_KEY", "SESSION_SECRET", "AGNES_STATE_MOUNT",
                                        "AGNES_VERSION", "RELEASE_CHANNEL", "AGNES_RELEASE_INDEX", "LOG_LEVEL",
                                        "AGNES_INSTANCE_NAME", "AGNES_MAX_BODY_BYTES", "TEST_EXPANDED"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
}

#endif
