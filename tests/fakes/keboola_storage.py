"""A local fake of the Keboola Storage API v2 and of the three clouds' file storage behind its exports.

It answers what a Storage client meets (Keboola's Storage API documentation; the official PHP, Python and
Go clients): every call authenticated by X-StorageApi-Token; bare JSON arrays for lists, objects for the
rest; ids as strings in some places and numbers in others; [] for an empty map (bucketPermissions,
columnMetadata, metadata); errors as {"error", "code", "exceptionId"}; 503 maintenance and 429 with
Retry-After; export-async answering 202 with a job that moves waiting -> processing -> success|error; file
detail with federationToken=1 carrying AWS STS credentials, a GCS bearer token or an Azure SAS; a sliced
export as a signed manifest of s3:// | gs:// | azure:// entries, listed out of order, each slice gzip
CSV without a header row, every value quoted.

The cloud side checks what the real one would: S3 slices must carry a valid AWS Signature V4 made with the
file's STS credentials (x-amz-security-token included), GCS slices the bearer token, Azure slices and every
signed URL the signature the fake issued; credentials can be expired mid-download.

One HTTPS listener serves every host (dispatch on Host): the stack at https://localhost:<port>, and
s3.amazonaws.com, kbc-sapi-files.s3.<region>.amazonaws.com, storage.googleapis.com and
<account>.blob.core.windows.net, which the client reaches through its connect-to setting
(`fake.connect_to`). Every request is recorded in `fake.requests` so tests can assert what the client asked.

Use from a test:  fake = FakeKeboola(workdir).start(); fake.add_table(...); ...; fake.stop()
Standalone (bench): python3 keboola_storage.py CONFIG.json   (see main()).
"""
import csv
import datetime
import gzip
import hashlib
import hmac
import io
import itertools
import json
import os
import random
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

S3_BUCKET = "kbc-sapi-files"
GCS_BUCKET = "kbc-sapi-files-gcs"
AZURE_ACCOUNT = "kbcfiles"
AZURE_CONTAINER = "exp-15"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
OFFSET = datetime.timezone(datetime.timedelta(hours=1))  # Storage prints local offsets without a colon


def storage_time(ts):
    return datetime.datetime.fromtimestamp(ts, OFFSET).strftime("%Y-%m-%dT%H:%M:%S%z")


