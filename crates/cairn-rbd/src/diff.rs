//! Ceph's image diff stream: what `rbd export-diff` writes and `rbd import-diff` applies
//! (Ceph 16: `src/tools/rbd/action/ExportDiff.cc`, `Import.cc`).
//!
//! v1 (`"rbd diff v1\n"`), all integers little-endian; every record is a tag byte and a payload:
//!
//! | tag | payload |
//! | --- | --- |
//! | `f` | le32 length + name of the snapshot the diff starts from |
//! | `t` | le32 length + name of the snapshot the diff ends at |
//! | `s` | le64 image size at the end |
//! | `w` | le64 offset, le64 length, then that many bytes of data |
//! | `z` | le64 offset, le64 length: the range reads as zeros |
//! | `p` | u8: the end snapshot is protected (written by `rbd export --export-format 2`) |
//! | `e` | none: end of the stream |
//!
//! v2 (`"rbd diff v2\n"`) puts a le64 payload length after every tag but `e`, so a reader can skip
//! tags it does not know. Cairn writes v1 and reads both.
//!
//! Import never applies half a stream: the whole stream is read and checked first (framing,
//! bounds, extents inside the image), then read again and applied. A stream that ends early is
//! `EBADMSG` and one that breaks a rule is `EINVAL`, as in Ceph, and the image is untouched.

use crate::layout::Layout;
use crate::{Image, Progress};
use bytes::{Bytes, BytesMut};
use cairn_client::IoCtx;
use cairn_types::{Error, Result};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use std::io::SeekFrom;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

pub const BANNER_V1: &[u8] = b"rbd diff v1\n";
pub const BANNER_V2: &[u8] = b"rbd diff v2\n";
/// Longest snapshot name a stream may carry (Ceph's `read_string` limit).
pub const MAX_NAME_BYTES: u32 = 4096;
/// Largest `w` record accepted: the largest object Ceph's rbd makes (order 26). Ceph itself
/// allocates whatever length a record claims.
pub const MAX_DATA_RECORD_BYTES: u64 = 64 << 20;
/// Linux's `EBADMSG`: what Ceph's `rbd import-diff` returns for a stream that ends early.
pub const EBADMSG: i32 = 74;
/// Zero runs of this size inside a `w` record are discarded rather than written (Ceph's
/// default `--sparse-size`).
pub const SPARSE_BYTES: u64 = 4096;
/// Object reads an export keeps in flight at most…
const EXPORT_READS_IN_FLIGHT: usize = 8;
/// …and bytes (one object may exceed it: then it is read alone).
const EXPORT_BYTES_IN_FLIGHT: u64 = 64 << 20;
/// Data an import keeps in flight, in bytes (one record may exceed it: then it goes alone).
const IMPORT_BYTES_IN_FLIGHT: u64 = 64 << 20;
/// Writes an import keeps in flight.
const IMPORT_OPS_IN_FLIGHT: usize = 16;

const TAG_FROM_SNAP: u8 = b'f';
const TAG_TO_SNAP: u8 = b't';
const TAG_SIZE: u8 = b's';
const TAG_PROTECTED: u8 = b'p';
const TAG_WRITE: u8 = b'w';
const TAG_ZERO: u8 = b'z';
const TAG_END: u8 = b'e';

/// One record of a diff stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    FromSnap(String),
    ToSnap(String),
    Size(u64),
    Protected(bool),
    Write { offset: u64, data: Bytes },
    Zero { offset: u64, len: u64 },
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a checked stream says, before it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffSummary {
    pub from_snap: Option<String>,
    pub to_snap: Option<String>,
    pub protected: bool,
    /// The last `s` record.
    pub end_size: Option<u64>,
    /// Bytes the stream occupies, banner to `e`.
    pub stream_bytes: u64,
    pub write_bytes: u64,
    pub records: u64,
}

/// A changed range of an image, as `rbd diff` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    /// `false`: the range reads as zeros now.
    pub exists: bool,
}

fn truncated(what: &str) -> Error {
    Error::new(EBADMSG, format!("rbd: failed to decode {what}"))
}

// ------------------------------------------------------------------------------- writing

