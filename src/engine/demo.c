#include "engine/demo.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/orchestrator.h"
#include "store/duck.h"

/* %1$s is the data directory of the demo source. */
static const char demo_sql[] =
    "COPY (SELECT i AS customer_id, 'Customer ' || i AS name,"
    "  ['Prague', 'Brno', 'Berlin', 'Vienna', 'Warsaw', 'Lisbon'][1 + (hash(i * 7) %% 6)::INT] AS city,"
    "  DATE '2024-01-01' + (hash(i * 13) %% 600)::INT AS signed_up"
    "  FROM range(1, 201) t(i)) TO '%1$s/customers.parquet' (FORMAT PARQUET);"
    "COPY (SELECT i AS product_id, ['Laptop', 'Monitor', 'Keyboard', 'Mouse', 'Headset', 'Dock', 'Webcam',"
    "  'Chair', 'Desk', 'Lamp'][1 + ((i - 1) %% 10)::INT] || ' ' || ((i - 1) // 10 + 1) AS name,"
    "  ['hardware', 'accessories', 'furniture'][1 + (hash(i) %% 3)::INT] AS category,"
    "  round(10 + (hash(i * 31) %% 190000) / 100.0, 2)::DECIMAL(10, 2) AS price"
    "  FROM range(1, 51) t(i)) TO '%1$s/products.parquet' (FORMAT PARQUET);"
    "COPY (SELECT i AS order_id, 1 + (hash(i * 3) %% 200)::INT AS customer_id,"
    "  1 + (hash(i * 5) %% 50)::INT AS product_id, 1 + (hash(i * 11) %% 4)::INT AS quantity,"
    "  TIMESTAMP '2025-01-01' + to_minutes((hash(i * 17) %% 525600)::BIGINT) AS ordered_at,"
    "  ['paid', 'paid', 'paid', 'shipped', 'refunded'][1 + (hash(i * 19) %% 5)::INT] AS status"
    "  FROM range(1, 5001) t(i)) TO '%1$s/orders.parquet' (FORMAT PARQUET);";

static const char demo_meta_sql[] =
    CONTRACT_META_DDL ";"
    "CREATE VIEW customers AS SELECT * FROM read_parquet('%1$s/customers.parquet');"
    "CREATE VIEW products AS SELECT * FROM read_parquet('%1$s/products.parquet');"
    "CREATE VIEW orders AS SELECT * FROM read_parquet('%1$s/orders.parquet');"
    "INSERT INTO _meta VALUES"
    " ('customers', 'Demo: 200 customers with city and sign-up date', (SELECT count(*) FROM customers),"
    "  (SELECT sum(total_compressed_size) FROM parquet_metadata('%1$s/customers.parquet')),"
    "  current_timestamp::TIMESTAMP, 'local'),"
    " ('products', 'Demo: 50 products with category and price', (SELECT count(*) FROM products),"
    "  (SELECT sum(total_compressed_size) FROM parquet_metadata('%1$s/products.parquet')),"
    "  current_timestamp::TIMESTAMP, 'local'),"
    " ('orders', 'Demo: 5,000 orders in 2025 (customer, product, quantity, status)', (SELECT count(*) FROM orders),"
    "  (SELECT sum(total_compressed_size) FROM parquet_metadata('%1$s/orders.parquet')),"
    "  current_timestamp::TIMESTAMP, 'local');";

static int run_sql(const char *db_path, const char *template, const char *data_dir, agnes_error *err)
{
    char sql[8192];
    snprintf(sql, sizeof sql, template, data_dir);
    duck_session session;
    if (duck_session_open(&session, db_path, false, err))
        return err->code;
    int rc = duck_exec(session.connection, sql, err);
    if (rc == AGNES_OK)
        rc = duck_exec(session.connection, "CHECKPOINT", err);
    duck_session_close(&session);
    return rc;
}

/* extracts/demo/<name> ("" for the directory itself). */
static void demo_file(const agnes_paths *paths, const char *name, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/extracts/" DEMO_SOURCE_NAME "%s%s", paths->data_dir, name[0] ? "/" : "", name);
}

