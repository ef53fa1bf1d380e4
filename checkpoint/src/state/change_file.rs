//! The change files of incremental heap checkpoints, and the streaming
//! merge that compacts a chain of them into one base file.
//!
//! ```text
//! file    = "SLC3" body_len:u64 checksum:u64 body      (little endian)
//! body    = section*
//! section = name_len:varint name kind:u8 count:u64 (little endian) entry{count}
//! entry   = position:varint key_len:varint key (0 | 1 value_len:varint value)
//! ```
//!
//! The checksum is the XXH64 of the body. Every reader first checks the
//! file's size against `body_len` and the checksum against the body, so a
//! truncated or damaged file fails the restore, naming the file, before any
//! entry is applied; and no length read from a file is trusted beyond the
//! bytes left in the body (a flipped length byte is an error, not an
//! allocation). Files of the previous version (`"SLC2"` and the body, no
//! size or checksum) are still read, with the same bounds.
//!
//! A *positioned* section (kind 0) holds entries of a registered state by
//! arena position, in increasing position order (the order a snapshot walks
//! its bitmap); value `0` is a removal. A *complete* section (kind 1) holds
//! every restored entry of a state that is not registered yet (position 0);
//! each file of a chain repeats it whole.
//!
//! Within one chain (one store's lifetime: a restore starts a new chain) an
//! arena position holds one key at a time, and a key that moves to another
//! position is first removed at the old one. So the state a chain describes
//! is, per position, the entry of the newest file that has that position.
//! [`merge`] computes it with a k-way merge by position that streams every
//! file and keeps one entry per file in memory: it runs on the upload thread,
//! never on the task thread.

use crate::error::{Error, Result};
use crate::metadata::checksum;
use crate::names::create_temporary;
use crate::state::changelog::ReplaySink;
use crate::storage::{io_error, rename_durable};
use crate::KeyGroupRange;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every change file this build writes.
const MAGIC: &[u8; 4] = b"SLC3";

/// The first bytes of a change file of the previous version (no size, no
/// checksum).
const MAGIC_V2: &[u8; 4] = b"SLC2";

/// Bytes before the body: magic, body length, checksum.
const HEADER: usize = 20;

/// Read buffer per file of a merge.
const READ_BUFFER: usize = 256 * 1024;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Entries of a registered state, by increasing arena position.
    Positioned,
    /// Every restored entry of a state not registered yet.
    Complete,
}

impl SectionKind {
    fn byte(self) -> u8 {
        match self {
            SectionKind::Positioned => 0,
            SectionKind::Complete => 1,
        }
    }
}

fn encode_err(e: postcard::Error) -> Error {
    Error::State { state: String::new(), message: format!("cannot encode a change file: {e}") }
}

/// Appends `n` as a LEB128 varint (postcard's integer encoding).
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length-prefixed byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a section header; returns the offset of its count.
fn put_header(out: &mut Vec<u8>, name: &str, kind: SectionKind) -> usize {
    put_bytes(out, name.as_bytes());
    out.push(kind.byte());
    let at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    at
}

/// Appends one entry.
fn put_entry(out: &mut Vec<u8>, pos: u32, key: &[u8], value: Option<&[u8]>) {
    put_varint(out, u64::from(pos));
    put_bytes(out, key);
    match value {
        Some(v) => {
            out.push(1);
            put_bytes(out, v);
        }
        None => out.push(0),
    }
}

/// Appends one entry with its value and timestamp, stored as
/// [`encode_value`](crate::state::table) writes them, encoded in place.
pub fn put_value_entry<V: Serialize>(buf: &mut Vec<u8>, pos: u32, key: &[u8], stamp: i64, value: &V) -> Result<()> {
    put_varint(buf, u64::from(pos));
    put_bytes(buf, key);
    buf.push(1);
    // One length byte is reserved; a value of 128 bytes or more needs more,
    // and is moved up (rare for keyed state).
    let len_at = buf.len();
    buf.push(0);
    *buf = postcard::to_extend(&(stamp, value), std::mem::take(buf)).map_err(encode_err)?;
    let len = buf.len() - len_at - 1;
    if len < 0x80 {
        if let Some(b) = buf.get_mut(len_at) {
            *b = len as u8;
        }
    } else {
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len as u64);
        buf.splice(len_at..len_at + 1, prefix);
    }
    Ok(())
}

