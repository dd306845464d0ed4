//! Multiplexer settings.

use crate::handshake::DeltaBase;
use weft_core::Config;

/// How to read NewChannelSlot's fallback flag (uncertain in the drafts,
/// docs/specs/mux.md §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FallbackRule {
    /// pywebsocket: a fallback block must carry 0 slots and 0 quota; it tells
    /// the client to open no more channels here. The default.
    #[default]
    ZeroGrant,
    /// Jetty: a fallback block with 0 slots or 0 quota is invalid (2005);
    /// otherwise it grants like a normal block.
    NonZeroGrant,
}

/// Which generation of the mux wire format a connection speaks
/// (docs/specs/mux.md §3 and §4). The two are negotiated with different
/// extension tokens, so a peer of one is never taken for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MuxVariant {
    /// The draft-tamplin-hybi-google-mux-03 generation, token
    /// `x-google-mux`. **Reconstructed** from the earliest public
    /// implementation (pywebsocket at draft-ietf-hybi-websocket-multiplexing-01);
    /// the -03 text could not be obtained, so this could not be checked
    /// against it (see [`crate::wire::variant_a`]). Logical data frames are
    /// physical frames of their own (the tokio API reads and writes physical
    /// frames itself), logical control frames travel in
    /// EncapsulatedControlFrame blocks, and there is **no flow control and
    /// no channel slot**: [`MuxConfig::max_channels`] bounds the channels
    /// and a channel holding more than
    /// [`MuxConfig::max_buffered_per_channel`] unread bytes (or taking the
    /// connection past [`MuxConfig::max_buffered_total`]) is dropped (3000),
    /// since the sender cannot be slowed down. No logical-channel extension
    /// is negotiated (RSV bits are refused on variant A frames).
    A,
    /// draft-ietf-hybi-websocket-multiplexing -05 to -08 (pywebsocket and
    /// Jetty 9), token `mux`. The default.
    #[default]
    B,
}

/// Limits and policies of a multiplexer. Every limit has a safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MuxConfig {
    /// The wire format. Default [`MuxVariant::B`].
    pub variant: MuxVariant,
    /// Most logical channels open at once (server: slots are granted up to
    /// this; client: `open_channel` fails past it). Default 10 000.
    pub max_channels: usize,
    /// Server: slots granted when the connection starts and kept topped up
    /// to. Default 64.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub slots: u64,
    /// Server: the client's initial send quota on each new channel (carried by
    /// NewChannelSlot). Default 256 KiB (see [`receive_window`](Self::receive_window)).
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub slot_quota: u64,
    /// Quota granted to the peer on each channel and kept replenished: the
    /// per-channel receive window. Default 256 KiB: consumed quota is
    /// returned once a quarter of the window is used, and without a
    /// FlowControl message of its own until half of it is (it rides along
    /// with the next output), so a 64 KiB request answered by a reply costs
    /// no extra physical message. The window is a number, not a buffer: it
    /// costs an idle channel nothing, and bounds what an honest peer can have
    /// in flight on one channel.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub receive_window: u64,
    /// Client: the `quota` offered in the handshake, the server's initial
    /// send quota on channel 1. Default 256 KiB.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub implicit_quota: u64,
    /// Largest inner frame payload sent; a longer frame is cut so other
    /// channels can interleave. Default 64 KiB (tens of microseconds of
    /// loopback bandwidth: small against any latency target, and a message
    /// that fits travels as one inner frame, without reassembly copies).
    pub max_inner_frame: usize,
    /// Received but unread bytes per channel before the receive window stops
    /// being replenished (back-pressure). Default 256 KiB.
    pub max_buffered_per_channel: usize,
    /// Received but unread bytes over all channels before replenishing stops.
    /// Default 64 MiB.
    pub max_buffered_total: usize,
    /// Reject non-minimal channel IDs (2002). Default true.
    pub strict_channel_ids: bool,
    /// How the delta base evolves.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub delta_base: DeltaBase,
    /// How to read NewChannelSlot's fallback flag.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub fallback_rule: FallbackRule,
    /// Most slots a client accepts in total (more fails with 2008).
    /// Default 2^32.
    ///
    /// Variant B only (variant A has no flow control, slots or delta
    /// encoding).
    pub max_slots: u64,
    /// Limits of each logical channel's session (message and frame sizes,
    /// close timeout).
    pub channel: Config,
    /// `TCP_NOTSENT_LOWAT` for the physical TCP socket (Linux and Android):
    /// the kernel keeps at most about this many bytes written but not yet
    /// sent, and the rest of the output waits in the channels. Default
    /// 16 KiB; `None` leaves the socket alone.
    ///
    /// Many channels keep a lot of data in flight on one socket. Without the
    /// limit it piles up in the socket's send queue (megabytes), where it is
    /// cold in the CPU cache when the kernel sends it and where the fair
    /// scheduler can no longer put a small message ahead of it. Measured on
    /// loopback (100 channels echoing 64 KiB messages): 1.8 times the
    /// throughput. Applied by `MuxClient::connect` and
    /// `MuxServerBuilder::tune_tcp` (feature `tokio`).
    pub notsent_lowat: Option<u32>,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            variant: MuxVariant::B,
            max_channels: 10_000,
            slots: 64,
            slot_quota: 256 << 10,
            receive_window: 256 << 10,
            implicit_quota: 256 << 10,
            max_inner_frame: 64 << 10,
            max_buffered_per_channel: 256 << 10,
            max_buffered_total: 64 << 20,
            strict_channel_ids: true,
            delta_base: DeltaBase::FollowIdentity,
            fallback_rule: FallbackRule::ZeroGrant,
            max_slots: 1 << 32,
            channel: Config::default(),
            notsent_lowat: Some(16 << 10),
        }
    }
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl MuxConfig {
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
    /// Sets [`MuxConfig::variant`].
    variant: MuxVariant,
    /// Sets [`MuxConfig::max_channels`].
    max_channels: usize,
    /// Sets [`MuxConfig::slots`].
    slots: u64,
    /// Sets [`MuxConfig::slot_quota`].
    slot_quota: u64,
    /// Sets [`MuxConfig::receive_window`].
    receive_window: u64,
    /// Sets [`MuxConfig::implicit_quota`].
    implicit_quota: u64,
    /// Sets [`MuxConfig::max_inner_frame`] (at least 1).
    max_inner_frame: usize,
    /// Sets [`MuxConfig::max_buffered_per_channel`].
    max_buffered_per_channel: usize,
    /// Sets [`MuxConfig::max_buffered_total`].
    max_buffered_total: usize,
    /// Sets [`MuxConfig::strict_channel_ids`].
    strict_channel_ids: bool,
    /// Sets [`MuxConfig::delta_base`].
    delta_base: DeltaBase,
    /// Sets [`MuxConfig::fallback_rule`].
    fallback_rule: FallbackRule,
    /// Sets [`MuxConfig::max_slots`].
    max_slots: u64,
    /// Sets [`MuxConfig::channel`].
    channel: weft_core::Config,
    /// Sets [`MuxConfig::notsent_lowat`].
    notsent_lowat: Option<u32>,
}
