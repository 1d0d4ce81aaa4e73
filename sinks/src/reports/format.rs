//! A report [`Table`] as JSON, CSV, Arrow IPC stream or aligned text.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{Kind, Table, Value};

fn cell(table: &Table, value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        Value::UInt(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => format!("{x:.4}").trim_end_matches('0').trim_end_matches('.').to_string(),
        Value::Time(t) => table.range.format_time(*t),
    }
}

/// `{"report", "from", "to", "tz", "columns": [name], "rows": [{column: value}]}`, then the
/// fields of `extra` (the API's `code`, `link_id`, …), serialized straight from the table:
/// building a `serde_json::Value` per cell first took longer than the sales report's query.
pub fn to_json<'a>(table: &'a Table, extra: Option<&'a serde_json::Map<String, serde_json::Value>>) -> Json<'a> {
    Json { table, extra }
}

/// A [`Table`] as JSON ([`to_json`]).
pub struct Json<'a> {
    table: &'a Table,
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let table = self.table;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("report", table.report)?;
        map.serialize_entry("from", &table.range.from.to_string())?;
        map.serialize_entry("to", &table.range.to.to_string())?;
        map.serialize_entry("tz", &table.range.tz_name)?;
        map.serialize_entry("columns", &table.columns.iter().map(|c| c.name).collect::<Vec<_>>())?;
        map.serialize_entry("rows", &Rows(table))?;
        for (key, value) in self.extra.into_iter().flatten() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

struct Rows<'a>(&'a Table);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.rows.iter().map(|row| Row(self.0, row)))
    }
}

struct Row<'a>(&'a Table, &'a [Value]);

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Row(table, row) = *self;
        let mut map = serializer.serialize_map(Some(row.len()))?;
        for (column, value) in table.columns.iter().zip(row) {
            match value {
                Value::Text(text) => map.serialize_entry(column.name, text)?,
                Value::UInt(n) => map.serialize_entry(column.name, n)?,
                Value::Int(n) => map.serialize_entry(column.name, n)?,
                // Not finite: `null`, as serde_json writes such floats.
                Value::Float(x) => map.serialize_entry(column.name, x)?,
                Value::Time(_) => map.serialize_entry(column.name, &cell(table, value))?,
            }
        }
        map.end()
    }
}

/// A header line and one line per row.
pub fn to_csv(table: &Table) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(&header);
    for row in &table.rows {
        let _ = writer.write_record(row.iter().map(|v| cell(table, v)));
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// An Arrow IPC stream (`application/vnd.apache.arrow.stream`): one record batch; times as
/// timestamps (seconds) in the report's time zone.
pub fn to_arrow(table: &Table) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let tz: Arc<str> = Arc::from(table.range.tz_name.as_str());
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|column| {
            let data_type = match column.kind {
                Kind::Text => DataType::Utf8,
                Kind::UInt => DataType::UInt64,
                Kind::Int => DataType::Int64,
                Kind::Float => DataType::Float64,
                Kind::Time => DataType::Timestamp(arrow_schema::TimeUnit::Second, Some(tz.clone())),
            };
            Field::new(column.name, data_type, false)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let values = table.rows.iter().map(move |row| &row[i]);
            let array: ArrayRef = match column.kind {
                Kind::Text => Arc::new(StringArray::from_iter_values(values.map(|v| match v {
                    Value::Text(t) => t.as_str(),
                    _ => "",
                }))),
                Kind::UInt => Arc::new(UInt64Array::from_iter_values(values.map(|v| match v {
                    Value::UInt(n) => *n,
                    _ => 0,
                }))),
                Kind::Int => Arc::new(Int64Array::from_iter_values(values.map(|v| match v {
                    Value::Int(n) => *n,
                    _ => 0,
                }))),
                Kind::Float => Arc::new(Float64Array::from_iter_values(values.map(|v| match v {
                    Value::Float(x) => *x,
                    _ => 0.0,
                }))),
                Kind::Time => Arc::new(
                    arrow_array::TimestampSecondArray::from_iter_values(values.map(|v| match v {
                        Value::Time(t) => *t,
                        _ => 0,
                    }))
                    .with_timezone(tz.clone()),
                ),
            };
            array
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// Columns aligned for a terminal: text left, numbers right.
pub fn to_text(table: &Table) -> String {
    let cells: Vec<Vec<String>> = table.rows.iter().map(|row| row.iter().map(|v| cell(table, v)).collect()).collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.name.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> = values
            .iter()
            .zip(&table.columns)
            .zip(&widths)
            .map(|((v, c), w)| match c.kind {
                Kind::Text | Kind::Time => format!("{v:<w$}"),
                _ => format!("{v:>w$}"),
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(table.columns.iter().map(|c| c.name).collect());
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    if table.rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Report, ReportParams};
    use super::*;

    fn table() -> Table {
        let params = ReportParams {
            from: Some("2026-11-20".into()),
            to: Some("2026-11-20".into()),
            tz: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        let plan = Report::TopLinks.plan(&params, "2026-11-22T00:00:00Z".parse().unwrap()).unwrap();
        plan.table_from_tsv("7\tab,c\t10\t9\n8\tx\\ty\t3\t3\n").unwrap()
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(to_csv(&table()), "link_id,code,clicks,human_clicks\n7,\"ab,c\",10,9\n8,x\ty,3,3\n");
    }

    #[test]
    fn json_has_one_object_per_row() {
        let extra = serde_json::json!({"code": "ab,c", "link_id": 7});
        let text = serde_json::to_string(&to_json(&table(), extra.as_object())).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["rows"][0]["code"], "ab,c");
        assert_eq!(json["rows"][1]["human_clicks"], 3);
        assert_eq!(json["rows"][1]["code"], "x\ty");
        assert_eq!(json["tz"], "Europe/Berlin");
        assert_eq!(json["columns"][3], "human_clicks");
        assert_eq!(json["link_id"], 7);
        // Columns in the table's order, the extra fields after the table's own.
        assert!(text.starts_with(r#"{"report":"top-links","from":"#), "{text}");
        assert!(text.contains(r#"{"link_id":7,"code":"ab,c","clicks":10,"human_clicks":9}"#), "{text}");
        assert!(text.ends_with(r#""code":"ab,c","link_id":7}"#), "{text}");
    }

    #[test]
    fn arrow_reads_back() {
        let bytes = to_arrow(&table()).unwrap();
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        let codes = batches[0].column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(codes.value(1), "x\ty");
    }

    #[test]
    fn text_aligns_columns() {
        let text = to_text(&table());
        assert!(text.starts_with("link_id  code  clicks  human_clicks\n"), "{text}");
    }
}
