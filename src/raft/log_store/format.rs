//! On-disk format of the durable raft log, version 1. Pure encoding and parsing: no I/O here.
//!
//! # Files
//!
//! Everything lives in `<data_dir>/raft/`:
//!
//! - `seg-<first index, 20 digits>.log`: log segments, append-only, in index order. A segment is
//!   closed (a new one started) once it passes the size bound, so it holds one batch more at most.
//! - `meta`: vote, last purged log id, a committed log id and the log's start index.
//! - `LOCK`: one block of text; held with `flock` while a process has the log open. It is the
//!   first DMA file the store opens, and has data on disk so that glommio's io_uring-polling probe
//!   (a read of the first block) tests the device for real.
//!
//! All integers are little-endian. CRCs are CRC32C (Castagnoli).
//!
//! # Segment
//!
//! ```text
//! [0 .. block)   header: magic "MUSTRLOG" (8) | version u32 | block u32 | first_index u64 | crc u32
//!                (crc over the 24 bytes before it), then zeros up to `block`
//! [block ..)     batches, each starting at a multiple of `block`
//! ```
//!
//! `block` is the batch alignment this segment was written with: 4096, or the device's
//! `O_DIRECT` alignment if that is larger. `first_index` is the index of the first entry record in
//! the segment (also in the file name).
//!
//! # Batch: the unit of durability
//!
//! One `append` group (possibly several `append` calls) becomes one batch, written with one
//! `O_DIRECT` write and made durable with one `fdatasync` before any of its entries is reported
//! flushed to openraft:
//!
//! ```text
//! record(kind=BATCH, payload = body_len u32) | body: body_len bytes of records | zeros to `block`
//! ```
//!
//! A batch is valid only as a whole: its header record and every record of its body must check.
//! The zero padding means a batch never shares a block with the next one, so a write never
//! touches a block that holds acknowledged data.
//!
//! # Record
//!
//! ```text
//! len u32 (payload length) | crc u32 | kind u8 | payload
//! ```
//!
//! `crc` covers `len`, `kind` and `payload`. Kinds:
//!
//! | kind | name      | payload                                                            |
//! |------|-----------|--------------------------------------------------------------------|
//! | 1    | BATCH     | `body_len u32`; only as the first record of a batch                 |
//! | 2    | ENTRY     | `index u64` + postcard(openraft `Entry`)                           |
//! | 3    | TRUNCATE  | postcard(`Option<LogId>`): entries after this log id are gone      |
//! | 4    | COMMITTED | postcard(`Option<LogId>`): a committed log id, piggybacked on writes |
//!
//! Entries are contiguous in file order, except that a TRUNCATE record rewinds the next expected
//! index to just after its log id. A TRUNCATE record always sits in the segment holding the
//! entries it cuts, and a segment's first entry is its `first_index`.
//!
//! Why postcard: serde-native (openraft and the shard commands already derive serde), compact
//! (varints, byte strings stored raw, so KV values are not inflated as they are in JSON), and its
//! wire format is specified and stable since 1.0. It is not self-describing: any change to the
//! serialized shape of `Entry`/`Proposal` needs a [`FORMAT_VERSION`] bump. rkyv stays reserved for
//! snapshots, where zero-copy access to a large image pays off.
//!
//! # Meta
//!
//! Two slots of [`META_SLOT_LEN`] bytes at offsets 0 and [`META_SLOT_LEN`]:
//!
//! ```text
//! magic "MUSTMETA" (8) | version u32 | seq u64 | len u32 | postcard(MetaState) | crc u32
//! ```
//!
//! (crc over everything before it). A write goes to slot `seq % 2` with a `seq` one above the
//! current one, then `fdatasync`: a torn write can only damage the slot being replaced, and the
//! reader takes the valid slot with the highest `seq`. That gives an atomic update with one
//! write and one flush, no rename and no directory sync.
//!
//! # Recovery rules
//!
//! Batches are written strictly one after another, each made durable before the next is
//! written. So on start, in the last segment, a batch that does not check with no valid batch at
//! any later block boundary is a torn (never acknowledged) write: it is cut. A bad batch followed
//! by a valid one anywhere, or a bad batch in any segment but the last, is corruption of
//! acknowledged data: the log refuses to open.

use serde::{Deserialize, Serialize};

use crate::raft::types::{Entry, LogId, Vote};

