//! The page guard: before a reader decodes a row group, the header of every page it would
//! decompress is read from the file and its decompressed size checked. A plain-encoded page
//! compresses as well as a dictionary does (4 GiB of one repeated byte is a few KiB of zstd),
//! and the Parquet decoder allocates and fills a whole page before any batch exists to measure,
//! so the batch check ([`crate::MAX_BATCH_BYTES`]) alone would come too late for it.
//!
//! Page headers are Thrift (compact protocol) structs; only fields 1-3 of `PageHeader` (type,
//! uncompressed size, compressed size) are read, everything else is skipped.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use parquet::file::metadata::ParquetMetaData;

use crate::reader::MAX_BATCH_BYTES;
use crate::{Error, Result};

/// Most bytes one page may decompress to. Writers cut pages at about 1 MiB (parquet-rs,
/// pyarrow); only a single value larger than that makes a larger page.
pub const MAX_PAGE_BYTES: u64 = 64 << 20;

/// Thrift nesting deeper than this is refused (a hostile header must not recurse unbounded).
const MAX_DEPTH: u32 = 32;

/// Check every page of every column chunk of `meta` (the footer of the file at `path`, opened
/// as `file`): each page at most [`MAX_PAGE_BYTES`] decompressed, and per row group the pages a
/// reader holds at once (each column's dictionary page and its largest data page) at most
/// [`MAX_BATCH_BYTES`] together. Reads only page headers.
pub(crate) fn check_page_sizes(path: &Path, file: &File, meta: &ParquetMetaData) -> Result<()> {
    check_page_sizes_with(path, file, meta, MAX_PAGE_BYTES, MAX_BATCH_BYTES)
}

fn check_page_sizes_with(
    path: &Path,
    file: &File,
    meta: &ParquetMetaData,
    page_limit: u64,
    group_limit: u64,
) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let mut input = BufReader::with_capacity(4096, file);
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let refuse = |what: String, bytes: u64, limit: u64| Error::PagesTooLarge {
            path: path.to_owned(),
            row_group: g,
            what,
            bytes,
            limit,
        };
        let mut held = 0u64;
        for c in rg.columns() {
            let column = c.column_path().string();
            let corrupt = |detail: String| Error::Corrupt {
                path: path.to_owned(),
                detail: format!("row group {g}, column `{column}`: {detail}"),
            };
            let (start, len) = c.byte_range();
            let end = start.saturating_add(len).min(file_len);
            let (mut dictionary, mut data) = (0u64, 0u64);
            let mut pos = start;
            while pos < end {
                input.seek(SeekFrom::Start(pos)).map_err(|e| Error::io("read", path, e))?;
                let mut counted = Counted { inner: &mut input, read: 0 };
                let header = read_page_header(&mut counted)
                    .map_err(|e| corrupt(format!("bad page header at byte {pos}: {e}")))?;
                let header_len = counted.read;
                let (Ok(size), Ok(compressed)) =
                    (u64::try_from(header.uncompressed), u64::try_from(header.compressed))
                else {
                    return Err(corrupt(format!("negative page size at byte {pos}")));
                };
                if size > page_limit {
                    return Err(refuse(format!("a page of column `{column}`"), size, page_limit));
                }
                // Page type 2 is DICTIONARY_PAGE; it stays in memory for the whole chunk.
                if header.page_type == 2 {
                    dictionary = dictionary.saturating_add(size);
                } else {
                    data = data.max(size);
                }
                pos = pos.saturating_add(header_len).saturating_add(compressed);
            }
            held = held.saturating_add(dictionary).saturating_add(data);
        }
        if held > group_limit {
            return Err(refuse("the pages decoded at once".to_owned(), held, group_limit));
        }
    }
    Ok(())
}

/// A reader that counts the bytes taken from it.
struct Counted<'a, R> {
    inner: &'a mut R,
    read: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The fields of a `PageHeader` the guard needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct PageHeader {
    page_type: i64,
    uncompressed: i64,
    compressed: i64,
}

type ThriftResult<T> = std::result::Result<T, String>;

fn byte(r: &mut impl Read) -> ThriftResult<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(|e| format!("truncated: {e}"))?;
    Ok(b[0])
}

fn varint(r: &mut impl Read) -> ThriftResult<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = byte(r)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

fn zigzag(r: &mut impl Read) -> ThriftResult<i64> {
    let v = varint(r)?;
    Ok((v >> 1) as i64 ^ -((v & 1) as i64))
}

fn skip_bytes(r: &mut impl Read, n: u64) -> ThriftResult<()> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())
        .map_err(|e| format!("truncated: {e}"))?;
    if copied != n { Err("truncated binary field".to_owned()) } else { Ok(()) }
}

/// Skip one value of compact-protocol type `t`.
fn skip(r: &mut impl Read, t: u8, depth: u32) -> ThriftResult<()> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".to_owned());
    }
    match t {
        // Booleans inside a struct carry their value in the type; as list elements, one byte.
        1 | 2 => Ok(()),
        3 => byte(r).map(drop),
        4..=6 => varint(r).map(drop),
        7 => skip_bytes(r, 8),
        8 => {
            let n = varint(r)?;
            skip_bytes(r, n)
        }
        9 | 10 => {
            let h = byte(r)?;
            let n = match h >> 4 {
                15 => varint(r)?,
                n => u64::from(n),
            };
            let elem = h & 0x0f;
            for _ in 0..n {
                if matches!(elem, 1 | 2) {
                    byte(r)?;
                } else {
                    skip(r, elem, depth + 1)?;
                }
            }
            Ok(())
        }
        11 => {
            let n = varint(r)?;
            if n > 0 {
                let kv = byte(r)?;
                for _ in 0..n {
                    for t in [kv >> 4, kv & 0x0f] {
                        if matches!(t, 1 | 2) {
                            byte(r)?;
                        } else {
                            skip(r, t, depth + 1)?;
                        }
                    }
                }
            }
            Ok(())
        }
        12 => read_struct(r, depth + 1, |_, _, _| Ok(false)),
        other => Err(format!("unknown thrift type {other}")),
    }
}

