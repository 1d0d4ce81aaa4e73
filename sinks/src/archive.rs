//! The Parquet archive: raw events as Parquet files per topic, UTC date and hour,
//!
//! ```text
//! {dir}/topic={topic}/date={YYYY-MM-DD}/hour={HH}/p{partition}-{first}-{last}.parquet
//! ```
//!
//! where `first..=last` is the range of Kafka offsets the write covered for that partition.
//! The file names are the fence: a partition's archive holds everything up to the highest
//! `last` among its files, and a replay writes only what lies above it, so no event is
//! archived twice.
//!
//! One write can span several hours (several files). It is made atomic across them: every file
//! is written and synced under a temporary name, then a manifest listing them is committed
//! (renamed into `_pending/`), then the files are renamed and the manifest removed. Recovery
//! rolls committed manifests forward and deletes temporary files no manifest names, so a crash
//! at any step leaves either all of a write's files or none.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::FieldRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::{Fences, SinkError};

/// Where the archive lives.
#[derive(Clone, Debug)]
pub struct Archive {
    dir: PathBuf,
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> SinkError {
    SinkError::Archive { path: path.display().to_string(), reason: error.to_string() }
}

/// `(partition, first, last)` from a file name `p{partition}-{first}-{last}.parquet`.
fn parse_name(name: &str) -> Option<(i32, i64, i64)> {
    let rest = name.strip_prefix('p')?.strip_suffix(".parquet")?;
    let mut parts = rest.splitn(3, '-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn tracing_options() -> TracingOptions {
    let mut options = TracingOptions::default().sequence_as_large_list(false);
    options.string_as_large_utf8 = false;
    options
}

/// `date=YYYY-MM-DD/hour=HH` of a Unix time in seconds.
fn hour_dir(unix_secs: u32) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(unix_secs));
    let text = humantime::format_rfc3339_seconds(time).to_string();
    format!("date={}/hour={}", &text[..10], &text[11..13])
}

impl Archive {
    /// An archive under `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(Self { dir })
    }

    fn topic_dir(&self, topic: &str) -> PathBuf {
        self.dir.join(format!("topic={topic}"))
    }

    /// Every `(hour directory, file name)` under the topic whose name passes `keep`.
    fn files(&self, topic: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, SinkError> {
        let mut found = Vec::new();
        let root = self.topic_dir(topic);
        let Ok(dates) = fs::read_dir(&root) else { return Ok(found) };
        for date in dates.flatten().filter(|d| d.file_name().to_string_lossy().starts_with("date=")) {
            let hours = fs::read_dir(date.path()).map_err(|e| io_error(&date.path(), e))?;
            for hour in hours.flatten() {
                let files = fs::read_dir(hour.path()).map_err(|e| io_error(&hour.path(), e))?;
                for file in files.flatten() {
                    if keep(&file.file_name().to_string_lossy()) {
                        found.push(file.path());
                    }
                }
            }
        }
        Ok(found)
    }

    /// Finishes or undoes interrupted writes of `partitions`, then returns their fences (the
    /// highest offset archived per partition; partitions with nothing archived are absent).
    pub fn recover(&self, topic: &str, partitions: &[i32]) -> Result<Fences, SinkError> {
        let pending = self.topic_dir(topic).join("_pending");
        let mut committed = Vec::new();
        if let Ok(manifests) = fs::read_dir(&pending) {
            for manifest in manifests.flatten() {
                let name = manifest.file_name().to_string_lossy().into_owned();
                let Some((partition, ..)) = parse_name(&name) else { continue };
                if !partitions.contains(&partition) {
                    continue;
                }
                let listing = fs::read_to_string(manifest.path()).map_err(|e| io_error(&manifest.path(), e))?;
                for line in listing.lines().filter(|l| !l.is_empty()) {
                    let target = PathBuf::from(line);
                    let temporary = temporary_name(&target);
                    if temporary.exists() {
                        fs::rename(&temporary, &target).map_err(|e| io_error(&temporary, e))?;
                    }
                    committed.push(target);
                }
                fs::remove_file(manifest.path()).map_err(|e| io_error(&manifest.path(), e))?;
            }
        }
        // Temporary files no manifest committed belong to writes that did not happen.
        for stray in self.files(topic, |name| name.starts_with(".p") && name.ends_with(".tmp"))? {
            let name = stray.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let partition = parse_name(name.trim_start_matches('.').trim_end_matches(".tmp")).map(|(p, ..)| p);
            if partition.is_some_and(|p| partitions.contains(&p)) {
                fs::remove_file(&stray).map_err(|e| io_error(&stray, e))?;
            }
        }
        let mut fences = Fences::new();
        for file in self.files(topic, |name| name.starts_with('p') && name.ends_with(".parquet"))? {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some((partition, _, last)) = parse_name(&name)
                && partitions.contains(&partition)
            {
                let fence = fences.entry(partition).or_insert(last);
                *fence = (*fence).max(last);
            }
        }
        if !committed.is_empty() {
            tracing::info!(files = committed.len(), topic, "archive: interrupted writes completed");
        }
        Ok(fences)
    }

    /// Writes `rows` (each with its event time in Unix seconds) read from offsets
    /// `first..=last` of `topic`'s `partition`: one Parquet file per hour, all or none.
    /// Returns the files written.
    pub fn write<R: Serialize + serde::de::DeserializeOwned>(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        last: i64,
        rows: &[(u32, &R)],
    ) -> Result<Vec<PathBuf>, SinkError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_hour: BTreeMap<String, Vec<&R>> = BTreeMap::new();
        for (ts, row) in rows {
            by_hour.entry(hour_dir(*ts)).or_default().push(*row);
        }
        let name = format!("p{partition}-{first}-{last}.parquet");
        let mut targets = Vec::new();
        for (hour, rows) in &by_hour {
            let dir = self.topic_dir(topic).join(hour);
            fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            let target = dir.join(&name);
            write_parquet(&temporary_name(&target), rows)?;
            targets.push(target);
        }
        // Commit point: the manifest names every file of this write.
        let pending = self.topic_dir(topic).join("_pending");
        fs::create_dir_all(&pending).map_err(|e| io_error(&pending, e))?;
        let manifest = pending.join(&name);
        let staged = pending.join(format!(".{name}.tmp"));
        let listing: String = targets.iter().map(|t| format!("{}\n", t.display())).collect();
        write_synced(&staged, listing.as_bytes())?;
        fs::rename(&staged, &manifest).map_err(|e| io_error(&manifest, e))?;
        for target in &targets {
            let temporary = temporary_name(target);
            fs::rename(&temporary, target).map_err(|e| io_error(&temporary, e))?;
        }
        fs::remove_file(&manifest).map_err(|e| io_error(&manifest, e))?;
        Ok(targets)
    }
}