/// Writes a v1 stream record by record.
pub struct DiffWriter<W> {
    out: W,
    written_bytes: u64,
}

impl<W: AsyncWrite + Unpin> DiffWriter<W> {
    /// Writes the banner.
    pub async fn new(mut out: W) -> Result<Self> {
        out.write_all(BANNER_V1).await?;
        Ok(DiffWriter { out, written_bytes: BANNER_V1.len() as u64 })
    }

    pub async fn record(&mut self, record: &Record) -> Result<()> {
        let mut head = Vec::with_capacity(32);
        encode_head(record, &mut head)?;
        self.out.write_all(&head).await?;
        self.written_bytes += head.len() as u64;
        if let Record::Write { data, .. } = record {
            self.out.write_all(data).await?;
            self.written_bytes += data.len() as u64;
        }
        Ok(())
    }

    /// Writes `e`, flushes, and hands the output back.
    pub async fn finish(mut self) -> Result<W> {
        self.record(&Record::End).await?;
        self.out.flush().await?;
        Ok(self.out)
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }
}

/// A record's v1 bytes, without a `w` record's data.
fn encode_head(record: &Record, buf: &mut Vec<u8>) -> Result<()> {
    let name = |buf: &mut Vec<u8>, tag: u8, s: &str| {
        let len = u32::try_from(s.len()).ok().filter(|l| *l <= MAX_NAME_BYTES);
        let len =
            len.ok_or_else(|| Error::einval(format!("snapshot name of {} bytes is too long", s.len())))?;
        buf.push(tag);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
        Ok::<(), Error>(())
    };
    match record {
        Record::FromSnap(s) => name(buf, TAG_FROM_SNAP, s)?,
        Record::ToSnap(s) => name(buf, TAG_TO_SNAP, s)?,
        Record::Size(size) => {
            buf.push(TAG_SIZE);
            buf.extend_from_slice(&size.to_le_bytes());
        }
        Record::Protected(p) => {
            buf.push(TAG_PROTECTED);
            buf.push(u8::from(*p));
        }
        Record::Write { offset, data } => {
            buf.push(TAG_WRITE);
            buf.extend_from_slice(&offset.to_le_bytes());
            buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        Record::Zero { offset, len } => {
            buf.push(TAG_ZERO);
            buf.extend_from_slice(&offset.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
        }
        Record::End => buf.push(TAG_END),
    }
    Ok(())
}

/// The whole v1 stream of `records` (which should end with [`Record::End`]).
pub fn encode(records: &[Record]) -> Result<Vec<u8>> {
    let mut buf = BANNER_V1.to_vec();
    for r in records {
        encode_head(r, &mut buf)?;
        if let Record::Write { data, .. } = r {
            buf.extend_from_slice(data);
        }
    }
    Ok(buf)
}

// ------------------------------------------------------------------------------- reading

/// Reads a stream record by record, checking framing and bounds (not image rules).
pub struct DiffReader<R> {
    input: R,
    version: Version,
    read_bytes: u64,
    ended: bool,
}

impl<R: AsyncRead + Unpin> DiffReader<R> {
    /// Reads and checks the banner.
    pub async fn new(mut input: R) -> Result<Self> {
        let mut banner = [0u8; 12];
        debug_assert_eq!(banner.len(), BANNER_V1.len());
        read_exact(&mut input, &mut banner, "diff banner").await?;
        let version = match &banner[..] {
            b if b == BANNER_V1 => Version::V1,
            b if b == BANNER_V2 => Version::V2,
            _ => return Err(Error::einval("rbd: invalid or unexpected diff banner")),
        };
        Ok(DiffReader { input, version, read_bytes: banner.len() as u64, ended: false })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Bytes consumed so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// The next record; [`Record::End`] once the stream has ended.
    pub async fn next(&mut self) -> Result<Record> {
        loop {
            if self.ended {
                return Ok(Record::End);
            }
            let tag = self.u8("tag").await?;
            if tag == TAG_END {
                self.ended = true;
                return Ok(Record::End);
            }
            let framed_len = match self.version {
                Version::V1 => None,
                Version::V2 => Some(self.u64("tag length").await?),
            };
            let start = self.read_bytes;
            let record = match tag {
                TAG_FROM_SNAP => Record::FromSnap(self.name("start snap name").await?),
                TAG_TO_SNAP => Record::ToSnap(self.name("end snap name").await?),
                TAG_SIZE => Record::Size(self.u64("image size").await?),
                TAG_PROTECTED => Record::Protected(self.u8("snap protection status").await? != 0),
                TAG_WRITE | TAG_ZERO => self.io_record(tag).await?,
                other => match framed_len {
                    Some(len) => {
                        self.skip(len).await?;
                        continue; // Ceph skips tags it does not know in v2.
                    }
                    None => {
                        return Err(Error::einval(format!("rbd: unrecognized tag byte {other} in stream")))
                    }
                },
            };
            if let Some(len) = framed_len {
                if self.read_bytes - start != len {
                    return Err(Error::einval(format!(
                        "rbd: diff record '{}' claims {len} bytes but holds {}",
                        tag as char,
                        self.read_bytes - start
                    )));
                }
            }
            return Ok(record);
        }
    }

    async fn io_record(&mut self, tag: u8) -> Result<Record> {
        let offset = self.u64("IO length").await?;
        let len = self.u64("IO length").await?;
        if offset.checked_add(len).is_none() {
            return Err(Error::einval(format!("rbd: diff extent {offset}~{len} overflows")));
        }
        if tag == TAG_ZERO {
            return Ok(Record::Zero { offset, len });
        }
        if len > MAX_DATA_RECORD_BYTES {
            return Err(Error::einval(format!(
                "rbd: diff write record of {len} bytes is larger than the limit of {MAX_DATA_RECORD_BYTES}"
            )));
        }
        let mut data = BytesMut::zeroed(len as usize);
        read_exact(&mut self.input, &mut data, "write data").await?;
        self.read_bytes += len;
        Ok(Record::Write { offset, data: data.freeze() })
    }

    async fn u8(&mut self, what: &str) -> Result<u8> {
        let mut b = [0u8; 1];
        read_exact(&mut self.input, &mut b, what).await?;
        self.read_bytes += 1;
        Ok(b[0])
    }

    async fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        read_exact(&mut self.input, &mut b, what).await?;
        self.read_bytes += 8;
        Ok(u64::from_le_bytes(b))
    }

    async fn name(&mut self, what: &str) -> Result<String> {
        let mut b = [0u8; 4];
        read_exact(&mut self.input, &mut b, what).await?;
        let len = u32::from_le_bytes(b);
        if len > MAX_NAME_BYTES {
            return Err(Error::einval(format!("rbd: failed to decode {what}")));
        }
        let mut s = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut s, what).await?;
        self.read_bytes += 4 + u64::from(len);
        String::from_utf8(s).map_err(|_| Error::einval(format!("rbd: failed to decode {what}")))
    }

    async fn skip(&mut self, len: u64) -> Result<()> {
        if len > MAX_DATA_RECORD_BYTES {
            return Err(Error::einval(format!("rbd: diff record of {len} bytes is larger than the limit")));
        }
        let copied = tokio::io::copy(&mut (&mut self.input).take(len), &mut tokio::io::sink()).await?;
        if copied != len {
            return Err(truncated("skipped tag data"));
        }
        self.read_bytes += len;
        Ok(())
    }
}

async fn read_exact<R: AsyncRead + Unpin>(input: &mut R, buf: &mut [u8], what: &str) -> Result<()> {
    match input.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(truncated(what)),
        Err(e) => Err(e.into()),
    }
}

