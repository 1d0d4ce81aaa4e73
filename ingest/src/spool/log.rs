//! Spool files: `NNNNNNNNNNNNNNNNNNNN.seg` segments of records `[len u32 LE][crc32 u32 LE][bytes]`,
//! appended with one `write` each (the page cache keeps them across a crash of the process),
//! and `NNNNNNNNNNNNNNNNNNNN.ack` holding how many records of that segment Kafka acknowledged.
//! A torn record at a segment's end (a crash mid-write) fails its checksum and ends the segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// Records above this size are refused (a click event is a few hundred bytes).
const MAX_RECORD: usize = 1 << 20;

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

fn ack_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.ack"))
}

/// The segment numbers in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry.file_name().to_str().and_then(|name| name.strip_suffix(".seg")).and_then(|n| n.parse().ok())
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// Bytes the spool holds on disk.
pub(crate) fn size(dir: &Path) -> io::Result<u64> {
    Ok(segments(dir)?.iter().filter_map(|n| fs::metadata(segment_path(dir, *n)).ok()).map(|m| m.len()).sum())
}

/// Appends records to the newest segment, starting a new one past `segment_bytes`.
pub(crate) struct Writer {
    dir: PathBuf,
    segment: u64,
    file: File,
    written: u64,
    segment_bytes: u64,
}

impl Writer {
    /// Opens the spool in `dir`, continuing after its newest segment.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let next = segments(dir)?.last().map_or(0, |n| n + 1);
        let file = OpenOptions::new().create_new(true).append(true).open(segment_path(dir, next))?;
        Ok(Self { dir: dir.to_path_buf(), segment: next, file, written: 0, segment_bytes })
    }

    /// Writes one record in one `write` call.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > MAX_RECORD {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "record too large"));
        }
        if self.written >= self.segment_bytes {
            self.rotate()?;
        }
        let mut record = Vec::with_capacity(HEADER + bytes.len());
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        record.extend_from_slice(bytes);
        self.file.write_all(&record)?;
        self.written += record.len() as u64;
        Ok(())
    }

    /// Starts a new segment; the old one is complete.
    pub(crate) fn rotate(&mut self) -> io::Result<()> {
        self.segment += 1;
        self.file = OpenOptions::new().create_new(true).append(true).open(segment_path(&self.dir, self.segment))?;
        self.written = 0;
        Ok(())
    }

    /// The segment being written.
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Bytes written to the current segment.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

/// Reads the records of one segment, from the first one not yet acknowledged.
pub(crate) struct Reader {
    dir: PathBuf,
    segment: u64,
    bytes: Vec<u8>,
    position: usize,
    /// Records of this segment acknowledged (and so skipped).
    acked: u64,
    /// Records returned so far, acknowledged or not.
    read: u64,
}

impl Reader {
    /// Opens segment `n`, positioned after its acknowledged records.
    pub(crate) fn open(dir: &Path, n: u64) -> io::Result<Self> {
        let acked = fs::read_to_string(ack_path(dir, n)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut reader = Self { dir: dir.to_path_buf(), segment: n, bytes: Vec::new(), position: 0, acked, read: 0 };
        reader.refill()?;
        for _ in 0..acked {
            if reader.next_record().is_none() {
                break;
            }
        }
        Ok(reader)
    }

    /// Reads what was appended to the segment since the last refill.
    pub(crate) fn refill(&mut self) -> io::Result<()> {
        let mut file = File::open(segment_path(&self.dir, self.segment))?;
        self.bytes.clear();
        file.read_to_end(&mut self.bytes)?;
        Ok(())
    }

    /// The next whole, intact record; `None` at the end (or at a torn or corrupt record).
    pub(crate) fn next_record(&mut self) -> Option<Vec<u8>> {
        let rest = &self.bytes[self.position..];
        if rest.len() < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        if len > MAX_RECORD || rest.len() < HEADER + len {
            return None;
        }
        let body = &rest[HEADER..HEADER + len];
        if crc32fast::hash(body) != crc {
            return None;
        }
        self.position += HEADER + len;
        self.read += 1;
        Some(body.to_vec())
    }

    /// Byte offset of the next record.
    pub(crate) fn position(&self) -> u64 {
        self.position as u64
    }

    /// Records that all records read so far are acknowledged (write, then rename: atomic).
    pub(crate) fn checkpoint(&mut self) -> io::Result<()> {
        let tmp = self.dir.join(format!("{:020}.ack.tmp", self.segment));
        fs::write(&tmp, self.read.to_string())?;
        fs::rename(&tmp, ack_path(&self.dir, self.segment))?;
        self.acked = self.read;
        Ok(())
    }

    /// The segment number.
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }
}

/// Deletes segment `n` and its checkpoint (all its records are acknowledged).
pub(crate) fn remove(dir: &Path, n: u64) -> io::Result<()> {
    fs::remove_file(segment_path(dir, n))?;
    match fs::remove_file(ack_path(dir, n)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("runnel-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let d = dir("order");
        let mut w = Writer::open(&d, 64).unwrap();
        for i in 0..20 {
            w.append(format!("record-{i:02}").as_bytes()).unwrap();
        }
        let mut all = Vec::new();
        for n in segments(&d).unwrap() {
            let mut r = Reader::open(&d, n).unwrap();
            while let Some(rec) = r.next_record() {
                all.push(String::from_utf8(rec).unwrap());
            }
        }
        assert_eq!(all, (0..20).map(|i| format!("record-{i:02}")).collect::<Vec<_>>());
        assert!(segments(&d).unwrap().len() > 1, "rotated");
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_segment_and_earlier_records_survive() {
        let d = dir("torn");
        let mut w = Writer::open(&d, 1 << 20).unwrap();
        w.append(b"one").unwrap();
        w.append(b"two").unwrap();
        let path = segment_path(&d, w.segment());
        // A crash mid-write: half a header and a few bytes.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let mut r = Reader::open(&d, w.segment()).unwrap();
        assert_eq!(r.next_record().as_deref(), Some(&b"one"[..]));
        assert_eq!(r.next_record().as_deref(), Some(&b"two"[..]));
        assert_eq!(r.next_record(), None);
        // A flipped bit fails the checksum.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(Reader::open(&d, w.segment()).unwrap().next_record(), None);
    }

    #[test]
    fn a_checkpoint_skips_acknowledged_records_on_reopen() {
        let d = dir("ack");
        let mut w = Writer::open(&d, 1 << 20).unwrap();
        for rec in [b"a", b"b", b"c"] {
            w.append(rec).unwrap();
        }
        let mut r = Reader::open(&d, 0).unwrap();
        r.next_record();
        r.next_record();
        r.checkpoint().unwrap();
        let mut again = Reader::open(&d, 0).unwrap();
        assert_eq!(again.next_record().as_deref(), Some(&b"c"[..]));
        assert_eq!(again.next_record(), None);
        // A writer opened later never appends to an old segment.
        assert_eq!(Writer::open(&d, 1 << 20).unwrap().segment(), 1);
        remove(&d, 0).unwrap();
        assert_eq!(segments(&d).unwrap(), vec![1]);
    }
}
