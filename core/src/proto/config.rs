//! Limits and settings, with their defaults.

use std::time::Duration;

/// Connection settings. Every limit has a safe default; see each field.
///
/// Construct with [`Config::default`] and adjust fields with the builder
/// methods (the struct is `#[non_exhaustive]` so fields can be added).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest incoming frame payload accepted, in bytes (wire size, before
    /// extension decoding). Default 16 MiB. A larger frame fails with 1009.
    pub max_frame_size: usize,
    /// Largest incoming message accepted, in bytes, after extension decoding
    /// (decompression). Default 64 MiB. A larger message fails with 1009.
    pub max_message_size: usize,
    /// Outgoing messages longer than this are sent as several frames of at
    /// most this many payload bytes. Default 16 MiB (what common peers accept
    /// per frame).
    pub send_frame_size: usize,
    /// Largest opening handshake (request or response head), in bytes.
    /// Default 16 KiB; a server answers a larger request with 431.
    pub max_handshake_size: usize,
    /// Most header lines accepted in a handshake. Default 64.
    pub max_handshake_headers: usize,
    /// Time allowed for the opening handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// After sending a Close, how long to wait for the peer's Close (and, for
    /// a client, for the server to close TCP). Default 5 s.
    pub close_timeout: Duration,
    /// Outgoing bytes buffered before `send` waits for the socket (the
    /// backpressure high-water mark). Default 128 KiB.
    pub write_buffer_size: usize,
    /// Send a Ping after this much time without receiving anything, if set.
    /// Default: off (`None`): a library connection sends nothing unasked;
    /// servers facing clients that may vanish without a FIN (mobile
    /// networks, NAT timeouts) should set it, e.g. 30 s. See
    /// [`keepalive_timeout`](Self::keepalive_timeout).
    pub keepalive_interval: Option<Duration>,
    /// With [`keepalive_interval`](Self::keepalive_interval) set: how long
    /// to wait for a Pong after a keepalive Ping. When none arrives in time
    /// the connection is closed with 1011 and reports
    /// [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout). Any
    /// Pong counts (RFC 6455 lets a peer answer only the latest Ping).
    /// Default 20 s; unused while keepalive is off.
    pub keepalive_timeout: Duration,
    /// After this long without traffic, negotiated extensions are told the
    /// connection is idle so they can free what they can rebuild
    /// (compression contexts). Only armed when extensions are negotiated.
    /// Default 1 s; `None` never.
    pub release_idle_after: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            send_frame_size: 16 << 20,
            max_handshake_size: 16 << 10,
            max_handshake_headers: 64,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_buffer_size: 128 << 10,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
            release_idle_after: Some(Duration::from_secs(1)),
        }
    }
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl Config {
            $(
                $(#[$m])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`Config::max_frame_size`].
    max_frame_size: usize,
    /// Sets [`Config::max_message_size`].
    max_message_size: usize,
    /// Sets [`Config::send_frame_size`] (at least 1).
    send_frame_size: usize,
    /// Sets [`Config::max_handshake_size`].
    max_handshake_size: usize,
    /// Sets [`Config::max_handshake_headers`].
    max_handshake_headers: usize,
    /// Sets [`Config::handshake_timeout`].
    handshake_timeout: Duration,
    /// Sets [`Config::close_timeout`].
    close_timeout: Duration,
    /// Sets [`Config::write_buffer_size`].
    write_buffer_size: usize,
    /// Sets [`Config::keepalive_interval`].
    keepalive_interval: Option<Duration>,
    /// Sets [`Config::keepalive_timeout`].
    keepalive_timeout: Duration,
    /// Sets [`Config::release_idle_after`].
    release_idle_after: Option<Duration>,
}