/// Version of everything described in the module docs.
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_MAGIC: [u8; 8] = *b"MUSTRLOG";
pub const META_MAGIC: [u8; 8] = *b"MUSTMETA";

/// Smallest batch alignment; 4096 matches the page and ext4/xfs block size, so an `O_DIRECT`
/// write never has to merge with a neighbouring partial block.
pub const MIN_BLOCK: u64 = 4096;
/// Largest block a segment header may announce; anything above is garbage.
pub const MAX_BLOCK: u64 = 1 << 20;
/// Bytes of the segment header that carry data (the rest of the first block is zeros).
pub const SEGMENT_HEADER_LEN: usize = 28;
/// Size of one meta slot; the file is two of them.
pub const META_SLOT_LEN: u64 = 4096;

/// `len` + `crc` + `kind`.
pub const RECORD_HEADER_LEN: usize = 9;
/// The BATCH record: header plus its `body_len`.
pub const BATCH_HEADER_LEN: usize = RECORD_HEADER_LEN + 4;
/// Sanity bound on a record payload; a larger length is garbage, not data.
pub const MAX_RECORD_PAYLOAD: usize = 256 << 20;

pub const KIND_BATCH: u8 = 1;
pub const KIND_ENTRY: u8 = 2;
pub const KIND_TRUNCATE: u8 = 3;
pub const KIND_COMMITTED: u8 = 4;

/// What `meta` stores. `log_start` is the index the log began at the last time a segment was
/// started on an empty log (`None`: 0); together with `purged` it says which index the first
/// surviving entry must have, so a lost leading segment is detected instead of ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
    pub log_start: Option<u64>,
}

impl MetaState {
    /// Index the first live entry must have.
    pub fn expected_first(&self) -> u64 {
        let after_purge = self.purged.map_or(0, |p| p.index() + 1);
        self.log_start.unwrap_or(0).max(after_purge)
    }
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer ends inside the record.
    Short,
    /// The length field is beyond [`MAX_RECORD_PAYLOAD`].
    BadLength,
    BadChecksum,
}

/// A checked record borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record occupies, header included.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

fn crc_of(len: [u8; 4], kind: u8, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len);
    let crc = crc32c::crc32c_append(crc, &[kind]);
    crc32c::crc32c_append(crc, payload)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads and checks the record starting at `at`.
pub fn read_record(buf: &[u8], at: usize) -> Result<Record<'_>, RecordError> {
    let header = buf
        .get(at..at.saturating_add(RECORD_HEADER_LEN))
        .ok_or(RecordError::Short)?;
    let len_bytes: [u8; 4] = header[0..4].try_into().map_err(|_| RecordError::Short)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_PAYLOAD {
        return Err(RecordError::BadLength);
    }
    let crc = u32::from_le_bytes(header[4..8].try_into().map_err(|_| RecordError::Short)?);
    let kind = header[8];
    let start = at + RECORD_HEADER_LEN;
    let payload = buf.get(start..start + len).ok_or(RecordError::Short)?;
    if crc_of(len_bytes, kind, payload) != crc {
        return Err(RecordError::BadChecksum);
    }
    Ok(Record { kind, payload })
}

/// Appends a record whose payload `fill` writes. On error nothing is left behind in `out`.
pub fn put_record<E>(
    out: &mut Vec<u8>,
    kind: u8,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    if let Err(e) = fill(out) {
        out.truncate(start);
        return Err(e);
    }
    let payload_len = out.len() - start - RECORD_HEADER_LEN;
    // Payloads come from our own encoders; a 4 GiB one cannot be a raft entry.
    let len_bytes = u32::try_from(payload_len)
        .expect("raft log record payload over 4 GiB")
        .to_le_bytes();
    let crc = crc_of(len_bytes, kind, &out[start + RECORD_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out[start + 8] = kind;
    Ok(())
}

/// Appends an ENTRY record for `entry` (at log index `index`).
pub fn put_entry(out: &mut Vec<u8>, index: u64, entry: &Entry) -> Result<(), postcard::Error> {
    put_record(out, KIND_ENTRY, |out| {
        out.extend_from_slice(&index.to_le_bytes());
        postcard::to_io(entry, out).map(|_| ())
    })
}

/// Appends a TRUNCATE or COMMITTED record carrying `id`.
pub fn put_log_id(out: &mut Vec<u8>, kind: u8, id: &Option<LogId>) -> Result<(), postcard::Error> {
    put_record(out, kind, |out| postcard::to_io(id, out).map(|_| ()))
}

/// The log index an ENTRY payload is stored under.
pub fn entry_index(payload: &[u8]) -> Option<u64> {
    u64_at(payload, 0)
}

/// Decodes an ENTRY payload, checking that the entry carries the index it is stored under.
pub fn decode_entry(payload: &[u8]) -> Result<Entry, String> {
    let index = entry_index(payload).ok_or("entry record shorter than its index")?;
    let entry: Entry = decode_exact(&payload[8..])?;
    if entry.log_id.index() != index {
        return Err(format!(
            "entry record for index {index} holds log id {}",
            entry.log_id
        ));
    }
    Ok(entry)
}

/// Decodes a TRUNCATE or COMMITTED payload.
pub fn decode_log_id(payload: &[u8]) -> Result<Option<LogId>, String> {
    decode_exact(payload)
}

fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the value", rest.len()));
    }
    Ok(value)
}

