//! RESP2/RESP3 codec for kvfleet: no sockets, only bytes.
//!
//! Two decoders for two jobs. [`request`] parses what clients send (multibulk
//! or inline commands) into argument ranges of the read buffer, so the server's
//! hot path copies and allocates nothing per argument. [`frame`] decodes any
//! RESP2/RESP3 value into a [`Frame`] tree, for clients, tests and the proxy.
//! [`encode`] writes replies. "Need more bytes" is `Ok(None)`, never an error.

pub mod encode;
pub mod frame;
pub mod request;

pub use frame::{Frame, frame_len, parse_frame};
pub use request::{Limits, ProtocolError, RequestParser};

/// A protocol violation, with the text Redis sends before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);
