#include "engine/demo.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
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
    char dir[AGNES_PATH_MAX], data[AGNES_PATH_MAX], scratch[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX],
        final[AGNES_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/extracts/demo", paths->data_dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(scratch, sizeof scratch, "%s/scratch.duckdb", dir);
    snprintf(tmp, sizeof tmp, "%s/extract.duckdb.tmp", dir);
    snprintf(final, sizeof final, "%s/extract.duckdb", dir);
    if (util_mkdir_p(data, 0755, err))
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