/* extracts/.demo-retired: beside the sources, so removing the demo's directory keeps it. */
static void retired_marker(const agnes_paths *paths, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/extracts/.demo-retired", paths->data_dir);
}

bool demo_present(const agnes_paths *paths)
{
    char marker[AGNES_PATH_MAX];
    demo_file(paths, ".agnes-demo", marker, sizeof marker);
    return util_file_exists(marker);
}

static bool demo_was_retired(const agnes_paths *paths)
{
    char marker[AGNES_PATH_MAX];
    retired_marker(paths, marker, sizeof marker);
    return util_file_exists(marker);
}

bool demo_table_state_is_stale(const agnes_paths *paths, const char *table_id, const char *last_sync)
{
    static const char *const seeded[] = {"customers", "products", "orders"};
    bool demo_name = false;
    for (size_t i = 0; i < sizeof seeded / sizeof seeded[0]; i++)
        demo_name = demo_name || (table_id != NULL && strcmp(table_id, seeded[i]) == 0);
    char marker[AGNES_PATH_MAX], retired_at[32];
    struct stat st;
    retired_marker(paths, marker, sizeof marker);
    if (!demo_name || last_sync == NULL || stat(marker, &st) != 0)
        return false;
    util_utc_iso(st.st_mtime, retired_at);
    return strcmp(last_sync, retired_at) < 0; /* both YYYY-MM-DDTHH:MM:SSZ */
}

