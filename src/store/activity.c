#include "store/activity.h"

#include "store/duck.h"

int activity_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err)
{
    const char *params[] = {user_id};
    json_t *last = NULL;
    *out = NULL;
    if (duck_query_json(conn,
                        "SELECT timestamp AS at, json_extract_string(params, '$.client') AS client,"
                        " CAST(json_extract(params, '$.tables') AS BIGINT) AS tables FROM audit_log"
                        " WHERE user_id = $1 AND action = 'data.pull' ORDER BY timestamp DESC LIMIT 1",
                        params, 1, &last, err) != AGNES_OK)
        return err->code;
    json_t *first = json_array_get(last, 0);
    *out = json_pack("{s:O}", "last_pull", first ? first : json_null());
    json_decref(last);
    return *out ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}