/// Every record of a whole in-memory stream, [`Record::End`] last.
pub async fn parse(stream: &[u8]) -> Result<Vec<Record>> {
    let mut reader = DiffReader::new(stream).await?;
    let mut out = Vec::new();
    loop {
        let r = reader.next().await?;
        let end = r == Record::End;
        out.push(r);
        if end {
            return Ok(out);
        }
    }
}

/// Reads a whole stream and checks it against an image of `start_size` bytes: framing, bounds,
/// at most one start and one end snapshot, every extent inside the image size in force where
/// it appears. Applies nothing.
pub async fn validate<R: AsyncRead + Unpin>(input: R, start_size: u64) -> Result<DiffSummary> {
    let mut reader = DiffReader::new(input).await?;
    let mut sum = DiffSummary::default();
    let mut size = start_size;
    loop {
        let record = reader.next().await?;
        sum.records += 1;
        match record {
            Record::FromSnap(s) => set_once(&mut sum.from_snap, s, "start")?,
            Record::ToSnap(s) => set_once(&mut sum.to_snap, s, "end")?,
            Record::Protected(p) => sum.protected = p,
            Record::Size(s) => {
                size = s;
                sum.end_size = Some(s);
            }
            Record::Write { offset, data } => {
                check_extent(offset, data.len() as u64, size)?;
                sum.write_bytes += data.len() as u64;
            }
            Record::Zero { offset, len } => check_extent(offset, len, size)?,
            Record::End => break,
        }
    }
    sum.stream_bytes = reader.read_bytes();
    Ok(sum)
}

