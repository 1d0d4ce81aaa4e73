//! A report [`Table`] as JSON, CSV, Arrow IPC stream or aligned text.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};

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

/// `{"report", "from", "to", "tz", "columns": [name], "rows": [{column: value}]}`.
pub fn to_json(table: &Table) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = table
        .rows
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, serde_json::Value> = table
                .columns
                .iter()
                .zip(row)
                .map(|(column, value)| {
                    let json = match value {
                        Value::Text(text) => serde_json::Value::from(text.as_str()),
                        Value::UInt(n) => serde_json::Value::from(*n),
                        Value::Int(n) => serde_json::Value::from(*n),
                        Value::Float(x) => serde_json::Value::from(*x),
                        Value::Time(_) => serde_json::Value::from(cell(table, value)),
                    };
                    (column.name.to_string(), json)
                })
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::json!({
        "report": table.report,
        "from": table.range.from.to_string(),
        "to": table.range.to.to_string(),
        "tz": table.range.tz_name,
        "columns": table.columns.iter().map(|c| c.name).collect::<Vec<_>>(),
        "rows": rows,
    })
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
        let json = to_json(&table());
        assert_eq!(json["rows"][0]["code"], "ab,c");
        assert_eq!(json["rows"][1]["human_clicks"], 3);
        assert_eq!(json["tz"], "Europe/Berlin");
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