/// Appends the removal of an entry.
pub fn put_removal(buf: &mut Vec<u8>, pos: u32, key: &[u8]) {
    put_entry(buf, pos, key, None);
}

/// Encodes one change file into a single (reused) buffer: the synchronous
/// part of a heap snapshot.
#[derive(Debug)]
pub struct ChangeWriter {
    buf: Vec<u8>,
    entries: u64,
    /// The open section: offset of its count, entries so far.
    open: Option<(usize, u64)>,
}

impl Default for ChangeWriter {
    fn default() -> Self {
        ChangeWriter::new(Vec::new())
    }
}

impl ChangeWriter {
    /// A writer that encodes into `buf` (cleared; its capacity is reused).
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[0u8; HEADER - 4]);
        ChangeWriter { buf, entries: 0, open: None }
    }

    fn close_section(&mut self) {
        if let Some((at, count)) = self.open.take() {
            if let Some(slot) = self.buf.get_mut(at..at + 8) {
                slot.copy_from_slice(&count.to_le_bytes());
            }
        }
    }

    /// Starts the section of state `name`.
    pub fn section(&mut self, name: &str, kind: SectionKind) {
        self.close_section();
        let at = put_header(&mut self.buf, name, kind);
        self.open = Some((at, 0));
    }

    fn count(&mut self) {
        self.entries += 1;
        if let Some((_, n)) = &mut self.open {
            *n += 1;
        }
    }

    /// Adds an entry whose stored value is already encoded (`None`: the
    /// entry is removed).
    pub fn entry_encoded(&mut self, pos: u32, key: &[u8], value: Option<&[u8]>) {
        self.count();
        put_entry(&mut self.buf, pos, key, value);
    }

    /// Adds one entry that `encode` appends (with [`put_value_entry`] or
    /// [`put_removal`]).
    pub fn entry_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        self.count();
        encode(&mut self.buf)
    }

    /// Adds one entry encoded elsewhere (by [`put_value_entry`] or
    /// [`put_removal`]).
    pub fn raw_entry(&mut self, bytes: &[u8]) {
        self.count();
        self.buf.extend_from_slice(bytes);
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes encoded so far.
    pub fn encoded_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The encoded file (its header holds the body's size and checksum)
    /// and its number of entries.
    pub fn finish(mut self) -> (Vec<u8>, u64) {
        self.close_section();
        let sum = checksum(self.buf.get(HEADER..).unwrap_or_default());
        let len = self.buf.len().saturating_sub(HEADER) as u64;
        if let Some(header) = self.buf.get_mut(4..HEADER) {
            header[..8].copy_from_slice(&len.to_le_bytes());
            header[8..].copy_from_slice(&sum.to_le_bytes());
        }
        (self.buf, self.entries)
    }
}

/// Where a change file's bytes are.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A stored file.
    File(&'a Path),
    /// A file still in memory (the newest one, not written yet).
    Bytes(&'a [u8]),
}

/// Where the body of a change file lies, once its header is checked.
#[derive(Debug, Clone, Copy)]
struct Body {
    start: u64,
    end: u64,
}

impl<'a> Source<'a> {
    fn describe(&self) -> PathBuf {
        match self {
            Source::File(p) => p.to_path_buf(),
            Source::Bytes(_) => PathBuf::from("(change file of this snapshot)"),
        }
    }

    fn damaged(&self, e: impl std::fmt::Display) -> Error {
        Error::MissingState {
            checkpoint: 0,
            path: self.describe(),
            reason: format!("change file of an incremental checkpoint is damaged or truncated: {e}"),
        }
    }

    /// A reader positioned at byte `offset`.
    fn open_at(&self, offset: u64) -> Result<Box<dyn BufRead + 'a>> {
        match *self {
            Source::File(path) => {
                let mut f = File::open(path).map_err(|e| Error::MissingState {
                    checkpoint: 0,
                    path: path.to_path_buf(),
                    reason: format!("change file of an incremental checkpoint cannot be read: {e}"),
                })?;
                f.seek(SeekFrom::Start(offset)).map_err(|e| self.damaged(e))?;
                Ok(Box::new(BufReader::with_capacity(READ_BUFFER, f)))
            }
            Source::Bytes(b) => Ok(Box::new(b.get(offset as usize..).unwrap_or_default())),
        }
    }

    /// A reader of the body from byte `offset` to its end.
    fn body_at(&self, offset: u64, body: Body) -> Result<Reader<'a>> {
        Ok(Reader { inner: self.open_at(offset)?, left: body.end.saturating_sub(offset), read: 0 })
    }

    /// The file's size in bytes.
    fn size(&self) -> Result<u64> {
        match self {
            Source::File(path) => std::fs::metadata(path).map(|m| m.len()).map_err(|e| Error::MissingState {
                checkpoint: 0,
                path: path.to_path_buf(),
                reason: format!("change file of an incremental checkpoint cannot be read: {e}"),
            }),
            Source::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// Checks the header: the magic bytes, the file's size against the
    /// body length it records, and the checksum of the body (reading the
    /// file once). Returns where the body lies.
    fn verify(&self) -> Result<Body> {
        let size = self.size()?;
        let mut r = self.open_at(0)?;
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).map_err(|e| self.damaged(format!("no header ({e})")))?;
        if &magic == MAGIC_V2 {
            return Ok(Body { start: MAGIC_V2.len() as u64, end: size });
        }
        if &magic != MAGIC {
            return Err(self.damaged("not a change file (wrong magic bytes)"));
        }
        let mut header = [0u8; 16];
        r.read_exact(&mut header).map_err(|e| self.damaged(format!("no header ({e})")))?;
        let [l0, l1, l2, l3, l4, l5, l6, l7, c0, c1, c2, c3, c4, c5, c6, c7] = header;
        let len = u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]);
        let expected = u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
        if Some(size) != len.checked_add(HEADER as u64) {
            return Err(self.damaged(format!(
                "{size} bytes, its header says {} (truncated or extended)",
                len.saturating_add(HEADER as u64)
            )));
        }
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        loop {
            let chunk = r.fill_buf().map_err(|e| self.damaged(e))?;
            if chunk.is_empty() {
                break;
            }
            hasher.write(chunk);
            let n = chunk.len();
            r.consume(n);
        }
        if hasher.finish() != expected {
            return Err(self.damaged("checksum mismatch"));
        }
        Ok(Body { start: HEADER as u64, end: size })
    }
}

