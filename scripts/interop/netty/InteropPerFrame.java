/*
 * Per-frame deflate handshakers WITH parameters, built on Netty's own
 * per-frame deflate codec (PerFrameDeflateEncoder / PerFrameDeflateDecoder).
 *
 * Netty 4.1.48's DeflateFrameServerExtensionHandshaker and
 * DeflateFrameClientExtensionHandshaker never send a parameter and refuse any
 * offer/answer that carries one, although the codec underneath supports a
 * window size (encoder) and no-context mode (encoder and decoder). Those codec
 * classes are package-private, hence this file lives in Netty's package (it is
 * compiled onto the class path next to the Netty jars; they are not sealed).
 *
 * Parameter semantics follow draft-tyoshino-hybi-websocket-perframe-deflate-06
 * (and pywebsocket): a parameter binds the compressor of the endpoint that
 * RECEIVES it. In an offer, max_window_bits=N / no_context_takeover bind the
 * server's compressor; in the answer, the client's.
 *
 * Netty's no-context mode resets the compressor/decompressor after each FINAL
 * frame (it was written for permessage-deflate), so a no-context encoder is
 * only per-frame correct when messages are sent unfragmented; the echo server
 * aggregates messages for those checks. A no-context DECODER is the strict
 * check that the peer really resets: a peer that keeps its window makes the
 * fresh inflater fail ("invalid distance too far back").
 */
package io.netty.handler.codec.http.websocketx.extensions.compression;

import io.netty.handler.codec.http.websocketx.extensions.WebSocketClientExtension;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketClientExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketExtensionData;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketExtensionDecoder;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketExtensionEncoder;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketServerExtension;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketServerExtensionHandshaker;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

public final class InteropPerFrame {
    public static final String MAX_WINDOW_BITS = "max_window_bits";
    public static final String NO_CONTEXT_TAKEOVER = "no_context_takeover";

    private InteropPerFrame() {
    }

    /** Parsed parameters, or null when they are invalid/unknown. */
    static final class Params {
        int windowBits = 15;
        boolean noContext;

        static Params parse(Map<String, String> params) {
            Params p = new Params();
            for (Map.Entry<String, String> e : params.entrySet()) {
                String k = e.getKey();
                String v = e.getValue();
                if (MAX_WINDOW_BITS.equals(k)) {
                    if (v == null) {
                        return null;
                    }
                    try {
                        p.windowBits = Integer.parseInt(v);
                    } catch (NumberFormatException ex) {
                        return null;
                    }
                    // The draft allows 8..15, but Netty's zlib encoders take
                    // 9..15 for raw deflate ("windowBits: 8 (expected: 9-15)"),
                    // so 8 cannot be honoured: decline it.
                    if (p.windowBits < 9 || p.windowBits > 15) {
                        return null;
                    }
                } else if (NO_CONTEXT_TAKEOVER.equals(k)) {
                    if (v != null) {
                        return null;
                    }
                    p.noContext = true;
                } else {
                    return null;
                }
            }
            return p;
        }
    }

    private static final class Ext implements WebSocketServerExtension, WebSocketClientExtension {
        final String name;
        final int level;
        final int encoderWindowBits;
        final boolean encoderNoContext;
        final boolean decoderNoContext;
        final Map<String, String> response;

        Ext(String name, int level, int encoderWindowBits, boolean encoderNoContext,
            boolean decoderNoContext, Map<String, String> response) {
            this.name = name;
            this.level = level;
            this.encoderWindowBits = encoderWindowBits;
            this.encoderNoContext = encoderNoContext;
            this.decoderNoContext = decoderNoContext;
            this.response = response;
        }

        @Override
        public int rsv() {
            return RSV1;
        }

        @Override
        public WebSocketExtensionEncoder newExtensionEncoder() {
            return new PerFrameDeflateEncoder(level, encoderWindowBits, encoderNoContext);
        }

        @Override
        public WebSocketExtensionDecoder newExtensionDecoder() {
            return new PerFrameDeflateDecoder(decoderNoContext);
        }

        @Override
        public WebSocketExtensionData newReponseData() {
            return new WebSocketExtensionData(name, response);
        }
    }

    /**
     * Server handshaker: accepts the listed names, honours offered
     * max_window_bits / no_context_takeover on its encoder, declines unknown
     * parameters, and answers with {@code respond} (binding the client's
     * compressor; no_context_takeover there also makes our decoder reset).
     */
    public static WebSocketServerExtensionHandshaker server(final int level, final Set<String> names,
                                                            final Map<String, String> respond) {
        return new WebSocketServerExtensionHandshaker() {
            @Override
            public WebSocketServerExtension handshakeExtension(WebSocketExtensionData data) {
                if (!names.contains(data.name())) {
                    return null;
                }
                Params p = Params.parse(data.parameters());
                if (p == null) {
                    return null;
                }
                return new Ext(data.name(), level, p.windowBits, p.noContext,
                               respond.containsKey(NO_CONTEXT_TAKEOVER), new LinkedHashMap<>(respond));
            }
        };
    }

    /**
     * Client handshaker: offers {@code name} with {@code offer} parameters
     * (no_context_takeover there makes our decoder reset, i.e. checks that the
     * server honours it), accepts only an answer with the same name, and
     * honours answered max_window_bits / no_context_takeover on its encoder.
     */
    public static WebSocketClientExtensionHandshaker client(final int level, final String name,
                                                            final Map<String, String> offer) {
        return new WebSocketClientExtensionHandshaker() {
            @Override
            public WebSocketExtensionData newRequestData() {
                return new WebSocketExtensionData(name, new LinkedHashMap<>(offer));
            }

            @Override
            public WebSocketClientExtension handshakeExtension(WebSocketExtensionData data) {
                if (!name.equals(data.name())) {
                    return null;
                }
                Params p = Params.parse(data.parameters());
                if (p == null) {
                    return null;
                }
                return new Ext(name, level, p.windowBits, p.noContext,
                               offer.containsKey(NO_CONTEXT_TAKEOVER), null);
            }
        };
    }
}
