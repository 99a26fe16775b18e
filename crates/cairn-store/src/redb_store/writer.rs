//! The write side: store initialisation, the committer thread (group commit) and how each op
//! changes the tables. Also the table-level read helpers shared with the read path.

use super::keys::{self, chunk_key, log_key, object_key, pg_prefix, prefix_end, sub_key};
use super::queue::{Pending, SubmitQueue};
use super::records::{self, chunk_data_len, decode_chunk, encode_chunk_into, CHUNK_HEADER_BYTES};
use super::*;
use crate::validate::{self, LogView};
use crate::Op;
use redb::{Durability, Table, WriteTransaction};
use std::collections::BTreeSet;

/// Creates the tables and bookkeeping of a new store, or checks those of an existing one.
/// Returns the store's chunk size.
pub(super) fn init_store(db: &redb::Database, new_chunk_bytes: u32) -> Result<u64> {
    let wtx = db.begin_write().map_err(eio("initialising the store"))?;
    let chunk_bytes = {
        for table in [OBJECTS, CHUNKS, XATTRS, OMAP, OMAP_HEADERS, PG_LOG, PG_META, OSD_META] {
            wtx.open_table(table).map_err(eio("creating tables"))?;
        }
        let mut info = wtx.open_table(STORE_INFO).map_err(eio("creating tables"))?;
        let format = info.get(INFO_FORMAT).map_err(eio("reading store info"))?.map(|v| v.value().to_vec());
        match format {
            None => {
                info.insert(INFO_FORMAT, &FORMAT_VERSION.to_le_bytes()[..]).map_err(eio("init"))?;
                info.insert(INFO_CHUNK_BYTES, &u64::from(new_chunk_bytes).to_le_bytes()[..])
                    .map_err(eio("init"))?;
                info.insert(INFO_USED_BYTES, &0u64.to_le_bytes()[..]).map_err(eio("init"))?;
                u64::from(new_chunk_bytes)
            }
            Some(v) if v == FORMAT_VERSION.to_le_bytes() => {
                let chunk_bytes = get_u64(&info, INFO_CHUNK_BYTES)?;
                if !(u64::from(MIN_CHUNK_BYTES)..=u64::from(MAX_CHUNK_BYTES)).contains(&chunk_bytes) {
                    return Err(Error::eio(format!("store records a bad chunk size {chunk_bytes}")));
                }
                chunk_bytes
            }
            Some(v) => {
                return Err(Error::new(
                    errno::EINVAL,
                    format!("store format {v:?} is not supported (this build reads {FORMAT_VERSION})"),
                ));
            }
        }
    };
    wtx.commit().map_err(eio("initialising the store"))?;
    Ok(chunk_bytes)
}

pub(super) fn spawn_committer(
    db: Arc<redb::Database>,
    queue: Arc<SubmitQueue>,
    counters: Arc<Counters>,
    chunk_bytes: u64,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cairn-store-commit".into())
        .spawn(move || {
            // However the thread ends, nothing queued may wait forever.
            struct FailQueuedOnExit(Arc<SubmitQueue>);
            impl Drop for FailQueuedOnExit {
                fn drop(&mut self) {
                    self.0.fail_all("committer thread ended");
                }
            }
            let _guard = FailQueuedOnExit(queue.clone());
            while let Some(batch) = queue.pop_batch() {
                commit_batch(&db, batch, chunk_bytes, &counters);
            }
        })
        .map_err(|e| Error::eio(format!("starting the committer thread: {e}")))
}

/// Why a batch attempt stopped.
enum BatchFailure {
    /// Applying transaction `index` failed midway: drop it and replay the others.
    Apply { index: usize, error: Error },
    /// The redb transaction itself failed: the whole batch fails.
    Commit(Error),
}

/// Commits `batch` in one redb write transaction and resolves every receiver.
fn commit_batch(db: &redb::Database, mut batch: Vec<Pending>, chunk_bytes: u64, counters: &Counters) {
    loop {
        match run_batch(db, &batch, chunk_bytes) {
            Ok(outcomes) => {
                let ok = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                if ok > 0 {
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                }
                counters.txns_committed.fetch_add(ok, Ordering::Relaxed);
                counters.txns_failed.fetch_add(outcomes.len() as u64 - ok, Ordering::Relaxed);
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    p.resolve(outcome);
                }
                return;
            }
            Err(BatchFailure::Apply { index, error }) => {
                tracing::warn!(%error, "object store transaction failed while applying");
                counters.txns_failed.fetch_add(1, Ordering::Relaxed);
                batch.remove(index).resolve(Err(error));
                if batch.is_empty() {
                    return;
                }
                counters.replays.fetch_add(1, Ordering::Relaxed);
            }
            Err(BatchFailure::Commit(error)) => {
                tracing::error!(%error, txns = batch.len(), "object store commit failed");
                counters.txns_failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for p in batch {
                    p.resolve(Err(error.clone()));
                }
                return;
            }
        }
    }
}