/// A reader of a change file's body that never reads past its end, knows
/// how many bytes are left (so that no length read from the file is
/// trusted beyond them) and counts the bytes read.
struct Reader<'a> {
    inner: Box<dyn BufRead + 'a>,
    left: u64,
    read: u64,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(buf.get_mut(..max).unwrap_or_default())?;
        self.left = self.left.saturating_sub(n as u64);
        self.read += n as u64;
        Ok(n)
    }
}

impl BufRead for Reader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        let buf = self.inner.fill_buf()?;
        Ok(buf.get(..buf.len().min(left)).unwrap_or_default())
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.left = self.left.saturating_sub(amt as u64);
        self.read += amt as u64;
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn read_varint(r: &mut dyn BufRead) -> std::io::Result<u64> {
    // Fast path: the whole varint is in the buffer.
    let buf = r.fill_buf()?;
    let mut n = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            r.consume(i + 1);
            return Ok(n);
        }
    }
    n = 0;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)?;
        n |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(invalid("varint too long".into()))
}

/// Reads a length-prefixed byte string into `out`; the length must fit in
/// the bytes left, so a damaged length allocates nothing.
fn read_bytes(r: &mut Reader<'_>, out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = read_varint(r)?;
    if len > r.left {
        return Err(invalid(format!("length {len} exceeds the {} bytes left in the file", r.left)));
    }
    out.clear();
    out.resize(usize::try_from(len).map_err(|_| invalid(format!("length {len} is too large")))?, 0);
    r.read_exact(out)
}