/// Frames `body` (a run of records) as a batch: header record, body, zeros up to `block`.
/// `out` is cleared first. Returns the unpadded length.
pub fn frame_batch(out: &mut Vec<u8>, body: &[u8], block: u64) -> usize {
    out.clear();
    let body_len = u32::try_from(body.len()).expect("raft log batch over 4 GiB");
    let framed: Result<(), std::convert::Infallible> = put_record(out, KIND_BATCH, |out| {
        out.extend_from_slice(&body_len.to_le_bytes());
        Ok(())
    });
    let Ok(()) = framed;
    out.extend_from_slice(body);
    let len = out.len();
    out.resize(align_up(len as u64, block) as usize, 0);
    len
}

pub fn align_up(v: u64, block: u64) -> u64 {
    v.div_ceil(block) * block
}

/// A complete, checked batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Offset of the batch header in the buffer.
    pub at: usize,
    /// Offset just past the last body record (padding excluded).
    pub end: usize,
    /// Body records with their offsets in the buffer.
    pub records: Vec<(usize, Record<'a>)>,
}

/// Parses the batch at `at`; `None` unless the header and every body record check and the body
/// is exactly a run of ENTRY/TRUNCATE/COMMITTED records.
pub fn parse_batch(buf: &[u8], at: usize) -> Option<Batch<'_>> {
    let header = read_record(buf, at).ok()?;
    if header.kind != KIND_BATCH || header.payload.len() != 4 {
        return None;
    }
    let body_len = u32_at(header.payload, 0)? as usize;
    let body_start = at + header.total_len();
    let end = body_start.checked_add(body_len)?;
    if end > buf.len() || body_len == 0 {
        return None;
    }
    let body = &buf[..end];
    let mut records = Vec::new();
    let mut pos = body_start;
    while pos < end {
        let record = read_record(body, pos).ok()?;
        if !matches!(record.kind, KIND_ENTRY | KIND_TRUNCATE | KIND_COMMITTED) {
            return None;
        }
        records.push((pos, record));
        pos += record.total_len();
    }
    Some(Batch { at, end, records })
}

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_index: u64,
    pub block: u64,
}

/// Why a segment header is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    /// A segment of another format version.
    Version(u32),
    BadChecksum,
    BadBlock(u64),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let block = u32::try_from(self.block).expect("segment block fits u32");
        out[12..16].copy_from_slice(&block.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..24]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let head = buf.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
        if head[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        // The version is checked before the CRC: another version may lay the header out
        // differently, and "unsupported version" is the useful message then.
        let version = u32_at(head, 8).ok_or(HeaderError::Short)?;
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let crc = u32_at(head, 24).ok_or(HeaderError::Short)?;
        if crc32c::crc32c(&head[0..24]) != crc {
            return Err(HeaderError::BadChecksum);
        }
        let block = u64::from(u32_at(head, 12).ok_or(HeaderError::Short)?);
        if !block.is_power_of_two() || !(512..=MAX_BLOCK).contains(&block) {
            return Err(HeaderError::BadBlock(block));
        }
        let first_index = u64_at(head, 16).ok_or(HeaderError::Short)?;
        Ok(Self { first_index, block })
    }
}