fn commit_err<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> BatchFailure {
    move |e| BatchFailure::Commit(eio(context)(e))
}

/// One attempt at a batch: the outcome of each transaction if the redb commit succeeded.
fn run_batch(
    db: &redb::Database,
    batch: &[Pending],
    chunk_bytes: u64,
) -> std::result::Result<Vec<Result<()>>, BatchFailure> {
    let mut wtx = db.begin_write().map_err(commit_err("beginning a write"))?;
    wtx.set_durability(Durability::Immediate).map_err(commit_err("setting durability"))?;
    let outcomes = {
        let mut tables = WriteTables::open(&wtx, chunk_bytes).map_err(BatchFailure::Commit)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, p) in batch.iter().enumerate() {
            if let Err(e) = validate::check(&p.txn, &tables) {
                outcomes.push(Err(e));
                continue;
            }
            for op in &p.txn.ops {
                tables.apply(op).map_err(|error| BatchFailure::Apply { index, error })?;
            }
            outcomes.push(Ok(()));
        }
        tables.flush_used_bytes().map_err(BatchFailure::Commit)?;
        outcomes
    };
    if outcomes.iter().all(|o| o.is_err()) {
        // Nothing to make durable.
        wtx.abort().map_err(commit_err("aborting"))?;
    } else {
        wtx.commit().map_err(commit_err("committing"))?;
    }
    Ok(outcomes)
}

/// Every table, open in one write transaction, plus the running used-bytes counter.
pub(crate) struct WriteTables<'txn> {
    objects: Table<'txn, Bin, Bin>,
    chunks: Table<'txn, Bin, Bin>,
    xattrs: Table<'txn, Bin, Bin>,
    omap: Table<'txn, Bin, Bin>,
    omap_headers: Table<'txn, Bin, Bin>,
    pg_log: Table<'txn, Bin, Bin>,
    pg_meta: Table<'txn, Bin, Bin>,
    osd_meta: Table<'txn, Bin, Bin>,
    info: Table<'txn, Bin, Bin>,
    used_bytes: u64,
    chunk_bytes: u64,
}