fn set_once(slot: &mut Option<String>, name: String, which: &str) -> Result<()> {
    if slot.is_some() {
        return Err(Error::einval(format!("rbd: diff names its {which} snapshot twice")));
    }
    *slot = Some(name);
    Ok(())
}

fn check_extent(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::einval(format!("rbd: diff extent {offset}~{len} is beyond the image size {size}"))),
    }
}

// ------------------------------------------------------------------------------- export

/// The ranges that differ between snapshot `from` (or the image's creation) and the image as
/// opened, one piece per object as Ceph's `diff_iterate` reports them, in image order. A
/// clone's ranges still read from its parent count as data.
pub async fn changed_extents(image: &Image, from: Option<&str>) -> Result<Vec<Extent>> {
    let layout = image.layout();
    let mut merged = Vec::new();
    image
        .diff_iterate(from, 0, image.size(), true, &mut |offset, len, exists| {
            merged.push(Extent { offset, len, exists });
            Ok(())
        })
        .await?;
    let mut out = Vec::with_capacity(merged.len());
    for e in merged {
        split_by_object(&layout, e, &mut out);
    }
    Ok(out)
}

fn split_by_object(layout: &Layout, e: Extent, out: &mut Vec<Extent>) {
    for piece in layout.extents(e.offset, e.len) {
        match out.last_mut() {
            // Striped layouts cut an object's range into stripe units: keep pieces of one
            // object together when they touch in the image.
            Some(last)
                if last.exists == e.exists
                    && last.offset + last.len == piece.image_offset
                    && object_of(layout, last.offset) == piece.object_no =>
            {
                last.len += piece.len
            }
            _ => out.push(Extent { offset: piece.image_offset, len: piece.len, exists: e.exists }),
        }
    }
}

fn object_of(layout: &Layout, image_offset: u64) -> u64 {
    layout.extents(image_offset, 1).first().map_or(u64::MAX, |e| e.object_no)
}

/// Writes the diff between snapshot `from_snap` (or the image's creation) and the image as
/// opened (a snapshot, or the head) to `out` as a v1 stream, as `rbd export-diff` does: one
/// record per changed object piece, `z` for pieces that are gone or read as zeros. Returns the
/// output and the stream's length.
pub async fn export_diff<W: AsyncWrite + Unpin>(
    image: &Image,
    from_snap: Option<&str>,
    out: W,
    progress: &Progress<'_>,
) -> Result<(W, u64)> {
    let size = image.size();
    let header = image.header();
    let to_snap = image.snap_id().and_then(|id| header.snap(id)).map(|s| s.name.clone());
    let extents = changed_extents(image, from_snap).await?;
    let per_object = image.layout().object_size.max(1);
    let reads_in_flight = ((EXPORT_BYTES_IN_FLIGHT / per_object) as usize).clamp(1, EXPORT_READS_IN_FLIGHT);
    let mut w = DiffWriter::new(out).await?;
    if let Some(from) = from_snap {
        w.record(&Record::FromSnap(from.to_string())).await?;
    }
    if let Some(to) = to_snap {
        w.record(&Record::ToSnap(to)).await?;
    }
    w.record(&Record::Size(size)).await?;
    let mut records = futures::stream::iter(extents)
        .map(|e| async move {
            if !e.exists {
                return Ok::<_, Error>(Record::Zero { offset: e.offset, len: e.len });
            }
            let data = image.read(e.offset, e.len).await?;
            if data.iter().all(|b| *b == 0) {
                Ok(Record::Zero { offset: e.offset, len: e.len })
            } else {
                Ok(Record::Write { offset: e.offset, data })
            }
        })
        .buffered(reads_in_flight);
    while let Some(record) = records.try_next().await? {
        w.record(&record).await?;
        if let Record::Write { offset, .. } | Record::Zero { offset, .. } = record {
            progress(offset, size);
        }
    }
    let len = w.written_bytes() + 1;
    let out = w.finish().await?;
    Ok((out, len))
}

