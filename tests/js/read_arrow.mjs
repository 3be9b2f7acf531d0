// node tests/js/read_arrow.mjs FILE - decode an Arrow IPC stream with apache-arrow
// (an independent reader, not Agnes's code) and print {fields, batches, rows} as JSON.
// 64-bit integers print as strings; decimals as their unscaled integer; times as numbers.
import { readFileSync } from "node:fs";
import { RecordBatchReader } from "apache-arrow";

const reader = RecordBatchReader.from(readFileSync(process.argv[2]));
const out = { fields: [], batches: 0, rows: [] };
for (const batch of reader) {
  if (out.batches === 0)
    out.fields = batch.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable }));
  out.batches++;
  for (const row of batch) out.rows.push(row.toJSON());
}
console.log(JSON.stringify(out, (key, value) => (typeof value === "bigint" ? value.toString() : value)));
