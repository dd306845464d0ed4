//! The negotiated extensions, in order, for each direction.
//!
//! The chains keep the RSV rules of both granularities (see the module docs
//! of [`ext`](super)) and own the reusable output buffer the coders write
//! into.

use super::{
    Coders, Extension, ExtensionError, FrameDecoder, FrameEncoder, MessageDecoder, MessageEncoder,
    SendHints,
};
use crate::proto::{Frame, OpCode, ProtocolError, Rsv};
use bytes::BytesMut;

/// The part of the output buffer kept for the next call: beyond this the
/// buffer is dropped once its bytes are split off (large messages allocate
/// per message, which their size dwarfs anyway).
const KEEP_OUTPUT: usize = 64 << 10;

struct Stage<C: ?Sized> {
    name: String,
    rsv: Rsv,
    /// Per-message stages: the message in progress is transformed.
    active: bool,
    coder: Box<C>,
}

impl<C: ?Sized> Stage<C> {
    fn new(name: String, rsv: Rsv, coder: Box<C>) -> Self {
        Stage {
            name,
            rsv,
            active: false,
            coder,
        }
    }
}

/// Replaces `frame.payload` with what a coder wrote into `out`, keeping the
/// rest of `out`'s allocation for the next call unless it is large.
#[inline]
fn take_output(frame: &mut Frame, out: &mut BytesMut) {
    frame.payload = out.split().freeze();
    if out.capacity() > KEEP_OUTPUT {
        *out = BytesMut::new();
    }
}

/// The outgoing extensions in negotiated order.
#[derive(Default)]
pub(crate) struct EncoderChain {
    message: Vec<Stage<dyn MessageEncoder>>,
    frame: Vec<Stage<dyn FrameEncoder>>,
    out: BytesMut,
}

/// The incoming extensions, run in reverse negotiated order.
#[derive(Default)]
pub(crate) struct DecoderChain {
    message: Vec<Stage<dyn MessageDecoder>>,
    frame: Vec<Stage<dyn FrameDecoder>>,
    rsv: Rsv,
    out: BytesMut,
}

impl std::fmt::Debug for EncoderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.message.iter().map(|s| &s.name))
            .entries(self.frame.iter().map(|s| &s.name))
            .finish()
    }
}

impl std::fmt::Debug for DecoderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.message.iter().map(|s| &s.name))
            .entries(self.frame.iter().map(|s| &s.name))
            .finish()
    }
}

/// Builds both chains from extensions in negotiated order (negotiation has
/// checked that no per-message extension follows a per-frame one).
pub(crate) fn build(extensions: Vec<Extension>) -> (EncoderChain, DecoderChain) {
    let mut enc = EncoderChain::default();
    let mut dec = DecoderChain::default();
    for ext in extensions {
        dec.rsv |= ext.rsv;
        match ext.coders {
            Coders::PerMessage(e, d) => {
                enc.message.push(Stage::new(ext.name.clone(), ext.rsv, e));
                dec.message.push(Stage::new(ext.name, ext.rsv, d));
            }
            Coders::PerFrame(e, d) => {
                enc.frame.push(Stage::new(ext.name.clone(), ext.rsv, e));
                dec.frame.push(Stage::new(ext.name, ext.rsv, d));
            }
            Coders::Passthrough => {}
        }
    }
    (enc, dec)
}