/// How the batch run of a segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// End of file, or only zeros after the last batch. `next` is where a new batch would go.
    Clean { next: u64 },
    /// Bytes after the last valid batch at `at` that form no valid batch, and no valid batch at
    /// any later block boundary: the signature of a torn write.
    Torn { at: u64 },
    /// A bad batch at `at` with a valid batch at `later`: acknowledged data is damaged.
    Corrupt { at: u64, later: u64 },
}

/// The batches of one segment and how their run ends.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    pub header: SegmentHeader,
    pub batches: Vec<Batch<'a>>,
    pub end: ScanEnd,
}

/// First block boundary at or after `from` (itself a block multiple or not) holding a valid batch.
pub fn find_batch_after(buf: &[u8], from: u64, block: u64) -> Option<u64> {
    let mut q = align_up(from, block);
    while (q as usize) < buf.len() {
        if parse_batch(buf, q as usize).is_some() {
            return Some(q);
        }
        q += block;
    }
    None
}

/// Walks the batches of a whole segment file.
pub fn scan_segment(buf: &[u8]) -> Result<SegmentScan<'_>, HeaderError> {
    let header = SegmentHeader::decode(buf)?;
    let block = header.block;
    let mut batches = Vec::new();
    let mut pos = block;
    let end = loop {
        if pos >= buf.len() as u64 {
            break ScanEnd::Clean { next: pos };
        }
        match parse_batch(buf, pos as usize) {
            Some(batch) => {
                pos = align_up(batch.end as u64, block);
                batches.push(batch);
            }
            None => {
                let rest = &buf[pos as usize..];
                if rest.iter().all(|&b| b == 0) {
                    break ScanEnd::Clean { next: pos };
                }
                break match find_batch_after(buf, pos + block, block) {
                    Some(later) => ScanEnd::Corrupt { at: pos, later },
                    None => ScanEnd::Torn { at: pos },
                };
            }
        }
    };
    Ok(SegmentScan {
        header,
        batches,
        end,
    })
}

/// Why a meta slot is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// Never written (zeros) or not a meta slot at all.
    Empty,
    Version(u32),
    Damaged(String),
}

/// Encodes a meta slot (unpadded).
pub fn encode_meta_slot(seq: u64, state: &MetaState) -> Result<Vec<u8>, postcard::Error> {
    let payload = postcard::to_allocvec(state)?;
    let len = u32::try_from(payload.len()).expect("meta payload is tiny");
    let mut out = Vec::with_capacity(28 + payload.len());
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert!(out.len() as u64 <= META_SLOT_LEN, "meta slot overflow");
    Ok(out)
}