/// Read a compact-protocol struct: `field(reader, id, type)` reads the fields it knows
/// (returning true), the rest are skipped.
fn read_struct<R: Read>(
    r: &mut R,
    depth: u32,
    mut field: impl FnMut(&mut R, i16, u8) -> ThriftResult<bool>,
) -> ThriftResult<()> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".to_owned());
    }
    let mut last = 0i16;
    loop {
        let h = byte(r)?;
        if h == 0 {
            return Ok(());
        }
        let t = h & 0x0f;
        let id = match h >> 4 {
            0 => i16::try_from(zigzag(r)?).map_err(|_| "field id out of range".to_owned())?,
            delta => last.checked_add(i16::from(delta)).ok_or("field id out of range")?,
        };
        last = id;
        if !field(r, id, t)? {
            skip(r, t, depth)?;
        }
    }
}

fn read_page_header(r: &mut impl Read) -> ThriftResult<PageHeader> {
    let mut h = PageHeader::default();
    let mut seen = [false; 3];
    read_struct(r, 0, |r, id, t| {
        // Fields 1-3 are i32 (compact type 5).
        if !(1..=3).contains(&id) || t != 5 {
            return Ok(false);
        }
        let v = zigzag(r)?;
        let i = (id - 1) as usize;
        seen[i] = true;
        match id {
            1 => h.page_type = v,
            2 => h.uncompressed = v,
            _ => h.compressed = v,
        }
        Ok(true)
    })?;
    if seen != [true; 3] {
        return Err("a required field (type, sizes) is missing".to_owned());
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// A header written by hand: type 0 (DATA_PAGE), 300 bytes decompressed, 7 compressed, a
    /// crc, and a nested data-page header with a list and a binary inside to skip.
    #[test]
    fn reads_the_sizes_and_skips_the_rest() {
        let mut bytes = vec![0x15, 0x00]; // field 1, i32, 0
        bytes.extend([0x15, 0xd8, 0x04]); // field 2, i32, zigzag(300) = 600
        bytes.extend([0x15, 0x0e]); // field 3, i32, 7
        bytes.extend([0x15, 0x02]); // field 4 (crc), i32
        bytes.push(0x1c); // field 5, struct
        bytes.extend([0x15, 0x02]); //   field 1, i32
        bytes.extend([0x19, 0x25, 0x02, 0x04]); //   field 2, list<i32> of 2
        bytes.extend([0x18, 0x03, b'a', b'b', b'c']); //   field 3, binary "abc"
        bytes.push(0x00); //   end of the nested struct
        bytes.push(0x00); // end
        let mut r = &bytes[..];
        let h = read_page_header(&mut r).expect("parses");
        assert_eq!(h, PageHeader { page_type: 0, uncompressed: 300, compressed: 7 });
        assert!(r.is_empty(), "the whole header is consumed");
        assert!(read_page_header(&mut &bytes[..4]).is_err(), "a truncated header is an error");
    }

    /// The sizes read from a real file are the ones parquet-rs decompresses, page by page: the
    /// largest page and the largest set held at once pass at exactly their size and are
    /// refused one byte below it, naming the row group (and the column).
    #[test]
    fn agrees_with_the_parquet_reader_on_a_written_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f.parquet");
        let values: Vec<String> =
            (0..5000).map(|i| format!("value {i} {}", "y".repeat(i % 300))).collect();
        let a: ArrayRef = Arc::new(StringArray::from_iter_values(values.iter()));
        let b: ArrayRef = Arc::new(StringArray::from_iter_values(values.iter().rev()));
        let batch = RecordBatch::try_from_iter([("s", a), ("t", b)]).expect("batch");
        let props = WriterProperties::builder()
            .set_data_page_size_limit(16 << 10)
            .set_write_batch_size(64)
            .set_max_row_group_row_count(Some(2000))
            .set_column_dictionary_enabled("t".into(), false)
            .build();
        let file = File::create(&path).expect("create");
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let reader = SerializedFileReader::new(File::open(&path).expect("open")).expect("reader");
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        // What parquet-rs decompresses: per page, and per row group dictionary + largest page.
        let (mut max_page, mut max_held, mut pages) = (0u64, 0u64, 0);
        for g in 0..meta.num_row_groups() {
            let rg = reader.get_row_group(g).expect("row group");
            let mut held = 0u64;
            for c in 0..rg.num_columns() {
                let (mut dict, mut data) = (0u64, 0u64);
                for page in rg.get_column_page_reader(c).expect("pages") {
                    let page = page.expect("page");
                    let n = page.buffer().len() as u64;
                    pages += 1;
                    max_page = max_page.max(n);
                    if page.page_type() == parquet::basic::PageType::DICTIONARY_PAGE {
                        dict += n;
                    } else {
                        data = data.max(n);
                    }
                }
                held += dict + data;
            }
            max_held = max_held.max(held);
        }
        assert!(pages > 12, "several pages per chunk: {pages}");
        let file = File::open(&path).expect("open");
        check_page_sizes(&path, &file, meta).expect("an ordinary file passes");
        check_page_sizes_with(&path, &file, meta, max_page, max_held).expect("at the limits");
        let err = check_page_sizes_with(&path, &file, meta, max_page - 1, u64::MAX)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("row group ") && err.contains("column `"), "{err}");
        let err = check_page_sizes_with(&path, &file, meta, u64::MAX, max_held - 1)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("row group ") && err.contains("at once"), "{err}");
    }
}