fn read_u8(r: &mut dyn BufRead) -> std::io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// One section of a file, as found by [`scan`].
#[derive(Debug, Clone)]
struct Section {
    name: String,
    kind: SectionKind,
    count: u64,
    /// Offset of its first entry.
    offset: u64,
}

/// Reads a section header, or `None` at the end of the body.
fn read_header(r: &mut Reader<'_>, scratch: &mut Vec<u8>) -> std::io::Result<Option<(String, SectionKind, u64)>> {
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    read_bytes(r, scratch)?;
    let name = String::from_utf8(std::mem::take(scratch)).map_err(|e| invalid(e.to_string()))?;
    let kind = match read_u8(r)? {
        0 => SectionKind::Positioned,
        1 => SectionKind::Complete,
        k => return Err(invalid(format!("unknown section kind {k}"))),
    };
    let mut count = [0u8; 8];
    r.read_exact(&mut count)?;
    Ok(Some((name, kind, u64::from_le_bytes(count))))
}

/// One entry read from a section.
#[derive(Debug, Default)]
struct Cursor {
    pos: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    present: bool,
}

impl Cursor {
    fn read(&mut self, r: &mut Reader<'_>) -> std::io::Result<()> {
        let pos = read_varint(r)?;
        self.pos = u32::try_from(pos).map_err(|_| invalid(format!("position {pos} too large")))?;
        read_bytes(r, &mut self.key)?;
        self.present = match read_u8(r)? {
            0 => false,
            1 => true,
            t => return Err(invalid(format!("bad value tag {t}"))),
        };
        if self.present {
            read_bytes(r, &mut self.value)?;
        }
        Ok(())
    }
}

/// Verifies a file ([`Source::verify`]) and finds its sections (reads it
/// once more, decoding only lengths).
fn scan(src: Source<'_>) -> Result<(Body, Vec<Section>)> {
    let body = src.verify()?;
    let mut r = src.body_at(body.start, body)?;
    let damaged = |e: std::io::Error| src.damaged(e);
    let mut sections = Vec::new();
    let mut scratch = Vec::new();
    let mut cursor = Cursor::default();
    while let Some((name, kind, count)) = read_header(&mut r, &mut scratch).map_err(damaged)? {
        let start = body.start + r.read;
        for _ in 0..count {
            cursor.read(&mut r).map_err(damaged)?;
        }
        sections.push(Section { name, kind, count, offset: start });
    }
    Ok((body, sections))
}

/// Replays a change file: `sink(state, key, value or None for a removal)`
/// for the entries in the key groups of `range`, in file order. The file's
/// size and checksum are verified first: a damaged file applies nothing.
pub fn replay_file(src: Source<'_>, range: KeyGroupRange, sink: ReplaySink<'_>) -> Result<()> {
    let body = src.verify()?;
    let mut r = src.body_at(body.start, body)?;
    let damaged = |e: std::io::Error| src.damaged(e);
    let mut scratch = Vec::new();
    let mut c = Cursor::default();
    while let Some((name, _, count)) = read_header(&mut r, &mut scratch).map_err(damaged)? {
        for _ in 0..count {
            c.read(&mut r).map_err(damaged)?;
            if range.contains(crate::state::format::key_group_of(&c.key)) {
                sink(&name, &c.key, c.present.then_some(c.value.as_slice()))?;
            }
        }
    }
    Ok(())
}