/// Decodes one meta slot.
pub fn decode_meta_slot(buf: &[u8]) -> Result<(u64, MetaState), SlotError> {
    if buf.get(0..8) != Some(&META_MAGIC[..]) {
        return Err(SlotError::Empty);
    }
    let version = u32_at(buf, 8).ok_or(SlotError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(SlotError::Version(version));
    }
    let damaged = |what: &str| SlotError::Damaged(what.to_string());
    let seq = u64_at(buf, 12).ok_or_else(|| damaged("short slot"))?;
    let len = u32_at(buf, 20).ok_or_else(|| damaged("short slot"))? as usize;
    let payload_end = 24usize
        .checked_add(len)
        .filter(|&e| e + 4 <= buf.len())
        .ok_or_else(|| damaged("payload length out of range"))?;
    let crc = u32_at(buf, payload_end).ok_or_else(|| damaged("short slot"))?;
    if crc32c::crc32c(&buf[..payload_end]) != crc {
        return Err(damaged("checksum mismatch"));
    }
    let state = decode_exact(&buf[24..payload_end]).map_err(SlotError::Damaged)?;
    Ok((seq, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::TypeConfig;
    use muster_shards::command::{Command, Proposal};
    use openraft::entry::RaftEntry;
    use openraft::type_config::alias::LeaderIdOf;
    use openraft::vote::RaftLeaderIdExt;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderIdOf::<TypeConfig>::new_committed(term, 1), index)
    }

    fn entry(index: u64) -> Entry {
        Entry::new_normal(
            log_id(2, index),
            crate::raft::LoggedProposal(Proposal {
                at_ms: index,
                cmd: Command::Noop,
            }),
        )
    }

    #[test]
    fn records_round_trip_and_every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        put_entry(&mut buf, 7, &entry(7)).unwrap();
        let rec = read_record(&buf, 0).unwrap();
        assert_eq!(rec.kind, KIND_ENTRY);
        assert_eq!(rec.total_len(), buf.len());
        assert_eq!(entry_index(rec.payload), Some(7));
        assert_eq!(decode_entry(rec.payload).unwrap(), entry(7));

        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    read_record(&bad, 0).is_err(),
                    "flip at {byte}:{bit} not caught"
                );
            }
        }
        for cut in 0..buf.len() {
            assert_eq!(read_record(&buf[..cut], 0), Err(RecordError::Short));
        }
    }

    #[test]
    fn entry_stored_under_another_index_is_rejected() {
        let mut buf = Vec::new();
        put_entry(&mut buf, 8, &entry(7)).unwrap();
        let rec = read_record(&buf, 0).unwrap();
        assert!(decode_entry(rec.payload).is_err());
    }

    #[test]
    fn batches_frame_pad_and_parse() {
        let mut body = Vec::new();
        for i in 1..=3 {
            put_entry(&mut body, i, &entry(i)).unwrap();
        }
        put_log_id(&mut body, KIND_COMMITTED, &Some(log_id(2, 2))).unwrap();
        let mut framed = Vec::new();
        let len = frame_batch(&mut framed, &body, 4096);
        assert_eq!(framed.len(), 4096);
        assert_eq!(len, BATCH_HEADER_LEN + body.len());
        let batch = parse_batch(&framed, 0).expect("valid batch");
        assert_eq!(batch.end, len);
        assert_eq!(batch.records.len(), 4);
        assert_eq!(
            decode_log_id(batch.records[3].1.payload).unwrap(),
            Some(log_id(2, 2))
        );
        // A batch cut anywhere is no batch at all.
        for cut in 0..len {
            assert!(parse_batch(&framed[..cut], 0).is_none(), "cut at {cut}");
        }
        assert!(parse_batch(&[0u8; 4096], 0).is_none());
    }

    #[test]
    fn scan_tells_torn_tails_from_corruption() {
        let block = 4096u64;
        let mut file = vec![0u8; block as usize];
        file[..SEGMENT_HEADER_LEN].copy_from_slice(
            &SegmentHeader {
                first_index: 1,
                block,
            }
            .encode(),
        );
        let mut framed = Vec::new();
        let mut starts = Vec::new();
        for i in 1..=3 {
            let mut body = Vec::new();
            put_entry(&mut body, i, &entry(i)).unwrap();
            frame_batch(&mut framed, &body, block);
            starts.push(file.len());
            file.extend_from_slice(&framed);
        }
        let scan = scan_segment(&file).unwrap();
        assert_eq!(scan.batches.len(), 3);
        assert_eq!(
            scan.end,
            ScanEnd::Clean {
                next: file.len() as u64
            }
        );

        // Damage in the last batch: torn.
        let mut torn = file.clone();
        torn[starts[2] + 20] ^= 0xff;
        let scan = scan_segment(&torn).unwrap();
        assert_eq!(scan.batches.len(), 2);
        assert_eq!(
            scan.end,
            ScanEnd::Torn {
                at: starts[2] as u64
            }
        );

        // Damage in the middle batch: a valid batch follows, so it is corruption.
        let mut corrupt = file.clone();
        corrupt[starts[1] + 20] ^= 0xff;
        let scan = scan_segment(&corrupt).unwrap();
        assert_eq!(
            scan.end,
            ScanEnd::Corrupt {
                at: starts[1] as u64,
                later: starts[2] as u64
            }
        );

        let mut future = file.clone();
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            scan_segment(&future),
            Err(HeaderError::Version(2))
        ));
    }

    #[test]
    fn meta_slots_round_trip_and_reject_damage() {
        let state = MetaState {
            vote: Some(Vote::new(3, 1)),
            committed: Some(log_id(3, 9)),
            purged: Some(log_id(2, 4)),
            log_start: None,
        };
        let slot = encode_meta_slot(5, &state).unwrap();
        assert_eq!(decode_meta_slot(&slot), Ok((5, state.clone())));
        assert_eq!(state.expected_first(), 5);
        for byte in 0..slot.len() {
            let mut bad = slot.clone();
            bad[byte] ^= 0x10;
            assert!(decode_meta_slot(&bad).is_err(), "flip at {byte} not caught");
        }
        assert_eq!(decode_meta_slot(&[0u8; 64]), Err(SlotError::Empty));
    }
}