// ------------------------------------------------------------------------------- import

/// Applies a whole stream to image `image_name` of `io`'s pool (opened and closed here), as
/// `rbd import-diff` does. See [`apply_diff`].
pub async fn import_diff<R: AsyncRead + AsyncSeek + Unpin>(
    io: &IoCtx,
    image_name: &str,
    input: &mut R,
    progress: &Progress<'_>,
) -> Result<DiffSummary> {
    let image = Image::open(io, image_name, None, false).await?;
    let result = apply_diff(&image, input, progress).await;
    let closed = image.close().await;
    let summary = result?;
    closed?;
    Ok(summary)
}

/// Checks the whole stream first (see [`validate`]) and Ceph's rules: the image must have the
/// start snapshot (EINVAL) and must not have the end snapshot (EEXIST). Only then applies it:
/// resizes to each `s`, writes `w` (4 KiB zero runs inside it are discarded), discards `z`,
/// and at the end takes the end snapshot (protected if the stream says so).
pub async fn apply_diff<R: AsyncRead + AsyncSeek + Unpin>(
    image: &Image,
    input: &mut R,
    progress: &Progress<'_>,
) -> Result<DiffSummary> {
    image.refresh().await?;
    input.seek(SeekFrom::Start(0)).await?;
    let summary = validate(&mut *input, image.size()).await?;
    let header = image.header();
    if let Some(from) = &summary.from_snap {
        if header.user_snap_named(from).is_none() {
            return Err(Error::einval(format!(
                "start snapshot '{from}' does not exist in the image, aborting"
            )));
        }
    }
    if let Some(to) = &summary.to_snap {
        if header.user_snap_named(to).is_some() {
            return Err(Error::eexist(format!("end snapshot '{to}' already exists, aborting")));
        }
    }
    input.seek(SeekFrom::Start(0)).await?;
    let mut reader = DiffReader::new(&mut *input).await?;
    let mut inflight = InFlight::new(image);
    loop {
        match reader.next().await? {
            Record::Size(size) => {
                inflight.drain().await?;
                if size != image.size() {
                    image.resize(size, true, &crate::no_progress).await?;
                }
            }
            Record::Write { offset, data } => {
                for piece in sparse_pieces(offset, &data) {
                    inflight.push(piece).await?;
                }
            }
            Record::Zero { offset, len } => inflight.push(Piece::Zero(offset, len)).await?,
            Record::End => break,
            Record::FromSnap(_) | Record::ToSnap(_) | Record::Protected(_) => {}
        }
        progress(reader.read_bytes(), summary.stream_bytes);
    }
    inflight.drain().await?;
    if let Some(to) = &summary.to_snap {
        image.snap_create(to).await?;
        if summary.protected {
            image.snap_set_protection(to, true).await?;
        }
    }
    Ok(summary)
}

/// A piece of a `w` record: data to write, or a run of zero blocks to discard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Data(u64, Bytes),
    Zero(u64, u64),
}