impl EncoderChain {
    /// True if no extension transforms outgoing frames.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.message.is_empty() && self.frame.is_empty()
    }

    /// Tells every encoder the connection is idle, and frees the output
    /// buffer.
    pub(crate) fn idle(&mut self) {
        self.message.iter_mut().for_each(|s| s.coder.idle());
        self.frame.iter_mut().for_each(|s| s.coder.idle());
        self.out = BytesMut::new();
    }

    /// Runs the per-message encoders on a whole message or one streamed
    /// fragment (the first carries a data opcode, the rest
    /// [`OpCode::Continuation`]), setting each transforming extension's
    /// RSV bits on the first.
    pub(crate) fn encode_message(
        &mut self,
        frame: &mut Frame,
        hints: &SendHints,
    ) -> Result<(), ProtocolError> {
        for stage in &mut self.message {
            if frame.opcode != OpCode::Continuation {
                stage.active = stage.rsv.is_empty()
                    || stage
                        .coder
                        .begin(frame.opcode, &frame.payload, frame.fin, hints);
                if stage.active {
                    frame.rsv |= stage.rsv;
                }
            }
            if stage.active {
                stage
                    .coder
                    .encode(&frame.payload, frame.fin, &mut self.out)
                    .map_err(|e| e.into_protocol(&stage.name))?;
                take_output(frame, &mut self.out);
            }
        }
        Ok(())
    }

    /// How prepared (broadcast) messages reach this connection: as the
    /// plain frame when nothing encodes, through the one per-message
    /// extension's [`SharedEncoder`](super::SharedEncoder) when that is all
    /// there is and it has one, else through this chain.
    pub(crate) fn broadcast_encoding(&self) -> crate::prepared::BroadcastEncoding {
        use crate::prepared::BroadcastEncoding;
        if self.is_empty() {
            return BroadcastEncoding::Plain;
        }
        match (self.message.as_slice(), self.frame.is_empty()) {
            ([stage], true) if !stage.rsv.is_empty() => match stage.coder.shared() {
                Some(encoder) => BroadcastEncoding::Shared {
                    rsv: stage.rsv,
                    encoder,
                },
                None => BroadcastEncoding::PerConnection,
            },
            _ => BroadcastEncoding::PerConnection,
        }
    }

    /// A message encoded by the shared encoder went out in place of one of
    /// ours: the per-message encoders drop their context.
    pub(crate) fn shared_sent(&mut self) {
        self.message.iter_mut().for_each(|s| s.coder.shared_sent());
    }

    /// Runs the per-frame encoders on one frame after fragmentation.
    pub(crate) fn encode_frame(
        &mut self,
        frame: &mut Frame,
        hints: &SendHints,
    ) -> Result<(), ProtocolError> {
        for stage in &mut self.frame {
            let transformed = stage
                .coder
                .encode(&frame.payload, hints, &mut self.out)
                .map_err(|e| e.into_protocol(&stage.name))?;
            if transformed {
                take_output(frame, &mut self.out);
                frame.rsv |= stage.rsv;
            } else {
                self.out.clear();
            }
        }
        Ok(())
    }
}

impl DecoderChain {
    /// The RSV bits some negotiated extension declared; any other bit on a
    /// data frame fails the connection before its payload is read.
    #[inline]
    pub(crate) fn allowed_rsv(&self) -> Rsv {
        self.rsv
    }

    /// True if no extension transforms incoming frames.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.message.is_empty() && self.frame.is_empty()
    }

    /// Tells every decoder the connection is idle, and frees the output
    /// buffer.
    pub(crate) fn idle(&mut self) {
        self.message.iter_mut().for_each(|s| s.coder.idle());
        self.frame.iter_mut().for_each(|s| s.coder.idle());
        self.out = BytesMut::new();
    }

    /// Decodes one data frame whose RSV bits are all declared: the stages
    /// in reverse negotiated order (so the per-frame ones, which come last,
    /// run first), each bounded by `budget`. Every declared bit is cleared.
    pub(crate) fn decode(&mut self, frame: &mut Frame, budget: usize) -> Result<(), ProtocolError> {
        for stage in self.frame.iter_mut().rev() {
            let marked = frame.rsv.intersects(stage.rsv);
            frame.rsv.remove(stage.rsv);
            let decoded = stage
                .coder
                .decode(marked, &frame.payload, budget, &mut self.out)
                .map_err(|e| e.into_protocol(&stage.name))?;
            if decoded {
                take_output(frame, &mut self.out);
            } else {
                self.out.clear();
            }
        }
        for stage in self.message.iter_mut().rev() {
            let marked = frame.rsv.intersects(stage.rsv);
            if frame.opcode != OpCode::Continuation {
                stage.active = marked || stage.rsv.is_empty();
            } else if marked {
                // RFC 7692 §6.1: the bits mark a message on its first frame
                // only.
                return Err(ExtensionError::protocol(format!(
                    "RSV bits {:?} set on a continuation frame",
                    frame.rsv & stage.rsv
                ))
                .into_protocol(&stage.name));
            }
            frame.rsv.remove(stage.rsv);
            if stage.active {
                stage
                    .coder
                    .decode(&frame.payload, frame.fin, budget, &mut self.out)
                    .map_err(|e| e.into_protocol(&stage.name))?;
                take_output(frame, &mut self.out);
            }
        }
        debug_assert!(
            frame.rsv.is_empty(),
            "undeclared bits pass the header check"
        );
        Ok(())
    }
}