/// Receives the merged state: sections, then their live entries.
pub trait MergeOut {
    /// Starts the section of state `name`.
    fn section(&mut self, name: &str, kind: SectionKind) -> Result<()>;
    /// One live entry (`pos` is 0 in complete sections).
    fn entry(&mut self, pos: u32, key: &[u8], value: &[u8]) -> Result<()>;
}

/// One open section of a merge input.
struct Input<'a> {
    reader: Reader<'a>,
    left: u64,
    head: Option<Cursor>,
    src: Source<'a>,
}

impl Input<'_> {
    /// Moves to the next entry (checking that positions increase).
    fn advance(&mut self, positioned: bool) -> Result<()> {
        if self.left == 0 {
            self.head = None;
            return Ok(());
        }
        self.left -= 1;
        let last = self.head.as_ref().map(|c| c.pos);
        let mut c = self.head.take().unwrap_or_default();
        c.read(&mut self.reader).map_err(|e| self.src.damaged(e))?;
        if positioned && last.is_some_and(|l| c.pos <= l) {
            return Err(self.src.damaged(format!("positions out of order ({} after {})", c.pos, last.unwrap_or(0))));
        }
        self.head = Some(c);
        Ok(())
    }
}

/// Merges a chain (`files`, oldest first) into the state it describes and
/// hands every live entry to `out`, state by state. Streams every file.
pub fn merge(files: &[Source<'_>], out: &mut dyn MergeOut) -> Result<()> {
    let scanned: Vec<(Body, Vec<Section>)> = files.iter().map(|f| scan(*f)).collect::<Result<_>>()?;
    // Every state, newest file's order first.
    let mut names: Vec<&str> = Vec::new();
    for (_, sections) in scanned.iter().rev() {
        for s in sections {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
    }
    for name in names {
        let newest = scanned.iter().rev().find_map(|(_, ss)| ss.iter().find(|s| s.name == name)).map(|s| s.kind);
        let kind = newest.unwrap_or(SectionKind::Positioned);
        // A complete section stands alone: only the newest counts. Positioned
        // sections of older files are merged, complete ones are superseded
        // (registering a state marks all its restored entries changed).
        let mut inputs: Vec<Input<'_>> = Vec::new();
        for (src, (body, sections)) in files.iter().zip(&scanned) {
            for s in sections.iter().filter(|s| s.name == name && s.kind == kind) {
                if kind == SectionKind::Complete {
                    inputs.clear();
                }
                let mut input = Input { reader: src.body_at(s.offset, *body)?, left: s.count, head: None, src: *src };
                input.advance(kind == SectionKind::Positioned)?;
                inputs.push(input);
            }
        }
        out.section(name, kind)?;
        if kind == SectionKind::Complete {
            for input in &mut inputs {
                while let Some(c) = &input.head {
                    if c.present {
                        out.entry(0, &c.key, &c.value)?;
                    }
                    input.advance(false)?;
                }
            }
            continue;
        }
        // Heads by (smallest position, then newest input): the top is the
        // entry that wins its position; the older inputs holding the same
        // position follow it and are skipped. O(log k) per entry for a
        // chain of k files.
        let mut heads: BinaryHeap<(Reverse<u32>, usize)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, input)| input.head.as_ref().map(|c| (Reverse(c.pos), i)))
            .collect();
        while let Some((Reverse(pos), winner)) = heads.pop() {
            if let Some(c) = inputs.get(winner).and_then(|i| i.head.as_ref()) {
                if c.present {
                    out.entry(pos, &c.key, &c.value)?;
                }
            }
            let mut advance = Some(winner);
            while let Some(i) = advance {
                if let Some(input) = inputs.get_mut(i) {
                    input.advance(true)?;
                    if let Some(c) = &input.head {
                        heads.push((Reverse(c.pos), i));
                    }
                }
                advance = match heads.peek() {
                    Some(&(Reverse(p), j)) if p == pos => {
                        heads.pop();
                        Some(j)
                    }
                    _ => None,
                };
            }
        }
    }
    Ok(())
}

