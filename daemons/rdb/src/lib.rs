//! Redis 7.0's RDB format, version 10: what `SAVE`/`BGSAVE` files, replica
//! full syncs and `DUMP` payloads are made of.
//!
//! Writing uses the plain encodings every Redis since 2.x loads (raw,
//! integer or LZF-compressed strings; hashes, lists, sets and sorted sets
//! as counted element sequences with binary scores), so files and payloads
//! we write load in Redis 7.0 unchanged. Reading also takes the compact encodings Redis 7.0
//! writes: listpacks, intsets, quicklists of listpacks, LZF-compressed
//! strings. Every read is bounds-checked: a corrupt or truncated input is an
//! [`Error`], never a panic, and the checksum is verified before a loader
//! commits anything (see [`read::Loader`]).

pub mod dump;
pub mod listpack;
pub mod lzf;
pub mod read;
pub mod stream;
pub mod write;

pub use read::{Item, Loader, Record, Value};
pub use write::Encoder;

/// The RDB version we write and the highest we read (Redis 7.0's).
pub const RDB_VERSION: u16 = 10;

/// Value type bytes.
pub mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
}

/// Opcodes between records.
pub mod op {
    pub const FUNCTION2: u8 = 245;
    pub const FUNCTION: u8 = 246;
    pub const MODULE_AUX: u8 = 247;
    pub const IDLE: u8 = 248;
    pub const FREQ: u8 = 249;
    pub const AUX: u8 = 250;
    pub const RESIZEDB: u8 = 251;
    pub const EXPIRETIME_MS: u8 = 252;
    pub const EXPIRETIME: u8 = 253;
    pub const SELECTDB: u8 = 254;
    pub const EOF: u8 = 255;
}

/// Redis's CRC-64 (Jones polynomial, reflected): the file trailer and the
/// last 8 bytes of a DUMP payload.
pub static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an RDB file (bad magic)")]
    Magic,
    #[error("can't handle RDB format version {0}")]
    Version(u32),
    #[error("unexpected end of data")]
    Truncated,
    #[error("checksum mismatch: file says {stored:016x}, data gives {computed:016x}")]
    Checksum { stored: u64, computed: u64 },
    #[error("bad data at byte {at}: {what}")]
    Corrupt { at: u64, what: String },
    #[error("DUMP payload version or checksum are wrong")]
    Footer,
    #[error("{0} are not supported")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;