/// `data` at `offset` cut into runs of data and runs of zero [`SPARSE_BYTES`] blocks, as
/// Ceph's `calc_sparse_extent` does.
fn sparse_pieces(offset: u64, data: &Bytes) -> Vec<Piece> {
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let end = (at + SPARSE_BYTES as usize).min(data.len());
        let zero = data[at..end].iter().all(|b| *b == 0);
        match runs.last_mut() {
            Some((_, run_end, z)) if *z == zero => *run_end = end,
            _ => runs.push((at, end, zero)),
        }
        at = end;
    }
    runs.into_iter()
        .map(|(start, end, zero)| {
            let off = offset + start as u64;
            if zero {
                Piece::Zero(off, (end - start) as u64)
            } else {
                Piece::Data(off, data.slice(start..end))
            }
        })
        .collect()
}

/// `(offset, len, data bytes)` of an op in flight.
type Span = (u64, u64, u64);
type Pending<'a> = futures::future::BoxFuture<'a, Result<Span>>;

/// Writes and discards in flight during an import, bounded in count and bytes; a range that
/// overlaps one in flight first waits for everything in flight, so stream order wins.
struct InFlight<'a> {
    image: &'a Image,
    ops: FuturesUnordered<Pending<'a>>,
    spans: Vec<Span>,
    bytes: u64,
}

impl<'a> InFlight<'a> {
    fn new(image: &'a Image) -> Self {
        InFlight { image, ops: FuturesUnordered::new(), spans: Vec::new(), bytes: 0 }
    }

    async fn push(&mut self, piece: Piece) -> Result<()> {
        let image = self.image;
        let span = match &piece {
            Piece::Data(off, d) => (*off, d.len() as u64, d.len() as u64),
            Piece::Zero(off, len) => (*off, *len, 0),
        };
        if span.1 == 0 {
            return Ok(());
        }
        self.make_room(span).await?;
        self.ops.push(match piece {
            Piece::Data(off, d) => Box::pin(async move { image.write(off, d).await.map(|_| span) }),
            Piece::Zero(off, len) => Box::pin(async move { image.discard(off, len).await.map(|_| span) }),
        });
        self.spans.push(span);
        self.bytes += span.2;
        Ok(())
    }

    async fn make_room(&mut self, (offset, len, bytes): Span) -> Result<()> {
        if self.spans.iter().any(|(o, l, _)| offset < o + l && *o < offset + len) {
            return self.drain().await;
        }
        while !self.ops.is_empty()
            && (self.ops.len() >= IMPORT_OPS_IN_FLIGHT || self.bytes + bytes > IMPORT_BYTES_IN_FLIGHT)
        {
            self.complete_one().await?;
        }
        Ok(())
    }