/// Writes a merged state as a change file (a chain's new base), streaming.
pub struct FileOut {
    w: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    written: u64,
    /// (offset of a section's count, its count).
    counts: Vec<(u64, u64)>,
    entries: u64,
    scratch: Vec<u8>,
}

impl FileOut {
    /// Starts writing `path` (through a temporary file, created new).
    pub fn create(path: &Path) -> Result<Self> {
        let (f, tmp) = create_temporary(path)?;
        let mut out = FileOut {
            w: BufWriter::with_capacity(1 << 20, f),
            tmp,
            path: path.to_path_buf(),
            written: 0,
            counts: Vec::new(),
            entries: 0,
            scratch: Vec::new(),
        };
        out.scratch.extend_from_slice(MAGIC);
        out.scratch.extend_from_slice(&[0u8; HEADER - 4]);
        out.flush_scratch()?;
        Ok(out)
    }

    fn flush_scratch(&mut self) -> Result<()> {
        self.w.write_all(&self.scratch).map_err(io_error("write", &self.tmp))?;
        self.written += self.scratch.len() as u64;
        self.scratch.clear();
        Ok(())
    }

    /// Finishes the file (counts patched, the body's size and checksum
    /// written into the header, synced, renamed into place, the directory
    /// synced); returns its number of entries.
    pub fn finish(self) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let FileOut { w, tmp, path, counts, entries, written, .. } = self;
        let f = w.into_inner().map_err(|e| Error::Storage {
            action: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        for (at, count) in counts {
            f.write_all_at(&count.to_le_bytes(), at).map_err(io_error("write", &tmp))?;
        }
        // The checksum covers the patched counts: read the body back (it
        // was just written, so it comes from the page cache).
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        let mut chunk = vec![0u8; READ_BUFFER];
        let mut at = HEADER as u64;
        while at < written {
            let n = f.read_at(&mut chunk, at).map_err(io_error("read", &tmp))?;
            if n == 0 {
                break;
            }
            hasher.write(chunk.get(..n).unwrap_or_default());
            at += n as u64;
        }
        let mut header = [0u8; HEADER - 4];
        header[..8].copy_from_slice(&(written - HEADER as u64).to_le_bytes());
        header[8..].copy_from_slice(&hasher.finish().to_le_bytes());
        f.write_all_at(&header, 4).map_err(io_error("write", &tmp))?;
        f.sync_all().map_err(io_error("sync", &tmp))?;
        rename_durable(&tmp, &path)?;
        Ok(entries)
    }
}

impl MergeOut for FileOut {
    fn section(&mut self, name: &str, kind: SectionKind) -> Result<()> {
        let at = put_header(&mut self.scratch, name, kind);
        self.counts.push((self.written + at as u64, 0));
        self.flush_scratch()
    }
    fn entry(&mut self, pos: u32, key: &[u8], value: &[u8]) -> Result<()> {
        put_entry(&mut self.scratch, pos, key, Some(value));
        if let Some((_, n)) = self.counts.last_mut() {
            *n += 1;
        }
        self.entries += 1;
        self.flush_scratch()
    }
}

/// Collects a merged state in memory (for savepoints).
#[derive(Debug, Default)]
pub struct EntriesOut(pub Vec<(String, crate::state::format::Entries)>);

impl MergeOut for EntriesOut {
    fn section(&mut self, name: &str, _: SectionKind) -> Result<()> {
        self.0.push((name.to_string(), Vec::new()));
        Ok(())
    }
    fn entry(&mut self, _: u32, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some((_, entries)) = self.0.last_mut() {
            entries.push((key.to_vec(), value.to_vec()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "change_file_fuzz.rs"]
mod fuzz;

#[cfg(test)]
#[path = "change_file_tests.rs"]
mod tests;
