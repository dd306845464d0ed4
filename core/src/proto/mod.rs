//! The sans-I/O protocol core: frames, masking, UTF-8, the session state
//! machine and the byte-level connection. Nothing here touches a socket, a
//! task or a clock; time is passed in.

pub mod close;
pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod mask;
pub mod message;
pub mod session;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{Connection, WriteBuffer};
pub use error::ProtocolError;
pub use frame::{Frame, FrameHeader, HeaderParse, OpCode, Rsv};
pub use message::{Message, Utf8Bytes};
pub use session::{CloseState, Role, SendError, Session};
