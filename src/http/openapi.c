#include "http/openapi.h"

#include <stdio.h>
#include <string.h>

#include "http/router.h"

/* Top-level fields of request and response bodies, as "name:type" separated
 * by commas; "!" after the type marks a required field; a leading "201 "
 * names the success status and a leading "[] " makes the body an array of
 * such objects.  Types are JSON Schema's.  Routes without an entry answer
 * {"type": "object"} (or nothing, for 204s). */
typedef struct body_fields {
    const char *method;
    const char *path;
    const char *request;
    const char *response;
    const char *query; /* query parameters, "name:type" as above ("!" = required) */
} body_fields;

static const body_fields fields[] = {
    {"GET", "/api/health", NULL, "status:string!,version:string!,channel:string!,schema:object,checks:object,warnings:array"},
    {"GET", "/api/version", NULL,
     "version:string!,channel:string!,commit_sha:string!,tag:string,image_tag:string,schema_version:integer!,"
     "built_at:string,started_at:string,deployed_at:string"},
    {"POST", "/auth/bootstrap", "email:string!,password:string!,name:string",
     "access_token:string!,token_type:string!,user_id:string!,email:string!,role:string!"},
    {"POST", "/auth/token", "email:string!,password:string!",
     "access_token:string!,token_type:string!,user_id:string!,email:string!,role:string!"},
    {"GET", "/api/me", NULL, "id:string!,email:string!,name:string,is_admin:boolean!,groups:array"},
    {"GET", "/api/catalog/tables", NULL, "tables:array!,count:integer!"},
    {"GET", "/api/catalog/tables/{id}", NULL,
     "id:string!,name:string,description:string,source_type:string,query_mode:string,rows:integer,size_bytes:integer,"
     "last_sync:string,columns:array!"},
    {"POST", "/api/query", "sql:string!,limit:integer,format:string",
     "columns:array!,types:array!,rows:array!,row_count:integer!,truncated:boolean!,elapsed_ms:number"},
    {"POST", "/api/sync/trigger", NULL, "status:string!,run_id:string!,tables:array,message:string"},
    {"GET", "/api/sync/status/{run_id}", NULL, "run_id:string!,state:string!,started_at:string,finished_at:string,tables:array!"},
    {"GET", "/api/sync/status", NULL, "tables:array!,collisions:array!"},
    {"GET", "/api/sync/manifest", NULL, "tables:object!,count:integer!,server_time:string!"},
    {"POST", "/api/admin/register-table",
     "name:string!,source_type:string,bucket:string,source_table:string,source_query:string,query_mode:string,"
     "sync_schedule:string,description:string,primary_key:array,folder:string,sync_strategy:string,profile_after_sync:boolean,"
     "incremental_window_days:integer,where_filters:array,partition_by:string,partition_granularity:string,"
     "initial_load_chunk_days:integer",
     "201 id:string!,name:string!,status:string!"},
    {"GET", "/api/admin/registry", NULL, "tables:array!,count:integer!"},
    {"POST", "/api/admin/configure",
     "data_source:string!,instance_name:string,postgres_dsn:string,postgres_host:string,postgres_port:integer,"
     "postgres_database:string,postgres_user:string,postgres_password:string,postgres_sslmode:string,"
     "keboola_url:string,keboola_token:string",
     "status:string!,data_source:string!,connection:string!,saved:object,verified:object,next:string"},
    {"GET", "/api/admin/configure", NULL,
     "data_source:string!,implied_by_environment:boolean!,configurable:array!,not_in_this_build:array,sources:array!"},
    {"GET", "/api/admin/discover-tables", NULL, "source:string!,tables:array!,count:integer!"},
    {"POST", "/api/admin/discover-and-register", "query_mode:string,schemas:array,tables:array,sync_schedule:string",
     "source:string!,registered:integer!,skipped:integer!,errors:integer!,tables:array!,skipped_tables:array,"
     "error_details:array"},
    {"POST", "/api/upload/sessions", NULL, "201 status:string!,file:string!,size_bytes:integer!", "name:string"},
    /* The same options may come as multipart form fields; docs/uploads.md describes each. */
    {"POST", "/api/upload/tables", NULL, "201 table:object!,replaced:boolean!,warning:string",
     "name:string,format:string,description:string,delimiter:string,quote:string,escape:string,header:boolean,"
     "decimal_separator:string,thousands_separator:string,types:string,all_text:boolean,sample_size:integer"},
    {"GET", "/api/catalog/tables/{id}/sample", NULL, "columns:array!,types:array!,rows:array!"},
    {"GET", "/api/health/detailed", NULL, "status:string!,version:string!,channel:string!,schema:object,checks:object!"},
    {"PUT", "/api/admin/registry/{id}",
     "source_type:string,bucket:string,source_table:string,source_query:string,query_mode:string,sync_schedule:string,"
     "description:string,primary_key:array,folder:string,sync_strategy:string,profile_after_sync:boolean,"
     "incremental_window_days:integer,where_filters:array,partition_by:string,partition_granularity:string,"
     "initial_load_chunk_days:integer",
     "id:string!,updated:array!"},
    {"POST", "/api/admin/register-table/precheck",
     "name:string!,source_type:string,bucket:string,source_table:string,source_query:string,query_mode:string,"
     "sync_schedule:string,description:string",
     "ok:boolean!,table:object!"},
    {"POST", "/auth/tokens", "name:string!,expires_in_days:integer,ttl_seconds:integer",
     "201 id:string!,name:string!,prefix:string!,created_at:string!,expires_at:string,token:string!"},
    {"GET", "/auth/tokens", NULL,
     "[] id:string!,name:string!,prefix:string!,created_at:string!,expires_at:string,last_used_at:string,"
     "revoked_at:string"},
    {"GET", "/api/users", NULL,
     "[] id:string!,email:string!,name:string,role:string!,is_admin:boolean!,groups:array!,active:boolean!,"
     "created_at:string"},
    {"POST", "/api/users", "email:string!,name:string,password:string",
     "201 id:string!,email:string!,name:string,role:string!,is_admin:boolean!,groups:array!,active:boolean!"},
    {"GET", "/api/admin/groups", NULL,
     "[] id:string!,name:string!,description:string,is_system:boolean!,member_count:integer!,grant_count:integer!"},
    {"POST", "/api/admin/groups", "name:string!,description:string",
     "201 id:string!,name:string!,description:string,is_system:boolean!"},
    {"GET", "/api/admin/grants", NULL,
     "[] id:string!,group_id:string!,group_name:string!,resource_type:string!,resource_id:string!,assigned_at:string"},
    {"POST", "/api/admin/grants", "group_id:string!,resource_type:string!,resource_id:string!",
     "201 id:string!,group_id:string!,group_name:string!,resource_type:string!,resource_id:string!"},
    {"GET", "/api/admin/audit", NULL, "items:array!,total:integer!,limit:integer!,offset:integer!"},
};

