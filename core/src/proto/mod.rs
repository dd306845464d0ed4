//! The sans-I/O protocol core: frames, masking, UTF-8, the session state
//! machine and the byte-level connection. Nothing here touches a socket, a
//! task or a clock; time is passed in.

mod close;
mod config;
mod connection;
mod error;
mod frame;
pub mod mask;
mod message;
mod session;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{Connection, ReadStrategy, WriteBuffer};
pub use error::ProtocolError;
pub use frame::{
    Frame, FrameHeader, HeaderParse, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, Rsv,
};
pub use message::{Message, Utf8Bytes};
pub use session::{CloseState, Role, SendError, Session};