int demo_seed_if_empty(const agnes_paths *paths, bool *created, agnes_error *err)
{
    json_t *sources = NULL;
    *created = false;
    if (orchestrator_list_sources(paths, &sources, err))
        return err->code;
    size_t existing = json_array_size(sources);
    json_decref(sources);
    if (existing > 0)
        return AGNES_OK;
    if (demo_was_retired(paths)) {
        log_info("msg=\"demo source not seeded: it was removed before\" marker=%s/extracts/.demo-retired",
                 paths->data_dir);
        return AGNES_OK;
    }
    char dir[AGNES_PATH_MAX], data[AGNES_PATH_MAX], scratch[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX],
        final[AGNES_PATH_MAX], marker[AGNES_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/extracts/" DEMO_SOURCE_NAME, paths->data_dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(scratch, sizeof scratch, "%s/scratch.duckdb", dir);
    snprintf(tmp, sizeof tmp, "%s/extract.duckdb.tmp", dir);
    snprintf(final, sizeof final, "%s/extract.duckdb", dir);
    snprintf(marker, sizeof marker, "%s/.agnes-demo", dir);
    if (util_mkdir_p(data, 0755, err))
        return err->code;
    static const char why[] = "written by agnes serve (demo.enabled): removed when a real source publishes, or by "
                              "DELETE /api/admin/demo\n";
    if (util_write_file_atomic(marker, why, strlen(why), 0644, err))
        return err->code;
    unlink(scratch);
    unlink(tmp);
    /* Data first, then the extract as .tmp renamed into place (the contract's rule). */
    int rc = run_sql(scratch, demo_sql, data, err);
    unlink(scratch);
    if (rc == AGNES_OK)
        rc = run_sql(tmp, demo_meta_sql, data, err);
    if (rc == AGNES_OK && rename(tmp, final) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc != AGNES_OK) {
        unlink(tmp);
        return agnes_error_wrap(err, "writing the demo source (set AGNES_DEMO=0 to skip it)");
    }
    *created = true;
    log_info("msg=\"seeded the demo source\" path=%s tables=\"customers, products, orders\"", dir);
    return AGNES_OK;
}

/* The demo holds no name (the orchestrator does not claim for it); claims
 * an older version recorded for it are dropped. */
static void release_claims(system_db *db)
{
    const char *params[] = {DEMO_SOURCE_NAME};
    agnes_error err;
    if (db == NULL)
        return;
    duckdb_connection writer = system_db_writer_acquire(db);
    if (duck_exec_params(writer, "DELETE FROM view_ownership WHERE source_name = $1", params, 1, &err))
        log_warn("msg=\"cannot release the demo's table names\" detail=\"%s\"", err.message);
    system_db_writer_release(db);
}

/* The demo's tables leave sync_state and sync_history with it: left there,
 * /api/sync/status kept listing customers/orders/products as ok (and
 * /admin/sync counted them) long after their data was gone.  A real source
 * publishing one of these names is recorded again by the rebuild that
 * follows the retirement. */
static void forget_states(system_db *db, const json_t *tables)
{
    if (db == NULL)
        return;
    duckdb_connection writer = system_db_writer_acquire(db);
    size_t i;
    json_t *name;
    json_array_foreach(tables, i, name) {
        const char *params[] = {json_string_value(name)};
        agnes_error err;
        if (duck_exec_params(writer, "DELETE FROM sync_state WHERE table_id = $1", params, 1, &err) ||
            duck_exec_params(writer, "DELETE FROM sync_history WHERE table_id = $1", params, 1, &err))
            log_warn("msg=\"cannot forget a demo table's sync state\" table=%s detail=\"%s\"", params[0],
                     err.message);
    }
    system_db_writer_release(db);
}

int demo_retire(const agnes_paths *paths, system_db *db, json_t **tables, agnes_error *err)
{
    char dir[AGNES_PATH_MAX], extract[AGNES_PATH_MAX], retired[AGNES_PATH_MAX];
    if (tables != NULL)
        *tables = json_array();
    if (!demo_present(paths))
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                               "There is no demo source to remove (it was removed already, or never seeded).");
    demo_file(paths, "", dir, sizeof dir);
    demo_file(paths, "extract.duckdb", extract, sizeof extract);
    retired_marker(paths, retired, sizeof retired);
    json_t *names = json_array();
    {
        duck_session session;
        agnes_error ignored;
        json_t *rows = NULL;
        if (duck_session_open(&session, extract, true, &ignored) == AGNES_OK) {
            duck_query_json(session.connection, "SELECT table_name FROM _meta ORDER BY table_name", NULL, 0, &rows,
                            &ignored);
            duck_session_close(&session);
        }
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
            json_array_append(names, json_object_get(row, "table_name"));
        json_decref(rows);
    }
    if (tables != NULL)
        json_array_extend(*tables, names);
    int rc = AGNES_OK;
    /* The marker first: a crash half-way must not bring the demo back at the next start. */
    static const char why[] = "the demo source was removed; agnes serve does not seed it again while this file exists\n";
    if (util_write_file_atomic(retired, why, strlen(why), 0644, err)) {
        rc = err->code;
        goto done;
    }
    /* The extract goes first (one rename-free unlink): the catalog stops seeing the source at once. */
    if (unlink(extract) != 0 && errno != ENOENT) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot remove %s: %s", extract, strerror(errno));
        goto done;
    }
    if ((rc = util_remove_tree(dir, err)) != AGNES_OK)
        goto done;
    release_claims(db);
    forget_states(db, names);
    log_info("msg=\"removed the demo source\" path=%s", dir);
done:
    json_decref(names);
    return rc;
}

bool demo_yield_to_real_sources(const agnes_paths *paths, system_db *db)
{
    json_t *sources = NULL;
    agnes_error err;
    if (!demo_present(paths) || orchestrator_list_sources(paths, &sources, &err) != AGNES_OK)
        return false;
    release_claims(db);
    const char *real = NULL;
    size_t i;
    json_t *name;
    json_array_foreach(sources, i, name)
        if (strcmp(json_string_value(name), DEMO_SOURCE_NAME) != 0 && real == NULL)
            real = json_string_value(name);
    bool retired = false;
    if (real != NULL) {
        log_info("msg=\"a real source publishes: the demo source makes way\" source=%s", real);
        retired = demo_retire(paths, db, NULL, &err) == AGNES_OK;
        if (!retired)
            log_warn("msg=\"cannot remove the demo source\" detail=\"%s\"", err.message);
    }
    json_decref(sources);
    return retired;
}
