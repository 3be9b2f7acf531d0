/* Unit tests: the .tar.gz format of backups (core/archive.h) and what health says about them (store/backup.h). */
#include "test_helpers.h"

#include <fcntl.h>
#include <time.h>

#include "core/archive.h"
#include "store/backup.h"

static void test_an_archive_reads_back_what_was_written_and_tar_agrees(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    char path[4200], big[4200], command[8600];
    snprintf(path, sizeof path, "%s/a.tar.gz", dir);
    snprintf(big, sizeof big, "%s/big.bin", dir);
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    for (int i = 0; i < 100000; i++) /* not a multiple of 512: the padding is exercised */
        fprintf(f, "%d,", i);
    assert_int_equal(fclose(f), 0);
    struct stat st;
    assert_int_equal(stat(big, &st), 0);

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    archive_writer writer;
    agnes_error err;
    char sha[65];
    uint64_t size = 0;
    assert_int_equal(archive_writer_open_fd(&writer, fd, &err), AGNES_OK);
    assert_int_equal(archive_write_bytes(&writer, "MANIFEST.json", 0600, 1700000000, "{}", 2, &err), AGNES_OK);
    assert_int_equal(archive_write_directory(&writer, "certs", 0700, 1700000000, &err), AGNES_OK);
    assert_int_equal(archive_write_path(&writer, "certs/big.bin", 0644, 1700000000, big, &size, sha, &err), AGNES_OK);
    assert_int_equal(archive_write_bytes(&writer, "empty", 0600, 1700000000, "", 0, &err), AGNES_OK);
    assert_int_equal(archive_write_bytes(&writer, "x/../../too-long-name-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                                         0600, 0, "", 0, &err),
                     AGNES_ERR_INVALID);
    assert_int_equal(archive_writer_finish(&writer, &err), AGNES_OK);
    assert_int_equal(close(fd), 0);
    assert_int_equal(size, (uint64_t)st.st_size);
    assert_int_equal(strlen(sha), 64);

    /* GNU tar reads it: the format is the one every host has. */
    snprintf(command, sizeof command, "test \"$(tar -tzf '%s' | tr '\\n' ' ')\" = 'MANIFEST.json certs certs/big.bin empty '",
             path);
    assert_int_equal(system(command), 0);
    snprintf(command, sizeof command, "tar -xzf '%s' -C '%s' certs/big.bin -O | cmp -s - '%s'", path, dir, big);
    assert_int_equal(system(command), 0);

    archive_reader reader;
    archive_entry entry;
    assert_int_equal(archive_reader_open(&reader, path, &err), AGNES_OK);
    assert_int_equal(archive_reader_next(&reader, &entry, &err), 1);
    assert_string_equal(entry.name, "MANIFEST.json");
    char buf[16];
    assert_int_equal(archive_reader_read(&reader, buf, sizeof buf, &err), 2);
    assert_int_equal(archive_reader_next(&reader, &entry, &err), 1);
    assert_string_equal(entry.name, "certs");
    assert_int_equal(entry.type, ARCHIVE_DIRECTORY);
    assert_int_equal(entry.mode, 0700);
    assert_int_equal(archive_reader_next(&reader, &entry, &err), 1);
    assert_string_equal(entry.name, "certs/big.bin");
    assert_int_equal(entry.size, (uint64_t)st.st_size);
    assert_int_equal(entry.mtime, 1700000000);
    /* Skipped without reading: next() moves over the data and its padding. */
    assert_int_equal(archive_reader_next(&reader, &entry, &err), 1);
    assert_string_equal(entry.name, "empty");
    assert_int_equal(entry.size, 0);
    assert_int_equal(archive_reader_next(&reader, &entry, &err), 0);
    archive_reader_close(&reader);

    /* Cut short: the reader says so instead of returning a shorter archive. */
    assert_int_equal(truncate(path, 200), 0);
    assert_int_equal(archive_reader_open(&reader, path, &err), AGNES_OK);
    int rc;
    while ((rc = archive_reader_next(&reader, &entry, &err)) > 0)
        ;
    assert_int_equal(rc, AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "not a complete .tar.gz"));
    archive_reader_close(&reader);
    remove_tree(dir);
}