impl LogView for WriteTables<'_> {
    fn log_last(&self, pg: PgId, at_most: Option<Version>) -> Result<Option<Version>> {
        let lower = log_key(pg, Version::default());
        let upper = log_key(pg, at_most.unwrap_or(Version { epoch: u64::MAX, seq: u64::MAX }));
        let mut range = self.pg_log.range::<&[u8]>(&lower[..]..=&upper[..]).map_err(eio("reading pg log"))?;
        match range.next_back() {
            Some(entry) => {
                let (k, _) = entry.map_err(eio("reading pg log"))?;
                Ok(Some(keys::decode_log_key(k.value())?.1))
            }
            None => Ok(None),
        }
    }
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(wtx: &'txn WriteTransaction, chunk_bytes: u64) -> Result<Self> {
        let open = |def| wtx.open_table(def).map_err(eio("opening a table"));
        let info = open(STORE_INFO)?;
        let used_bytes = get_u64(&info, INFO_USED_BYTES)?;
        Ok(WriteTables {
            objects: open(OBJECTS)?,
            chunks: open(CHUNKS)?,
            xattrs: open(XATTRS)?,
            omap: open(OMAP)?,
            omap_headers: open(OMAP_HEADERS)?,
            pg_log: open(PG_LOG)?,
            pg_meta: open(PG_META)?,
            osd_meta: open(OSD_META)?,
            info,
            used_bytes,
            chunk_bytes,
        })
    }

    fn flush_used_bytes(&mut self) -> Result<()> {
        self.info
            .insert(INFO_USED_BYTES, &self.used_bytes.to_le_bytes()[..])
            .map_err(eio("writing used bytes"))?;
        Ok(())
    }

    fn resize_accounting(&mut self, old_size: u64, new_size: u64) {
        // Sizes are bounded by MAX_OBJECT_SIZE_BYTES; the sum cannot overflow, and must not
        // underflow unless the counter is corrupt.
        debug_assert!(self.used_bytes >= old_size, "used-bytes counter below an object size");
        self.used_bytes = self.used_bytes.saturating_sub(old_size).saturating_add(new_size);
    }

    /// Applies one checked op. An error leaves the write transaction half-changed: the caller
    /// must abort it.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Touch { pg, oid } => self.ensure(*pg, oid).map(drop),
            Op::Write { pg, oid, offset, data } => self.write(*pg, oid, *offset, data),
            Op::Zero { pg, oid, offset, len } => self.zero(*pg, oid, *offset, *len),
            Op::Truncate { pg, oid, size } => self.truncate(*pg, oid, *size),
            Op::Remove { pg, oid } => self.remove(*pg, oid),
            Op::CloneData { pg, src, dst } => self.clone_data(*pg, src, dst),
            Op::SetMeta { pg, oid, version, mtime_ns } => {
                let (okey, mut meta) = self.ensure(*pg, oid)?;
                meta.version = *version;
                meta.mtime_ns = *mtime_ns;
                self.put_meta(&okey, &meta)
            }
            Op::SetXattr { pg, oid, key, value } => {
                let (okey, _) = self.ensure(*pg, oid)?;
                insert(&mut self.xattrs, &sub_key(&okey, key), value, "writing xattr")
            }
            Op::RmXattr { pg, oid, key } => {
                let okey = object_key(*pg, oid);
                if self.exists(&okey)? {
                    remove(&mut self.xattrs, &sub_key(&okey, key), "removing xattr")?;
                }
                Ok(())
            }
            Op::OmapSet { pg, oid, entries } => {
                let (okey, _) = self.ensure(*pg, oid)?;
                for (k, v) in entries {
                    insert(&mut self.omap, &sub_key(&okey, k), v, "writing omap")?;
                }
                Ok(())
            }
            Op::OmapRm { pg, oid, keys } => {
                let okey = object_key(*pg, oid);
                if self.exists(&okey)? {
                    for k in keys {
                        remove(&mut self.omap, &sub_key(&okey, k), "removing omap key")?;
                    }
                }
                Ok(())
            }
            Op::OmapClear { pg, oid } => {
                let (okey, _) = self.ensure(*pg, oid)?;
                delete_prefix(&mut self.omap, &okey)?;
                remove(&mut self.omap_headers, &okey, "removing omap header")
            }
            Op::OmapSetHeader { pg, oid, header } => {
                let (okey, _) = self.ensure(*pg, oid)?;
                insert(&mut self.omap_headers, &okey, header, "writing omap header")
            }
            Op::LogAppend { pg, version, entry } => {
                insert(&mut self.pg_log, &log_key(*pg, *version), entry, "appending to pg log")
            }
            Op::LogTrim { pg, upto } => {
                let (lower, upper) = (log_key(*pg, Version::default()), log_key(*pg, *upto));
                retain_none(&mut self.pg_log, Bound::Included(&lower[..]), Bound::Included(&upper[..]))
            }
            Op::LogTruncate { pg, after } => {
                let lower = log_key(*pg, *after);
                let end = prefix_end(&pg_prefix(*pg));
                retain_none(&mut self.pg_log, Bound::Excluded(&lower[..]), end_bound(&end))
            }
            Op::PgMetaSet { pg, key, value } => {
                insert(&mut self.pg_meta, &sub_key(&pg_prefix(*pg), key), value, "writing pg meta")
            }
            Op::RemovePg { pg } => self.remove_pg(*pg),
            Op::MetaSet { key, value } => {
                insert(&mut self.osd_meta, key.as_bytes(), value, "writing osd meta")
            }
        }
    }

    fn exists(&self, okey: &[u8]) -> Result<bool> {
        Ok(self.objects.get(okey).map_err(eio("reading object metadata"))?.is_some())
    }

    /// The object's key and metadata, creating it (empty) if it does not exist.
    fn ensure(&mut self, pg: PgId, oid: &ObjectId) -> Result<(Vec<u8>, ObjectMeta)> {
        let okey = object_key(pg, oid);
        match get_meta(&self.objects, &okey, pg, oid)? {
            Some(meta) => Ok((okey, meta)),
            None => {
                let meta = ObjectMeta::default();
                self.put_meta(&okey, &meta)?;
                Ok((okey, meta))
            }
        }
    }

    fn put_meta(&mut self, okey: &[u8], meta: &ObjectMeta) -> Result<()> {
        insert(&mut self.objects, okey, &records::encode_meta(meta)?, "writing object metadata")
    }

    /// The chunk's verified data, or `None` for a hole.
    fn chunk(&self, okey: &[u8], index: u64, pg: PgId, oid: &ObjectId) -> Result<Option<Vec<u8>>> {
        let record = self.chunks.get(chunk_key(okey, index).as_slice()).map_err(eio("reading chunk"))?;
        match record {
            Some(r) => Ok(Some(decode_chunk(r.value(), || chunk_name(pg, oid, index))?.to_vec())),
            None => Ok(None),
        }
    }

    fn put_chunk(&mut self, okey: &[u8], index: u64, data: &[u8]) -> Result<()> {
        debug_assert!(data.len() as u64 <= self.chunk_bytes);
        // Encoded straight into the page redb reserves: the data is copied once here.
        let key = chunk_key(okey, index);
        let mut value = self
            .chunks
            .insert_reserve(&key[..], CHUNK_HEADER_BYTES + data.len())
            .map_err(eio("writing chunk"))?;
        encode_chunk_into(data, value.as_mut());
        Ok(())
    }

    fn write(&mut self, pg: PgId, oid: &ObjectId, offset: u64, data: &[u8]) -> Result<()> {
        let (okey, mut meta) = self.ensure(pg, oid)?;
        if data.is_empty() {
            return Ok(());
        }
        let c = self.chunk_bytes;
        let end = offset + data.len() as u64; // checked by validate
        let mut pos = offset;
        while pos < end {
            let index = pos / c;
            let chunk_start = index * c;
            let (lo, hi) = ((pos - chunk_start) as usize, (end.min(chunk_start + c) - chunk_start) as usize);
            let piece = &data[(pos - offset) as usize..][..hi - lo];
            if lo == 0 && hi as u64 == c {
                // A whole chunk: nothing of the old one survives.
                self.put_chunk(&okey, index, piece)?;
                pos = chunk_start + c;
                continue;
            }
            let mut buf = self.chunk(&okey, index, pg, oid)?.unwrap_or_default();
            if buf.len() < hi {
                buf.resize(hi, 0);
            }
            buf[lo..hi].copy_from_slice(piece);
            self.put_chunk(&okey, index, &buf)?;
            pos = chunk_start + hi as u64;
        }
        if end > meta.size {
            self.resize_accounting(meta.size, end);
            meta.size = end;
            self.put_meta(&okey, &meta)?;
        }
        Ok(())
    }

    /// `(index, stored data length)` of the stored chunks of the object from `first` on.
    fn stored_chunks(&self, okey: &[u8], first: u64, last: u64) -> Result<Vec<(u64, u64)>> {
        let (lower, upper) = (chunk_key(okey, first), chunk_key(okey, last));
        let mut out = Vec::new();
        let range = self
            .chunks
            .range::<&[u8]>(lower.as_slice()..=upper.as_slice())
            .map_err(eio("scanning chunks"))?;
        for entry in range {
            let (k, v) = entry.map_err(eio("scanning chunks"))?;
            out.push((keys::chunk_index(k.value(), okey.len())?, chunk_data_len(v.value()) as u64));
        }
        Ok(out)
    }

    /// Stores zeros in `[from, to)` (object offsets) of stored chunks: whole chunks become
    /// holes, a zeroed tail is cut off, anything else is zero-filled in place.
    fn clear_range(&mut self, pg: PgId, oid: &ObjectId, okey: &[u8], from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let c = self.chunk_bytes;
        for (index, stored_len) in self.stored_chunks(okey, from / c, (to - 1) / c)? {
            let chunk_start = index * c;
            let stored_end = chunk_start + stored_len;
            let (lo, hi) = (from.max(chunk_start), to.min(stored_end));
            if lo >= hi {
                continue;
            }
            if lo == chunk_start && hi == stored_end {
                remove(&mut self.chunks, &chunk_key(okey, index), "removing chunk")?;
                continue;
            }
            let mut buf = self.chunk(okey, index, pg, oid)?.unwrap_or_default();
            let (lo, hi) = ((lo - chunk_start) as usize, (hi - chunk_start) as usize);
            if hi == buf.len() {
                buf.truncate(lo);
            } else {
                buf[lo..hi].fill(0);
            }
            self.put_chunk(okey, index, &buf)?;
        }
        Ok(())
    }

    fn zero(&mut self, pg: PgId, oid: &ObjectId, offset: u64, len: u64) -> Result<()> {
        let (okey, meta) = self.ensure(pg, oid)?;
        let end = offset.saturating_add(len).min(meta.size);
        self.clear_range(pg, oid, &okey, offset, end)
    }

    fn truncate(&mut self, pg: PgId, oid: &ObjectId, size: u64) -> Result<()> {
        let (okey, mut meta) = self.ensure(pg, oid)?;
        if size < meta.size {
            // Stored bytes never extend past the size, so growing later reads zeros.
            self.clear_range(pg, oid, &okey, size, meta.size)?;
        }
        if size != meta.size {
            self.resize_accounting(meta.size, size);
            meta.size = size;
            self.put_meta(&okey, &meta)?;
        }
        Ok(())
    }

    fn clone_data(&mut self, pg: PgId, src: &ObjectId, dst: &ObjectId) -> Result<()> {
        if src == dst {
            return self.ensure(pg, dst).map(drop);
        }
        let skey = object_key(pg, src);
        let from = get_meta(&self.objects, &skey, pg, src)?.unwrap_or_default();
        let (dkey, old) = self.ensure(pg, dst)?;
        delete_prefix(&mut self.chunks, &dkey)?;
        // Chunk records carry their own checksum of the data only: copy them verbatim.
        let mut records = Vec::new();
        let (lower, upper) = (chunk_key(&skey, 0), chunk_key(&skey, u64::MAX));
        for entry in
            self.chunks.range::<&[u8]>(lower.as_slice()..=upper.as_slice()).map_err(eio("scanning chunks"))?
        {
            let (k, v) = entry.map_err(eio("scanning chunks"))?;
            records.push((keys::chunk_index(k.value(), skey.len())?, v.value().to_vec()));
        }
        for (index, record) in records {
            insert(&mut self.chunks, &chunk_key(&dkey, index), &record, "writing chunk")?;
        }
        self.resize_accounting(old.size, from.size);
        self.put_meta(&dkey, &from)
    }

    fn remove(&mut self, pg: PgId, oid: &ObjectId) -> Result<()> {
        let okey = object_key(pg, oid);
        let Some(meta) = get_meta(&self.objects, &okey, pg, oid)? else {
            return Ok(());
        };
        self.resize_accounting(meta.size, 0);
        remove(&mut self.objects, &okey, "removing object")?;
        remove(&mut self.omap_headers, &okey, "removing omap header")?;
        delete_prefix(&mut self.chunks, &okey)?;
        delete_prefix(&mut self.xattrs, &okey)?;
        delete_prefix(&mut self.omap, &okey)
    }

    fn remove_pg(&mut self, pg: PgId) -> Result<()> {
        let prefix = pg_prefix(pg);
        let end = prefix_end(&prefix);
        let mut removed_bytes = 0u64;
        let range = self
            .objects
            .range::<&[u8]>((Bound::Included(&prefix[..]), end_bound(&end)))
            .map_err(eio("scanning pg objects"))?;
        for entry in range {
            let (k, v) = entry.map_err(eio("scanning pg objects"))?;
            match records::decode_meta(v.value(), || format!("object key {:02x?} in pg {pg}", k.value())) {
                Ok(meta) => removed_bytes += meta.size,
                // Removing the PG is how a damaged one is dropped; do not let it block that.
                Err(error) => tracing::warn!(%error, "removing an undecodable object"),
            }
        }
        self.resize_accounting(removed_bytes, 0);
        for table in [
            &mut self.objects,
            &mut self.chunks,
            &mut self.xattrs,
            &mut self.omap,
            &mut self.omap_headers,
            &mut self.pg_log,
            &mut self.pg_meta,
        ] {
            delete_prefix(table, &prefix)?;
        }
        Ok(())
    }
}