static const body_fields *find_fields(const char *method, const char *path)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(fields[i].method, method) == 0 && strcmp(fields[i].path, path) == 0)
            return &fields[i];
    return NULL;
}

/* "a:string!,b:integer" -> {"type": "object", "properties": {...}, "required": [...]} */
static json_t *object_schema(const char *spec)
{
    json_t *properties = json_object(), *required = json_array();
    char copy[2048], *save = NULL;
    snprintf(copy, sizeof copy, "%s", spec);
    for (char *field = strtok_r(copy, ",", &save); field != NULL; field = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(field, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        char *type = colon + 1;
        size_t len = strlen(type);
        if (len > 0 && type[len - 1] == '!') {
            type[len - 1] = '\0';
            json_array_append_new(required, json_string(field));
        }
        json_object_set_new(properties, field, json_pack("{s:s}", "type", type));
    }
    json_t *schema = json_pack("{s:s, s:o}", "type", "object", "properties", properties);
    if (json_array_size(required) > 0)
        json_object_set_new(schema, "required", required);
    else
        json_decref(required);
    return schema;
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

static json_t *operation(const route *r)
{
    const body_fields *body = find_fields(r->method, r->pattern);
    json_t *op = json_pack("{s:s, s:s, s:b}", "summary", r->summary ? r->summary : "", "x-access",
                           route_access_name(r->access), "x-interactive", (r->flags & ROUTE_INTERACTIVE) != 0);
    json_t *parameters = json_array();
    for (const char *p = strchr(r->pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        if (end == NULL)
            break;
        json_array_append_new(parameters, json_pack("{s:s#, s:s, s:b, s:{s:s}}", "name", p + 1, (int)(end - p - 1),
                                                     "in", "path", "required", true, "schema", "type", "string"));
    }
    char query[1024], *save = NULL;
    snprintf(query, sizeof query, "%s", body && body->query ? body->query : "");
    for (char *p = strtok_r(query, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(p, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        size_t len = strlen(colon + 1);
        bool required = len > 0 && colon[len] == '!';
        if (required)
            colon[len] = '\0';
        json_array_append_new(parameters, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", p, "in", "query", "required",
                                                     required, "schema", "type", colon + 1));
    }
    if (json_array_size(parameters) > 0)
        json_object_set_new(op, "parameters", parameters);
    else
        json_decref(parameters);
    if (r->access != ROUTE_PUBLIC && r->access != ROUTE_ANONYMOUS)
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
    if (body != NULL && body->request != NULL)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:o}", "required", true, "content", json_content(object_schema(body->request))));
    const char *status = "200", *spec = body ? body->response : NULL;
    char code[4] = "";
    if (spec != NULL && spec[0] >= '1' && spec[0] <= '5' && spec[3] == ' ') {
        snprintf(code, sizeof code, "%.3s", spec);
        status = code;
        spec += 4;
    }
    bool array = spec != NULL && strncmp(spec, "[] ", 3) == 0;
    json_t *schema = spec == NULL ? json_pack("{s:s}", "type", "object")
                     : array      ? json_pack("{s:s, s:o}", "type", "array", "items", object_schema(spec + 3))
                                  : object_schema(spec);
    json_t *response = json_pack("{s:s}", "description", "success");
    if (strcmp(r->method, "DELETE") != 0 || spec != NULL)
        json_object_set_new(response, "content", json_content(schema));
    else
        json_decref(schema);
    json_object_set_new(op, "responses", json_pack("{s:o}", status, response));
    return op;
}

json_t *openapi_document(void)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < http_route_count; i++) {
        const route *r = &http_routes[i];
        json_t *item = json_object_get(paths, r->pattern);
        if (item == NULL)
            json_object_set_new(paths, r->pattern, item = json_object());
        char method[16];
        size_t n = 0;
        for (; r->method[n] && n + 1 < sizeof method; n++)
            method[n] = (char)(r->method[n] | 0x20); /* OpenAPI spells methods in lower case */
        method[n] = '\0';
        json_object_set_new(item, method, operation(r));
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:{s:{s:s, s:s}}}}", "openapi", "3.0.3", "info", "title",
                     "Agnes", "version", "1", "description",
                     "Generated from the route table by `agnes openapi`; do not edit by hand.", "paths", paths,
                     "components", "securitySchemes", "bearer", "type", "http", "scheme", "bearer");
}