/// `.{name}.tmp` beside `target`.
fn temporary_name(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let mut file = fs::File::create(path).map_err(|e| io_error(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io_error(path, e))
}

fn write_parquet<R: Serialize + serde::de::DeserializeOwned>(path: &Path, rows: &[&R]) -> Result<(), SinkError> {
    // The schema comes from the row type, so every file of a topic has the same one.
    let fields = Vec::<FieldRef>::from_type::<R>(tracing_options()).map_err(|e| io_error(path, e))?;
    let batch = serde_arrow::to_record_batch(&fields, &rows).map_err(|e| io_error(path, e))?;
    let file = fs::File::create(path).map_err(|e| io_error(path, e))?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, Arc::new(batch.schema().as_ref().clone()), Some(properties))
        .map_err(|e| io_error(path, e))?;
    writer.write(&batch).map_err(|e| io_error(path, e))?;
    let file = writer.into_inner().map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize)]
    struct Row {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runnel-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn read_ids(path: &Path) -> Vec<u64> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::UInt64Type;
        let file = fs::File::open(path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            ids.extend(batch.column_by_name("id").unwrap().as_primitive::<UInt64Type>().values().iter().copied());
        }
        ids
    }

    #[test]
    fn names_and_hours() {
        assert_eq!(parse_name("p3-100-200.parquet"), Some((3, 100, 200)));
        assert_eq!(parse_name("p3-100.parquet"), None);
        assert_eq!(hour_dir(1_700_000_000), "date=2023-11-14/hour=22");
    }

    #[test]
    fn a_write_spanning_hours_makes_one_file_per_hour_and_moves_the_fence() {
        let dir = temp_dir("hours");
        let archive = Archive::open(&dir).unwrap();
        let row = |id: u64| Row { id, name: format!("n{id}"), tags: vec!["a".into()] };
        let (a, b, c) = (row(1), row(2), row(3));
        let rows = [(1_700_000_000, &a), (1_700_003_600, &b), (1_700_000_001, &c)];
        let files = archive.write("t", 2, 10, 12, &rows).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("topic=t/date=2023-11-14/hour=22/p2-10-12.parquet"), "{files:?}");
        assert_eq!(read_ids(&files[0]), [1, 3]);
        assert_eq!(read_ids(&files[1]), [2]);
        assert_eq!(archive.recover("t", &[2, 3]).unwrap(), Fences::from([(2, 12)]));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recovery_rolls_committed_writes_forward_and_drops_uncommitted_ones() {
        let dir = temp_dir("recover");
        let archive = Archive::open(&dir).unwrap();
        let row = Row { id: 7, name: "x".into(), tags: vec![] };
        let files = archive.write("t", 0, 0, 5, &[(1_700_000_000, &row), (1_700_003_600, &row)]).unwrap();
        // A crash after the manifest was committed and one file renamed.
        let manifest = dir.join("topic=t/_pending/p0-6-9.parquet");
        let second_write: Vec<PathBuf> = files.iter().map(|f| f.with_file_name("p0-6-9.parquet")).collect();
        fs::copy(&files[0], &second_write[0]).unwrap();
        fs::copy(&files[1], temporary_name(&second_write[1])).unwrap();
        fs::write(&manifest, second_write.iter().map(|f| format!("{}\n", f.display())).collect::<String>()).unwrap();
        // A crash before any manifest: only a temporary file.
        let uncommitted = files[0].with_file_name(".p0-10-12.parquet.tmp");
        fs::copy(&files[0], &uncommitted).unwrap();

        assert_eq!(archive.recover("t", &[0]).unwrap(), Fences::from([(0, 9)]));
        assert!(second_write.iter().all(|f| f.exists()), "the committed write is complete");
        assert!(!manifest.exists());
        assert!(!uncommitted.exists(), "the uncommitted write is gone");
        fs::remove_dir_all(dir).unwrap();
    }
}