fn insert(table: &mut Table<'_, Bin, Bin>, key: &[u8], value: &[u8], context: &str) -> Result<()> {
    table.insert(key, value).map_err(eio(context))?;
    Ok(())
}

fn remove(table: &mut Table<'_, Bin, Bin>, key: &[u8], context: &str) -> Result<()> {
    table.remove(key).map_err(eio(context))?;
    Ok(())
}

fn retain_none(table: &mut Table<'_, Bin, Bin>, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Result<()> {
    table.retain_in::<&[u8], _>((lower, upper), |_, _| false).map_err(eio("deleting a key range"))
}

/// Deletes every key starting with `prefix`.
fn delete_prefix(table: &mut Table<'_, Bin, Bin>, prefix: &[u8]) -> Result<()> {
    let end = prefix_end(prefix);
    retain_none(table, Bound::Included(prefix), end_bound(&end))
}

fn chunk_name(pg: PgId, oid: &ObjectId, index: u64) -> String {
    format!("object '{oid}' in pg {pg} chunk {index}")
}

pub(crate) fn get_meta(
    objects: &impl ReadableTable<Bin, Bin>,
    okey: &[u8],
    pg: PgId,
    oid: &ObjectId,
) -> Result<Option<ObjectMeta>> {
    match objects.get(okey).map_err(eio("reading object metadata"))? {
        Some(v) => Ok(Some(records::decode_meta(v.value(), || format!("object '{oid}' in pg {pg}"))?)),
        None => Ok(None),
    }
}