def make_pki(directory):
    """A CA and a certificate for every host the fake answers; returns (ca_pem, cert_pem, key_pem)."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)

    def openssl(*args):
        out = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Fake Keboola CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    names = ["DNS:localhost", "IP:127.0.0.1", "DNS:s3.amazonaws.com", "DNS:*.s3.us-east-1.amazonaws.com",
             "DNS:*.s3.eu-central-1.amazonaws.com", "DNS:storage.googleapis.com", "DNS:*.blob.core.windows.net"]
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=" + ",".join(names) + "\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "7",
            "-days", "1", "-extfile", "ext.cnf", "-out", "server.pem")
    return (os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem"),
            os.path.join(directory, "server.key"))


def csv_bytes(rows):
    """RFC 4180, every value quoted, no header (Storage's export format); None is ""."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else str(v) for v in row])
    return out.getvalue().encode()


class Table:
    def __init__(self, table_id, columns, types=None, primary_key=None, descriptions=None, description=None,
                 typed=False, alias=False, lengths=None, native=None, created=None, sliced=True, slice_files=None,
                 provider_of_types="user"):
        self.id = table_id
        self.bucket_id, self.name = table_id.rsplit(".", 1)
        self.columns = list(columns)
        self.types = dict(types or {})
        self.lengths = dict(lengths or {})
        self.native = dict(native or {})
        self.primary_key = list(primary_key or [])
        self.descriptions = dict(descriptions or {})
        self.description = description
        self.typed = typed
        self.alias = alias
        self.created = created if created is not None else time.time() - 400 * 86400
        self.sliced = sliced
        self.slice_files = slice_files  # bench: ready gzip slices on disk, exported as they are
        self.provider_of_types = provider_of_types
        self.rows = []  # [dict(column -> value, _timestamp=unix)]
        self.last_change = self.created

    def column_metadata(self):
        meta = {}
        for c in self.columns:
            entries = []
            if c in self.types:
                entries.append({"id": str(100 + len(entries)), "key": "KBC.datatype.basetype", "value": self.types[c],
                                "provider": self.provider_of_types, "timestamp": storage_time(self.created)})
                # a lower-priority guess that must lose against the admin's own type
                entries.append({"id": "9", "key": "KBC.datatype.basetype", "value": "STRING", "provider": "storage",
                                "timestamp": storage_time(self.created)})
            if c in self.native:
                entries.append({"id": "11", "key": "KBC.datatype.type", "value": self.native[c],
                                "provider": self.provider_of_types, "timestamp": storage_time(self.created)})
            if c in self.lengths:
                entries.append({"id": "12", "key": "KBC.datatype.length", "value": self.lengths[c],
                                "provider": self.provider_of_types, "timestamp": storage_time(self.created)})
            if c in self.descriptions:
                entries.append({"id": "13", "key": "KBC.description", "value": self.descriptions[c],
                                "provider": "user", "timestamp": storage_time(self.created)})
            if entries:
                meta[c] = entries
        return meta or []  # Storage's empty map is []

    def resource(self, fake, include=("columns", "metadata", "columnMetadata", "buckets")):
        bucket = fake.buckets[self.bucket_id]
        body = {
            "uri": f"{fake.url}/v2/storage/tables/{self.id}", "id": self.id, "name": self.name,
            "displayName": self.name, "transactional": False, "primaryKey": self.primary_key,
            "created": storage_time(self.created), "lastImportDate": storage_time(self.last_change),
            "lastChangeDate": storage_time(self.last_change), "rowsCount": len(self.rows) if self.slice_files is None
            else fake.bench_rows, "dataSizeBytes": 1024 * (1 + len(self.rows)), "isAlias": self.alias,
            "isAliasable": True, "isTyped": self.typed, "timestampType": "MANAGED", "tableType": "table",
        }
        if "columns" in include:
            body["columns"] = self.columns
        meta = [{"id": "5", "key": "KBC.description", "value": self.description, "provider": "user",
                 "timestamp": storage_time(self.created)}] if self.description else []
        if "metadata" in include:
            body["metadata"] = meta
        if "columnMetadata" in include:
            body["columnMetadata"] = [] if self.alias else self.column_metadata()
        if self.alias:
            body["sourceTable"] = {"id": "in.c-source." + self.name, "uri": "...",
                                   "project": {"id": 7, "name": "Source project"},
                                   "columnMetadata": self.column_metadata(), "metadata": meta}
        if self.typed:
            body["definition"] = {"primaryKeysNames": self.primary_key, "columns": [
                {"name": c, "definition": {"type": self.native.get(c, "VARCHAR"), "nullable": True,
                                           **({"length": self.lengths[c]} if c in self.lengths else {})},
                 "basetype": self.types.get(c, "STRING")} for c in self.columns]}
        if "buckets" in include:
            body["bucket"] = bucket
        return body


class FakeKeboola:
    def __init__(self, workdir, provider="aws", token=None, region="us-east-1", slices_per_file=3):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.provider = provider
        self.region = region
        self.slices_per_file = slices_per_file
        self.token = token or f"8625-373115-{secrets.token_hex(20)}"
        self.tokens = {self.token: {"id": "373115", "description": "agnes test token", "isMasterToken": False,
                                    "canManageBuckets": False, "canReadAllFileUploads": False,
                                    "bucketPermissions": None}}  # None: read on every bucket
        self.buckets = {}
        self.tables = {}
        self.jobs = {}
        self.files = {}
        self.requests = []
        self.rules = []  # injected answers for the Storage API
        self.slice_rules = []  # injected faults for slice downloads
        self.job_errors = {}  # table id -> (message, code)
        self.job_polls = 2  # polls before a job succeeds
        self.expire_after_slices = None  # slice fetches after which every issued credential expires
        self.slice_fetches = 0
        self.valid_credentials = set()
        self.credentials = {}  # access key id -> (secret, session token)
        self.sign_key = secrets.token_hex(16)
        self.bench_rows = 0
        self.parquet_writer = None  # callable(columns, rows) -> bytes, for fileType=parquet
        self.lock = threading.RLock()
        self.ids = itertools.count(22070936)
        self.file_ids = itertools.count(234)
        self.server = None

    # ---- test controls ------------------------------------------------------------------------------------
    def add_bucket(self, bucket_id, description=""):
        stage, name = bucket_id.split(".", 1)
        self.buckets[bucket_id] = {
            "uri": f"/v2/storage/buckets/{bucket_id}", "id": bucket_id, "name": name,
            "displayName": name[2:] if name.startswith("c-") else name, "stage": stage, "description": description,
            "tables": f"/v2/storage/buckets/{bucket_id}/tables", "backend": "snowflake",
            "created": storage_time(time.time() - 500 * 86400), "lastChangeDate": storage_time(time.time()),
            "isReadOnly": False, "dataSizeBytes": 112128, "rowsCount": 1036, "isMaintenance": False,
            "sharing": None, "linkedBy": [], "isLinkedBucket": False, "color": None, "backendPath": [],
            "metadata": [], "owner": None}

    def add_table(self, table_id, columns, rows=(), **kw):
        bucket = table_id.rsplit(".", 1)[0]
        if bucket not in self.buckets:
            self.add_bucket(bucket)
        table = Table(table_id, columns, **kw)
        now = time.time()
        table.rows = [dict(zip(columns, r), _timestamp=now) for r in rows]
        table.last_change = now
        self.tables[table_id] = table
        return table

    def upsert_rows(self, table_id, rows):
        """Rows changed now: replaced by primary key, or appended."""
        with self.lock:
            table = self.tables[table_id]
            now = time.time()
            key = table.primary_key
            index = {tuple(r[k] for k in key): i for i, r in enumerate(table.rows)} if key else {}
            for r in rows:
                new = dict(zip(table.columns, r), _timestamp=now)
                at = index.get(tuple(new[k] for k in key)) if key else None
                if at is None:
                    table.rows.append(new)
                else:
                    table.rows[at] = new
            table.last_change = now

    def age_rows(self, table_id, seconds):
        """Pretend every row changed `seconds` earlier (moves _timestamp back)."""
        with self.lock:
            for r in self.tables[table_id].rows:
                r["_timestamp"] -= seconds

    def table_rows(self, table_id):
        table = self.tables[table_id]
        return [[r[c] for c in table.columns] for r in table.rows]

    def fail(self, method, path_pattern, status, body=None, headers=None, times=1):
        """The next `times` matching Storage API calls get this answer."""
        self.rules.append({"method": method, "pattern": re.compile(path_pattern), "status": status,
                           "body": body, "headers": headers or {}, "times": times})

    def slice_fault(self, kind, times=1, status=503, seconds=0, index=None):
        """kind: 'status' (answer status), 'stall' (send half, then nothing for seconds), 'drop' (close)."""
        self.slice_rules.append({"kind": kind, "times": times, "status": status, "seconds": seconds,
                                 "index": index})

    def revoke(self, token=None):
        self.tokens.pop(token or self.token, None)

    def storage_calls(self, fragment="", method=None):
        return [r for r in self.requests if r["host"] == "stack" and fragment in r["path"]
                and (method is None or r["method"] == method)]

    def cloud_calls(self):
        return [r for r in self.requests if r["host"] != "stack"]

    # ---- server ---------------------------------------------------------------------------------------------
    def start(self, port=0, pki=None):
        """pki: (ca, cert, key) from make_pki, to share one between fakes; else made here."""
        self.ca, cert, key = pki or make_pki(os.path.join(self.workdir, "pki"))
        fake = self

        class Handler(RequestHandler):
            pass

        Handler.fake = fake
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.url = f"https://localhost:{self.port}"
        hosts = ["s3.amazonaws.com", f"{S3_BUCKET}.s3.{self.region}.amazonaws.com", "storage.googleapis.com",
                 f"{AZURE_ACCOUNT}.blob.core.windows.net"]
        self.connect_to = ",".join(f"{h}:443:127.0.0.1:{self.port}" for h in hosts)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def agnes_env(self):
        """What an agnes serve needs to reach this fake."""
        return {"AGNES_CA_BUNDLE": self.ca, "AGNES_CONNECT_TO": self.connect_to, "AGNES_ALLOW_PRIVATE_SOURCES": "1"}

    # ---- exports --------------------------------------------------------------------------------------------
    def _sign(self, text):
        return hmac.new(self.sign_key.encode(), text.encode(), hashlib.sha256).hexdigest()

    def _select_rows(self, table, params):
        def when(value):
            if value in (None, ""):
                return None
            text = str(value)
            if re.fullmatch(r"-?\d+", text):
                return int(text)
            m = re.fullmatch(r"-(\d+) days?", text)
            if m:
                return time.time() - int(m.group(1)) * 86400
            return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(
                tzinfo=datetime.timezone.utc).timestamp()

        since, until = when(params.get("changedSince")), when(params.get("changedUntil"))
        rows = [r for r in table.rows if (since is None or r["_timestamp"] >= since)
                and (until is None or r["_timestamp"] < until)]
        for f in params.get("whereFilters") or []:
            op, values, column = f.get("operator", "eq"), [str(v) for v in f["values"]], f["column"]
            if column not in table.columns:
                raise StorageError(400, "storage.tables.validation.invalidColumn",
                                   f"Column \"{column}\" not found in table \"{table.id}\".")
            numeric = f.get("dataType") in ("INTEGER", "DOUBLE", "BIGINT", "REAL", "DECIMAL")
            conv = (lambda v: float(v)) if numeric else (lambda v: "" if v is None else str(v))
            if op == "eq":
                rows = [r for r in rows if conv(r[column]) in [conv(v) for v in values]]
            elif op == "ne":
                rows = [r for r in rows if conv(r[column]) not in [conv(v) for v in values]]
            else:
                cmp = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
                       "le": lambda a, b: a <= b}[op]
                rows = [r for r in rows if r[column] is not None and cmp(conv(r[column]), conv(values[0]))]
        columns = table.columns
        if params.get("columns"):
            columns = params["columns"].split(",") if isinstance(params["columns"], str) else params["columns"]
        if params.get("limit"):
            rows = rows[:int(params["limit"])]
        return columns, [[r.get(c) for c in columns] for r in rows]

    def _make_file(self, table, params):
        file_id = next(self.file_ids)
        file_type = params.get("fileType", "csv")
        gz = str(params.get("gzip", "")).lower() in ("true", "1")
        stem = f"exp-15/578/table-exports/{table.bucket_id.replace('.', '/')}/{table.name}/{file_id}.{file_type}"
        slices = []
        if table.slice_files is not None:
            slices = [("path", p) for p in table.slice_files]
        else:
            columns, rows = self._select_rows(table, params)
            count = self.slices_per_file if table.sliced else 1
            chunks = [rows[i::count] for i in range(count)]
            for chunk in chunks:
                if file_type == "parquet":
                    slices.append(("bytes", self.parquet_writer(columns, chunk)))
                else:
                    data = csv_bytes(chunk)
                    slices.append(("bytes", gzip.compress(data) if gz else data))
        ext = ".parquet" if file_type == "parquet" else (".csv.gz" if gz else ".csv")
        names = [f"{stem}_0_0_{i}{ext}" for i in range(len(slices))]
        self.files[file_id] = {"id": file_id, "table": table.id, "stem": stem, "sliced": table.sliced or
                               table.slice_files is not None, "type": file_type, "gzip": gz,
                               "slices": dict(zip(names, slices)), "created": time.time()}
        return file_id

    def _issue_credentials(self):
        key = "ASIA" + secrets.token_hex(8).upper()
        secret = secrets.token_hex(20)
        session = "FQoGZXIvYXdzE" + secrets.token_hex(40)
        self.credentials[key] = (secret, session)
        self.valid_credentials.add(key)
        return key, secret, session

    def _file_detail(self, file_id):
        f = self.files[file_id]
        expires = int(time.time()) + 3600
        body = {"id": file_id, "created": storage_time(f["created"]), "isPublic": False, "isSliced": f["sliced"],
                "isEncrypted": True, "name": os.path.basename(f["stem"]) + (".gz" if f["gzip"] else ""),
                "fileType": f["type"], "provider": self.provider, "region": self.region,
                "sizeBytes": sum(len(v) if k == "bytes" else os.path.getsize(v) for k, v in f["slices"].values()),
                "tags": ["table-export"], "maxAgeDays": 15, "runId": None,
                "creatorToken": {"id": 373115, "description": "agnes test token"}}  # an int here, a string elsewhere
        target = f["stem"] + "manifest" if f["sliced"] else next(iter(f["slices"]))
        if self.provider == "aws":
            key, secret, session = self._issue_credentials()
            body["s3Path"] = {"bucket": S3_BUCKET, "key": f["stem"]}
            body["credentials"] = {"AccessKeyId": key, "SecretAccessKey": secret, "SessionToken": session,
                                   "Expiration": storage_time(expires)}
            signature = self._sign(f"{target}|{key}")
            body["url"] = (f"https://s3.amazonaws.com/{S3_BUCKET}/{target}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                           f"&X-Amz-Credential={key}&X-Amz-Expires=3600&X-Amz-Signature={signature}")
        elif self.provider == "gcp":
            key = "ya29." + secrets.token_hex(24)
            self.valid_credentials.add(key)
            body["gcsPath"] = {"bucket": GCS_BUCKET, "key": f["stem"]}
            body["gcsCredentials"] = {"access_token": key, "expires_in": 3599, "token_type": "Bearer",
                                      "projectId": "kbc-us-east4"}
            body["url"] = (f"https://storage.googleapis.com/{GCS_BUCKET}/{target}?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                           f"&X-Goog-Credential={key[:12]}&X-Goog-Signature={self._sign(target + '|' + key)}")
        else:
            key = secrets.token_hex(8)
            self.valid_credentials.add(key)
            sas = f"sv=2020-08-04&ss=b&srt=sco&sp=rl&se={expires}&skid={key}&sig={self._sign(key)}"
            body["absPath"] = {"container": AZURE_CONTAINER, "name": f["stem"]}
            body["absCredentials"] = {"SASConnectionString": f"BlobEndpoint=https://{AZURE_ACCOUNT}.blob.core.windows"
                                                            f".net;SharedAccessSignature={sas}",
                                      "expiration": storage_time(expires)}
            body["url"] = f"https://{AZURE_ACCOUNT}.blob.core.windows.net/{AZURE_CONTAINER}/{target}?{sas}"
        return body

    def _manifest(self, file_id):
        f = self.files[file_id]
        entries = []
        for name in f["slices"]:
            if self.provider == "aws":
                entries.append({"url": f"s3://{S3_BUCKET}/{name}"})
            elif self.provider == "gcp":
                entries.append({"url": f"gs://{GCS_BUCKET}/{name}"})
            else:
                entries.append({"url": f"azure://{AZURE_ACCOUNT}.blob.core.windows.net/{AZURE_CONTAINER}/{name}"})
        random.Random(file_id).shuffle(entries)  # clients must not trust the manifest's order
        return json.dumps({"entries": entries}).encode()

    def slice_body(self, name):
        for f in self.files.values():
            if name in f["slices"]:
                kind, value = f["slices"][name]
                if kind == "bytes":
                    return value
                with open(value, "rb") as fh:
                    return fh.read()
        return None

    def slice_path(self, name):
        for f in self.files.values():
            if name in f["slices"] and f["slices"][name][0] == "path":
                return f["slices"][name][1]
        return None

    def file_of_manifest(self, name):
        for f in self.files.values():
            if f["stem"] + "manifest" == name:
                return f["id"]
        return None


class StorageError(Exception):
    def __init__(self, status, code, message, headers=None, body=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.body = status, code, message, headers or {}, body


def sigv4_check(fake, method, raw_path, query, headers):
    """True when the request carries a valid AWS Signature V4 made with credentials the fake issued."""
    auth = headers.get("authorization", "")
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, ?"
                     r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})", auth)
    if not m:
        return "missing or malformed AWS4-HMAC-SHA256 Authorization"
    key, day, region, signed, signature = m.groups()
    if key not in fake.credentials:
        return "unknown access key"
    if key not in fake.valid_credentials:
        return "ExpiredToken"
    secret, session = fake.credentials[key]
    signed_names = signed.split(";")
    for required in ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"):
        if required not in signed_names:
            return f"{required} is not signed"
    if headers.get("x-amz-security-token") != session:
        return "wrong x-amz-security-token"
    if region != fake.region:
        return "wrong region"
    canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                               for k, v in sorted(urllib.parse.parse_qsl(query, keep_blank_values=True)))
    canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in signed_names)
    payload = headers.get("x-amz-content-sha256", EMPTY_SHA256)
    canonical = "\n".join([method, raw_path, canonical_query, canonical_headers, signed, payload])
    amz_date = headers.get("x-amz-date", "")
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = hmac.new(("AWS4" + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- plumbing ---------------------------------------------------------------------------------------------
    def _send(self, status, body=b"", content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, code, message, headers=None):
        self._send(status, {"error": message, "code": code, "exceptionId": f"keboola-{secrets.token_hex(4)}",
                            "status": "error"}, headers=headers)

    def _record(self, host_kind, body):
        parsed = urllib.parse.urlsplit(self.path)
        entry = {"method": self.command, "host": host_kind, "raw_host": self.headers.get("Host", ""),
                 "path": urllib.parse.unquote(parsed.path), "raw_path": parsed.path,
                 "query": dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
                 "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "time": time.time()}
        with self.fake.lock:
            self.fake.requests.append(entry)
        return entry

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        if "json" in (self.headers.get("Content-Type") or ""):
            return json.loads(raw)
        form = {}
        for k, v in urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True):  # whereFilters[0][values][0]=..
            form[k] = v
        return form

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        try:
            if host in ("localhost", "127.0.0.1"):
                body = self._read_body() if self.command == "POST" else None
                self._storage(self._record("stack", body))
            else:
                self._cloud(host, self._record(host, None))
        except StorageError as e:
            if e.body is not None:
                self._send(e.status, e.body, headers=e.headers)
            else:
                self._error(e.status, e.code, e.message, e.headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    # ---- Storage API ------------------------------------------------------------------------------------------
    def _storage(self, req):
        fake = self.fake
        path, query, method = req["path"], req["query"], req["method"]
        for rule in list(fake.rules):
            if rule["method"] == method and rule["pattern"].search(path) and rule["times"] > 0:
                rule["times"] -= 1
                body = rule["body"] if rule["body"] is not None else {"error": "Injected", "code": "injected"}
                return self._send(rule["status"], body, headers=rule["headers"])
        if path in ("/v2/storage", "/v2/storage/"):
            return self._send(200, {"api": "storage", "version": "v2", "components": [], "services": [],
                                    "features": [], "urlTemplates": {}})
        if not path.startswith("/v2/storage/"):
            return self._send(404, b"<html><body>Not Found</body></html>", "text/html")
        token = req["headers"].get("x-storageapi-token")
        info = fake.tokens.get(token)
        if info is None:
            raise StorageError(401, "storage.tokenInvalid", "Invalid access token")
        rest = path[len("/v2/storage/"):]
        include = set((query.get("include") or "").split(","))

        def readable(bucket_id):
            perms = info["bucketPermissions"]
            return perms is None or bucket_id in perms

        if rest == "tokens/verify":
            perms = info["bucketPermissions"]
            return self._send(200, {
                "id": info["id"], "description": info["description"], "created": storage_time(time.time() - 86400),
                "refreshed": storage_time(time.time() - 86400), "isMasterToken": info["isMasterToken"],
                "canManageBuckets": info["canManageBuckets"], "canManageTokens": False,
                "canReadAllFileUploads": info["canReadAllFileUploads"], "expires": None, "isExpired": False,
                "isDisabled": False, "token": token,  # Storage echoes the token
                "bucketPermissions": ({b: "read" for b in fake.buckets} if perms is None else perms) or [],
                "owner": {"id": 8625, "name": "Acme analytics", "type": "production", "region": fake.region,
                          "defaultBackend": "snowflake", "fileStorageProvider": fake.provider, "features": [],
                          "limits": {"storage.jobsParallelism": {"name": "storage.jobsParallelism", "value": 10}},
                          "dataSizeBytes": 112128, "rowsCount": 1036},
                "organization": {"id": 123}, "admin": {"id": 124, "name": "Ada", "role": "admin"}})
        if rest == "buckets":
            return self._send(200, [b for b in fake.buckets.values() if readable(b["id"])])
        m = re.fullmatch(r"buckets/([^/]+)/tables", rest)
        if m:
            if m.group(1) not in fake.buckets:
                raise StorageError(404, "storage.buckets.notFound", f"Bucket {m.group(1)} not found")
            if not readable(m.group(1)):
                raise StorageError(403, "accessDenied", "You don't have access to the resource.")
            return self._send(200, [t.resource(fake, include) for t in fake.tables.values()
                                    if t.bucket_id == m.group(1)])
        if rest == "tables":
            return self._send(200, [t.resource(fake, include) for t in fake.tables.values() if readable(t.bucket_id)])
        m = re.fullmatch(r"tables/([^/]+)(/export-async)?", rest)
        if m:
            table = fake.tables.get(m.group(1))
            if table is None:
                raise StorageError(404, "storage.tables.notFound", f"The table \"{m.group(1)}\" was not found in "
                                                                   "the bucket.")
            if not readable(table.bucket_id):
                raise StorageError(403, "accessDenied", "You don't have access to the resource.")
            if not m.group(2):
                return self._send(200, table.resource(fake))
            if method != "POST":
                raise StorageError(405, "methodNotAllowed", "Use POST")
            return self._export(table, req["body"] or {})
        m = re.fullmatch(r"jobs/(\d+)", rest)
        if m:
            job = fake.jobs.get(int(m.group(1)))
            if job is None:
                raise StorageError(404, "storage.jobs.notFound", "Job not found")
            return self._send(200, self._advance(job))
        m = re.fullmatch(r"files/(\d+)", rest)
        if m:
            file_id = int(m.group(1))
            if file_id not in fake.files:
                raise StorageError(404, "storage.files.notFound", "File not found")
            if query.get("federationToken") not in ("1", "true"):
                detail = fake._file_detail(file_id)
                for k in ("credentials", "gcsCredentials", "absCredentials"):
                    detail.pop(k, None)
                return self._send(200, detail)
            return self._send(200, fake._file_detail(file_id))
        raise StorageError(404, "notFound", f"Route {path} not found")

    def _export(self, table, params):
        fake = self.fake
        if not isinstance(params.get("whereFilters", []), list):
            raise StorageError(400, "storage.validation", "whereFilters should be an array")
        job_id = next(fake.ids)
        error = fake.job_errors.get(table.id)
        job = {"id": job_id, "status": "waiting", "url": f"{fake.url}/v2/storage/jobs/{job_id}",
               "tableId": table.id, "operationName": "tableExport",
               "operationParams": {"export": {"columns": [], "limit": params.get("limit"),
                                              "changedSince": params.get("changedSince"),
                                              "changedUntil": params.get("changedUntil"),
                                              "gzipOutput": bool(params.get("gzip")), "format": "rfc",
                                              "whereFilters": params.get("whereFilters") or [],
                                              "fileType": params.get("fileType", "csv")}, "queue": "main_fast"},
               "createdTime": storage_time(time.time()), "startTime": None, "endTime": None, "runId": None,
               "results": None, "creatorToken": {"id": "373115", "description": "agnes test token"},
               "metrics": {"inCompressed": False, "inBytes": 0, "outCompressed": False, "outBytes": 0},
               "_polls": 0, "_error": error}
        if error is None:
            try:
                job["_file"] = fake._make_file(table, params)
            except StorageError as e:
                job["_error"] = (e.message, e.code)
        fake.jobs[job_id] = job
        return self._send(202, {k: v for k, v in job.items() if not k.startswith("_")})

    def _advance(self, job):
        fake = self.fake
        job["_polls"] += 1
        if job["_polls"] >= fake.job_polls:
            if job["_error"]:
                message, code = job["_error"]
                job.update(status="error", endTime=storage_time(time.time()),
                           error={"code": code, "message": message, "exceptionId": "exception-" + str(job["id"])})
            else:
                job.update(status="success", endTime=storage_time(time.time()),
                           results={"file": {"id": job["_file"]}, "cacheHit": False})
        else:
            job.update(status="processing", startTime=storage_time(time.time()))
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # ---- the clouds -----------------------------------------------------------------------------------------
    def _cloud(self, host, req):
        fake = self.fake
        path, query = req["path"], urllib.parse.urlsplit(self.path).query
        q = req["query"]
        if host == "s3.amazonaws.com":  # presigned: manifest or single file
            name = path[len(f"/{S3_BUCKET}/"):]
            key = q.get("X-Amz-Credential", "")
            if q.get("X-Amz-Signature") != fake._sign(f"{name}|{key}"):
                return self._send(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "application/xml")
            if key not in fake.valid_credentials:
                return self._send(400, b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired."
                                       b"</Message></Error>", "application/xml")
            return self._signed_object(name)
        if host.endswith(".amazonaws.com"):  # virtual-hosted slice, SigV4
            problem = sigv4_check(fake, "GET", req["raw_path"], query, req["headers"])
            if problem == "ExpiredToken":
                return self._send(400, b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired."
                                       b"</Message></Error>", "application/xml")
            if problem:
                return self._send(403, f"<Error><Code>AccessDenied</Code><Message>{problem}</Message></Error>"
                                  .encode(), "application/xml")
            if host != f"{S3_BUCKET}.s3.{fake.region}.amazonaws.com":
                return self._send(404, b"<Error><Code>NoSuchBucket</Code></Error>", "application/xml")
            return self._slice(path[1:])
        if host == "storage.googleapis.com":
            m = re.fullmatch(rf"/storage/v1/b/{GCS_BUCKET}/o/(.+)", req["raw_path"])
            if m:
                if q.get("alt") != "media":
                    return self._send(400, {"error": {"code": 400, "message": "alt=media expected"}})
                bearer = req["headers"].get("authorization", "")
                if not bearer.startswith("Bearer ") or bearer[7:] not in fake.valid_credentials:
                    return self._send(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
                return self._slice(urllib.parse.unquote(m.group(1)))
            name = path[len(f"/{GCS_BUCKET}/"):]
            cred = next((k for k in fake.valid_credentials if q.get("X-Goog-Signature") == fake._sign(f"{name}|{k}")),
                        None)
            if cred is None:
                return self._send(400, b"<Error><Code>ExpiredToken</Code></Error>", "application/xml")
            return self._signed_object(name)
        if host.endswith(".blob.core.windows.net"):
            skid, sig = q.get("skid"), q.get("sig")
            if skid is None or sig != fake._sign(skid):
                return self._send(403, b"<Error><Code>AuthenticationFailed</Code></Error>", "application/xml")
            if skid not in fake.valid_credentials:
                return self._send(403, b"<Error><Code>AuthenticationFailed</Code><Message>Signed expiry time has "
                                       b"passed</Message></Error>", "application/xml")
            prefix = f"/{AZURE_CONTAINER}/"
            if not path.startswith(prefix):
                return self._send(404, b"<Error><Code>ContainerNotFound</Code></Error>", "application/xml")
            name = path[len(prefix):]
            if name.endswith("manifest") or fake.file_of_manifest(name) is not None:
                return self._signed_object(name)
            return self._slice(name)
        return self._send(404, b"unknown host", "text/plain")

    def _signed_object(self, name):
        file_id = self.fake.file_of_manifest(name)
        if file_id is not None:
            return self._send(200, self.fake._manifest(file_id))
        return self._slice(name, counted=False)

    def _slice(self, name, counted=True):
        fake = self.fake
        body_path = fake.slice_path(name)
        body = None if body_path else fake.slice_body(name)
        if body is None and body_path is None:
            return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        m = re.search(r"_(\d+)\.(csv|parquet)", name)
        index = int(m.group(1)) if m else 0
        with fake.lock:
            rule = next((r for r in fake.slice_rules if r["times"] > 0 and r["index"] in (None, index)), None)
            if rule:
                rule["times"] -= 1
            if counted:
                fake.slice_fetches += 1
                if fake.expire_after_slices is not None and fake.slice_fetches >= fake.expire_after_slices:
                    fake.expire_after_slices = None
                    fake.valid_credentials.clear()  # an hour has passed: every signature issued so far is dead
        if rule and rule["kind"] == "status":
            return self._send(rule["status"], b"<Error><Code>SlowDown</Code></Error>", "application/xml",
                              headers={"Retry-After": "1"} if rule["status"] in (429, 503) else None)
        size = os.path.getsize(body_path) if body_path else len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if rule and rule["kind"] in ("stall", "drop"):
            first = body[: max(1, size // 2)] if body is not None else open(body_path, "rb").read(max(1, size // 2))
            self.wfile.write(first)
            self.wfile.flush()
            if rule["kind"] == "stall":
                time.sleep(rule["seconds"])
            self.close_connection = True
            return
        if body is not None:
            self.wfile.write(body)
            return
        with open(body_path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                self.wfile.write(chunk)


def main():
    """Serve a fake from a JSON config until killed:
    {"workdir": DIR, "port": 0, "provider": "aws", "port_file": PATH,
     "tables": [{"id": "in.c-bench.events", "columns": [...], "types": {...}, "slice_files": [...], "rows": N}]}
    Writes {"url", "token", "ca", "connect_to"} to port_file once listening."""
    config = json.load(open(sys.argv[1]))
    fake = FakeKeboola(config["workdir"], provider=config.get("provider", "aws"))
    for t in config.get("tables", []):
        fake.add_table(t["id"], t["columns"], types=t.get("types"), primary_key=t.get("primary_key"),
                       lengths=t.get("lengths"), slice_files=t.get("slice_files"))
        fake.bench_rows = t.get("rows", 0)
    fake.start(config.get("port", 0))
    with open(config["port_file"] + ".tmp", "w") as f:
        json.dump({"url": fake.url, "token": fake.token, "ca": fake.ca, "connect_to": fake.connect_to}, f)
    os.rename(config["port_file"] + ".tmp", config["port_file"])
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