    async fn complete_one(&mut self) -> Result<()> {
        if let Some(done) = self.ops.next().await {
            let span = done?;
            if let Some(i) = self.spans.iter().position(|s| *s == span) {
                self.spans.swap_remove(i);
                self.bytes -= span.2;
            }
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<()> {
        while !self.ops.is_empty() {
            self.complete_one().await?;
        }
        debug_assert!(self.spans.is_empty() && self.bytes == 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::errno;

    fn is_stream_error(e: &Error) -> bool {
        e.errno == EBADMSG || e.errno == errno::EINVAL
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::FromSnap("s1".into()),
            Record::ToSnap("s2".into()),
            Record::Size(12 << 20),
            Record::Write { offset: 0, data: Bytes::from(vec![0x67; 4096]) },
            Record::Write { offset: 8192, data: Bytes::from((0..=255u8).collect::<Vec<_>>()) },
            Record::Zero { offset: 2 << 20, len: 4096 },
            Record::End,
        ]
    }

    #[tokio::test]
    async fn records_round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert!(bytes.starts_with(BANNER_V1));
        assert_eq!(parse(&bytes).await.unwrap(), sample());
        let mut w = DiffWriter::new(Vec::new()).await.unwrap();
        for r in &sample()[..sample().len() - 1] {
            w.record(r).await.unwrap();
        }
        let len = w.written_bytes() + 1;
        let out = w.finish().await.unwrap();
        assert_eq!(out, bytes, "the writer and encode() agree");
        assert_eq!(out.len() as u64, len);
        let sum = validate(&bytes[..], 8 << 20).await.unwrap();
        assert_eq!(sum.from_snap.as_deref(), Some("s1"));
        assert_eq!(sum.to_snap.as_deref(), Some("s2"));
        assert_eq!(sum.end_size, Some(12 << 20));
        assert_eq!(sum.write_bytes, 4096 + 256);
        assert_eq!(sum.stream_bytes, bytes.len() as u64);
    }

    #[tokio::test]
    async fn every_truncation_is_refused() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            let err = validate(&bytes[..cut], 8 << 20).await.expect_err("a truncated stream is refused");
            assert_eq!(err.errno, EBADMSG, "cut at {cut}: {}", err.message);
        }
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        for junk in [&b"garbage"[..], b"rbd diff v3\nxxxxxxxx", b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0"] {
            let err = validate(junk, 1 << 20).await.unwrap_err();
            assert!(is_stream_error(&err), "{junk:?}: {err:?}");
        }
        let mut bytes = BANNER_V1.to_vec();
        bytes.push(b'Q');
        assert_eq!(validate(&bytes[..], 0).await.unwrap_err().errno, errno::EINVAL);
        // A name longer than 4 KiB, a write past the limit, an extent past the image end, an
        // offset that overflows.
        let mut long_name = BANNER_V1.to_vec();
        long_name.push(b't');
        long_name.extend_from_slice(&5000u32.to_le_bytes());
        long_name.extend_from_slice(&[b'a'; 5000]);
        let huge_write = [BANNER_V1, b"w", &0u64.to_le_bytes(), &(1u64 << 40).to_le_bytes()].concat();
        let past_end =
            encode(&[Record::Size(4096), Record::Zero { offset: 4096, len: 1 }, Record::End]).unwrap();
        let overflow = [BANNER_V1, b"z", &u64::MAX.to_le_bytes(), &2u64.to_le_bytes()].concat();
        for bad in [long_name, huge_write, past_end, overflow] {
            assert_eq!(validate(&bad[..], 1 << 50).await.unwrap_err().errno, errno::EINVAL);
        }
        // Pseudo-random bytes after a valid banner never pass, never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let mut junk = BANNER_V1.to_vec();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                junk.push(x as u8);
            }
            if let Err(e) = validate(&junk[..], 1 << 30).await {
                assert!(is_stream_error(&e), "{e:?}");
            }
        }
    }

    #[tokio::test]
    async fn v2_streams_are_read_and_unknown_tags_skipped() {
        let mut v2 = BANNER_V2.to_vec();
        let mut rec = |tag: u8, payload: &[u8]| {
            v2.push(tag);
            v2.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            v2.extend_from_slice(payload);
        };
        rec(b't', &[&2u32.to_le_bytes()[..], b"s9"].concat());
        rec(b's', &8192u64.to_le_bytes());
        rec(b'X', b"ignored");
        rec(b'p', &[1]);
        rec(b'w', &[&4096u64.to_le_bytes()[..], &3u64.to_le_bytes(), b"abc"].concat());
        v2.push(b'e');
        let records = parse(&v2).await.unwrap();
        assert_eq!(
            records,
            vec![
                Record::ToSnap("s9".into()),
                Record::Size(8192),
                Record::Protected(true),
                Record::Write { offset: 4096, data: Bytes::from_static(b"abc") },
                Record::End
            ]
        );
        // A v2 record whose length does not match its payload.
        let mut bad = BANNER_V2.to_vec();
        bad.push(b's');
        bad.extend_from_slice(&9u64.to_le_bytes());
        bad.extend_from_slice(&[0; 9]);
        bad.push(b'e');
        assert_eq!(validate(&bad[..], 0).await.unwrap_err().errno, errno::EINVAL);
    }

    #[test]
    fn zero_blocks_inside_writes_become_discards() {
        let mut data = vec![7u8; 3 * 4096 + 100];
        data[4096..8192].fill(0);
        let data = Bytes::from(data);
        assert_eq!(
            sparse_pieces(1 << 20, &data),
            vec![
                Piece::Data(1 << 20, data.slice(..4096)),
                Piece::Zero((1 << 20) + 4096, 4096),
                Piece::Data((1 << 20) + 8192, data.slice(8192..)),
            ]
        );
    }
}