pub(crate) fn get_u64(table: &impl ReadableTable<Bin, Bin>, key: &[u8]) -> Result<u64> {
    let value = table.get(key).map_err(eio("reading store info"))?;
    let bytes: [u8; 8] = value.as_ref().and_then(|v| v.value().try_into().ok()).ok_or_else(|| {
        Error::eio(format!("store info '{}' is missing or corrupt", String::from_utf8_lossy(key)))
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Fills `out` (zeroed by the caller) with the object's bytes from `offset`, verifying every
/// chunk it touches.
pub(crate) fn read_into(
    chunks: &impl ReadableTable<Bin, Bin>,
    okey: &[u8],
    chunk_bytes: u64,
    offset: u64,
    out: &mut [u8],
    pg: PgId,
    oid: &ObjectId,
) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let end = offset + out.len() as u64;
    let (first, last) = (chunk_key(okey, offset / chunk_bytes), chunk_key(okey, (end - 1) / chunk_bytes));
    let range = chunks.range::<&[u8]>(first.as_slice()..=last.as_slice()).map_err(eio("reading chunks"))?;
    for entry in range {
        let (k, v) = entry.map_err(eio("reading chunks"))?;
        let index = keys::chunk_index(k.value(), okey.len())?;
        let data = decode_chunk(v.value(), || chunk_name(pg, oid, index))?;
        let chunk_start = index * chunk_bytes;
        let (lo, hi) = (offset.max(chunk_start), end.min(chunk_start + data.len() as u64));
        if lo < hi {
            out[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&data[(lo - chunk_start) as usize..(hi - chunk_start) as usize]);
        }
    }
    Ok(())
}

/// Adds the PG of every key of `table` to `pgs`, seeking past each PG (one lookup per PG).
pub(crate) fn collect_pgs(table: &impl ReadableTable<Bin, Bin>, pgs: &mut BTreeSet<PgId>) -> Result<()> {
    let mut lower: Vec<u8> = Vec::new();
    loop {
        let mut range = table.range::<&[u8]>(lower.as_slice()..).map_err(eio("listing pgs"))?;
        let Some(entry) = range.next() else {
            return Ok(());
        };
        let (k, _) = entry.map_err(eio("listing pgs"))?;
        let pg = keys::pg_of(k.value())?;
        pgs.insert(pg);
        match prefix_end(&pg_prefix(pg)) {
            Some(next) => lower = next,
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) fn corrupt_chunk_for_test(
    db: &redb::Database,
    pg: PgId,
    oid: &ObjectId,
    index: u64,
) -> Result<()> {
    let wtx = db.begin_write().map_err(eio("test"))?;
    {
        let mut chunks = wtx.open_table(CHUNKS).map_err(eio("test"))?;
        let key = chunk_key(&object_key(pg, oid), index);
        let mut record = chunks
            .get(key.as_slice())
            .map_err(eio("test"))?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| Error::enoent("no such chunk"))?;
        let last = record.len() - 1;
        record[last] ^= 0x01; // flip a data bit, keep the stored crc
        chunks.insert(key.as_slice(), record.as_slice()).map_err(eio("test"))?;
    }
    wtx.commit().map_err(eio("test"))
}