static void test_health_warns_after_two_intervals_or_a_failure(void **unused)
{
    (void)unused;
    backup_status status;
    agnes_error err;
    char warning[2048];
    assert_int_equal(backup_status_init(&status, &err), AGNES_OK);
    json_t *details = backup_status_json(&status, 1000, warning, sizeof warning);
    assert_false(json_is_true(json_object_get(details, "enabled")));
    assert_string_equal(warning, "");
    json_decref(details);

    status.enabled = true;
    snprintf(status.dir, sizeof status.dir, "/data/backups");
    status.interval_seconds = 3600;
    status.keep = 7;
    status.watch_since = 1000;
    /* No archive yet, server up for less than two intervals: fine. */
    details = backup_status_json(&status, 1000 + 7000, warning, sizeof warning);
    assert_string_equal(warning, "");
    assert_true(json_is_null(json_object_get(details, "last_backup_at")));
    json_decref(details);
    /* ...and after two intervals without one, a warning. */
    details = backup_status_json(&status, 1000 + 7300, warning, sizeof warning);
    assert_non_null(strstr(warning, "No backup of the state tier has been written to /data/backups"));
    json_decref(details);
    /* The newest archive's age is what counts once there is one. */
    status.last_at = 100000;
    snprintf(status.last_path, sizeof status.last_path, "/data/backups/agnes-backup-x.tar.gz");
    details = backup_status_json(&status, 100000 + 7199, warning, sizeof warning);
    assert_string_equal(warning, "");
    assert_int_equal(json_integer_value(json_object_get(details, "last_backup_age_seconds")), 7199);
    json_decref(details);
    details = backup_status_json(&status, 100000 + 7201, warning, sizeof warning);
    assert_non_null(strstr(warning, "is 7201 seconds old, more than two intervals"));
    json_decref(details);
    /* A failed attempt is news at once. */
    snprintf(status.last_error, sizeof status.last_error, "disk full");
    details = backup_status_json(&status, 100010, warning, sizeof warning);
    assert_non_null(strstr(warning, "failed: disk full"));
    assert_string_equal(json_string_value(json_object_get(details, "last_error")), "disk full");
    json_decref(details);
    backup_status_free(&status);
}

static void test_retention_and_the_sweep_touch_only_their_own_names(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    const char *names[] = {"agnes-backup-20261101T000000Z.tar.gz", "agnes-backup-20261103T000000Z.tar.gz",
                           "agnes-backup-20261102T000000Z.tar.gz", "agnes-backup-20261104T000000Z.tar.gz",
                           "mine.tar.gz", "agnes-backup-latest.tar.gz",
                           ".agnes-backup-20261104T000000Z.tar.gz.partial-abc123"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        write_text(dir, names[i], "x");
    int64_t newest = 0;
    char path[4200];
    assert_int_equal(backup_newest(dir, &newest, path, sizeof path), 0);
    assert_non_null(strstr(path, "agnes-backup-20261104T000000Z.tar.gz"));
    assert_int_equal(backup_prune(dir, 2), 2);
    char check[4200];
    snprintf(check, sizeof check, "%s/agnes-backup-20261101T000000Z.tar.gz", dir);
    assert_false(access(check, F_OK) == 0);
    snprintf(check, sizeof check, "%s/agnes-backup-20261103T000000Z.tar.gz", dir);
    assert_true(access(check, F_OK) == 0);
    snprintf(check, sizeof check, "%s/mine.tar.gz", dir);
    assert_true(access(check, F_OK) == 0);
    snprintf(check, sizeof check, "%s/agnes-backup-latest.tar.gz", dir);
    assert_true(access(check, F_OK) == 0);
    /* A fresh partial may belong to a backup in progress; an old one is swept. */
    assert_int_equal(backup_sweep_partials(dir, 3600), 0);
    assert_int_equal(backup_sweep_partials(dir, 0), 1);
    char final_path[4200], partial[4200];
    snprintf(final_path, sizeof final_path, "%s/out.tar.gz", dir);
    int fd = backup_create_partial(final_path, partial, sizeof partial, &(agnes_error){0});
    assert_true(fd >= 0);
    assert_non_null(strstr(partial, "/.out.tar.gz.partial-"));
    agnes_error err;
    assert_int_equal(backup_publish(fd, partial, final_path, &err), AGNES_OK);
    close(fd);
    fd = backup_create_partial(final_path, partial, sizeof partial, &err);
    assert_int_equal(backup_publish(fd, partial, final_path, &err), AGNES_ERR_STATE); /* never overwritten */
    close(fd);
    unlink(partial);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_archive_reads_back_what_was_written_and_tar_agrees),
        cmocka_unit_test(test_health_warns_after_two_intervals_or_a_failure),
        cmocka_unit_test(test_retention_and_the_sweep_touch_only_their_own_names),
    };
    return cmocka_run_group_tests_name("backup", tests, NULL, NULL);
}
