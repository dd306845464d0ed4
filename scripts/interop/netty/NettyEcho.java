/*
 * Netty WebSocket peer for weft's per-frame deflate interop checks.
 *
 *   java NettyEcho server [--port N] [--names deflate-frame,x-webkit-deflate-frame]
 *                         [--permessage] [--params] [--respond k[=v]]... [--aggregate] [--level N]
 *   java NettyEcho client --url ws://127.0.0.1:PORT/ [--offer NAME]... [--param k[=v]]...
 *                         [--messages N] [--expect NAME|none] [--level N]
 *
 * server: echoes every text/binary message on any path. Per-frame deflate is
 *   Netty's stock DeflateFrameServerExtensionHandshaker, restricted to --names;
 *   --permessage also offers Netty's permessage-deflate (listed first, as in
 *   WebSocketServerCompressionHandler). --params swaps in InteropPerFrame's
 *   handshaker (Netty's codec, parameters honoured); --respond adds a
 *   parameter to its answer. Frames are echoed one by one (fragmentation
 *   preserved) unless --aggregate. Prints {"event":"listening","port":N}, then
 *   one {"event":"handshake",...} line per connection with the offer and answer.
 *
 * client: offers the given extensions (stock DeflateFrameClientExtensionHandshaker
 *   for deflate-frame / x-webkit-deflate-frame, or InteropPerFrame's when --param
 *   is given; PerMessageDeflateClientExtensionHandshaker for permessage-deflate),
 *   sends --messages messages (text with multi-byte UTF-8 and binary,
 *   compressible and random, 0 B to 256 KiB, half of them in three fragments),
 *   verifies every echo, closes, prints one JSON line, exits 1 on failure.
 */

import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelDuplexHandler;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.ChannelPromise;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.handler.codec.http.DefaultHttpHeaders;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpClientCodec;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.CloseWebSocketFrame;
import io.netty.handler.codec.http.websocketx.ContinuationWebSocketFrame;
import io.netty.handler.codec.http.websocketx.PingWebSocketFrame;
import io.netty.handler.codec.http.websocketx.PongWebSocketFrame;
import io.netty.handler.codec.http.websocketx.TextWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketClientHandshaker;
import io.netty.handler.codec.http.websocketx.WebSocketClientHandshakerFactory;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrameAggregator;
import io.netty.handler.codec.http.websocketx.WebSocketServerProtocolConfig;
import io.netty.handler.codec.http.websocketx.WebSocketServerProtocolHandler;
import io.netty.handler.codec.http.websocketx.WebSocketVersion;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketClientExtensionHandler;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketClientExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketExtensionData;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketServerExtension;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketServerExtensionHandler;
import io.netty.handler.codec.http.websocketx.extensions.WebSocketServerExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.compression.DeflateFrameClientExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.compression.DeflateFrameServerExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.compression.InteropPerFrame;
import io.netty.handler.codec.http.websocketx.extensions.compression.PerMessageDeflateClientExtensionHandshaker;
import io.netty.handler.codec.http.websocketx.extensions.compression.PerMessageDeflateServerExtensionHandshaker;
import io.netty.util.Version;

import java.io.ByteArrayOutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public final class NettyEcho {
    static final int MAX_FRAME = 64 << 20;
    static final String EXT = HttpHeaderNames.SEC_WEBSOCKET_EXTENSIONS.toString();

    // ---------------------------------------------------------------- args

    static final class Args {
        final Map<String, List<String>> values = new LinkedHashMap<>();
        final Set<String> flags = new LinkedHashSet<>();

        Args(String[] argv, int from, Set<String> flagNames) {
            for (int i = from; i < argv.length; i++) {
                String a = argv[i];
                if (flagNames.contains(a)) {
                    flags.add(a);
                } else if (a.startsWith("--") && i + 1 < argv.length) {
                    values.computeIfAbsent(a, k -> new ArrayList<>()).add(argv[++i]);
                } else {
                    throw new IllegalArgumentException("bad argument " + a);
                }
            }
        }

        String value(String k, String dflt) {
            List<String> v = values.get(k);
            return v == null ? dflt : v.get(v.size() - 1);
        }

        List<String> all(String k) {
            return values.getOrDefault(k, new ArrayList<>());
        }

        boolean flag(String k) {
            return flags.contains(k);
        }
    }

    static Map<String, String> params(List<String> specs) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String s : specs) {
            int eq = s.indexOf('=');
            if (eq < 0) {
                m.put(s, null);
            } else {
                m.put(s.substring(0, eq), s.substring(eq + 1));
            }
        }
        return m;
    }

    static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static synchronized void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    // ---------------------------------------------------------------- shared handlers

    /** Records the Sec-WebSocket-Extensions header of the upgrade request and response. */
    static final class HeaderRecorder extends ChannelDuplexHandler {
        final boolean server;
        volatile String offered;
        volatile String answered;
        final CompletableFuture<Void> done = new CompletableFuture<>();

        // Wire-level data frames: this handler sits between Netty's frame
        // codec and the extension codec, so it sees frames as sent/received.
        volatile long inFrames, inCompressed, inBytes, outFrames, outCompressed, outBytes;

        HeaderRecorder(boolean server) {
            this.server = server;
        }

        static boolean isData(Object msg) {
            return msg instanceof TextWebSocketFrame || msg instanceof BinaryWebSocketFrame
                   || msg instanceof ContinuationWebSocketFrame;
        }

        String stats() {
            return "\"wire\":{\"in_frames\":" + inFrames + ",\"in_rsv1\":" + inCompressed
                   + ",\"in_bytes\":" + inBytes + ",\"out_frames\":" + outFrames
                   + ",\"out_rsv1\":" + outCompressed + ",\"out_bytes\":" + outBytes + "}";
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) throws Exception {
            if (server) {
                emit("{\"event\":\"closed\",\"offered\":" + json(offered) + ",\"answered\":"
                     + json(answered) + "," + stats() + "}");
            }
            super.channelInactive(ctx);
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
            if (isData(msg)) {
                WebSocketFrame f = (WebSocketFrame) msg;
                inFrames++;
                inBytes += f.content().readableBytes();
                if ((f.rsv() & 4) != 0) {
                    inCompressed++;
                }
            }
            if (server && msg instanceof HttpRequest) {
                offered = ((HttpRequest) msg).headers().get(EXT);
            } else if (!server && msg instanceof HttpResponse) {
                answered = ((HttpResponse) msg).headers().get(EXT);
                done.complete(null);
            }
            super.channelRead(ctx, msg);
        }

        @Override
        public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) throws Exception {
            if (isData(msg)) {
                WebSocketFrame f = (WebSocketFrame) msg;
                outFrames++;
                outBytes += f.content().readableBytes();
                if ((f.rsv() & 4) != 0) {
                    outCompressed++;
                }
            }
            if (server && msg instanceof HttpResponse) {
                HttpResponse r = (HttpResponse) msg;
                answered = r.headers().get(EXT);
                emit("{\"event\":\"handshake\",\"status\":" + r.status().code()
                     + ",\"offered\":" + json(offered) + ",\"answered\":" + json(answered) + "}");
            } else if (!server && msg instanceof HttpRequest) {
                offered = ((HttpRequest) msg).headers().get(EXT);
            }
            super.write(ctx, msg, promise);
        }
    }

    // ---------------------------------------------------------------- server

    /** Netty's stock per-frame handshaker, restricted to some extension names. */
    static WebSocketServerExtensionHandshaker onlyNames(final Set<String> names,
                                                        final WebSocketServerExtensionHandshaker inner) {
        return new WebSocketServerExtensionHandshaker() {
            @Override
            public WebSocketServerExtension handshakeExtension(WebSocketExtensionData data) {
                return names.contains(data.name()) ? inner.handshakeExtension(data) : null;
            }
        };
    }

    static final class ServerEcho extends SimpleChannelInboundHandler<WebSocketFrame> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, WebSocketFrame f) {
            if (f instanceof TextWebSocketFrame || f instanceof BinaryWebSocketFrame
                || f instanceof ContinuationWebSocketFrame) {
                ctx.writeAndFlush(f.retain()).addListener(fut -> {
                    if (!fut.isSuccess()) {
                        emit("{\"event\":\"error\",\"error\":" + json("echo write: " + fut.cause()) + "}");
                        ctx.close();
                    }
                });
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            emit("{\"event\":\"error\",\"error\":" + json(String.valueOf(cause)) + "}");
            ctx.close();
        }
    }

    @SuppressWarnings("deprecation")
    static void server(Args a) throws Exception {
        final int level = Integer.parseInt(a.value("--level", "6"));
        final Set<String> names = new LinkedHashSet<>(
            Arrays.asList(a.value("--names", "deflate-frame,x-webkit-deflate-frame").split(",")));
        final Map<String, String> respond = params(a.all("--respond"));
        final boolean custom = a.flag("--params") || !respond.isEmpty();
        final boolean permessage = a.flag("--permessage");
        final boolean aggregate = a.flag("--aggregate");

        final List<WebSocketServerExtensionHandshaker> hs = new ArrayList<>();
        if (permessage) {
            hs.add(new PerMessageDeflateServerExtensionHandshaker());
        }
        if (custom) {
            hs.add(InteropPerFrame.server(level, names, respond));
        } else {
            hs.add(onlyNames(names, new DeflateFrameServerExtensionHandshaker(level)));
        }
        final WebSocketServerProtocolConfig cfg = WebSocketServerProtocolConfig.newBuilder()
            .websocketPath("/")
            .checkStartsWith(true)
            .allowExtensions(true)
            .maxFramePayloadLength(MAX_FRAME)
            .handshakeTimeoutMillis(10000)
            .build();

        EventLoopGroup boss = new NioEventLoopGroup(1);
        EventLoopGroup workers = new NioEventLoopGroup(2);
        ServerBootstrap b = new ServerBootstrap()
            .group(boss, workers)
            .channel(NioServerSocketChannel.class)
            .childOption(ChannelOption.TCP_NODELAY, true)
            .childHandler(new ChannelInitializer<SocketChannel>() {
                @Override
                protected void initChannel(SocketChannel ch) {
                    ChannelPipeline p = ch.pipeline();
                    p.addLast(new HttpServerCodec());
                    p.addLast(new HttpObjectAggregator(65536));
                    p.addLast(new HeaderRecorder(true));
                    p.addLast(new WebSocketServerExtensionHandler(
                        hs.toArray(new WebSocketServerExtensionHandshaker[0])));
                    p.addLast(new WebSocketServerProtocolHandler(cfg));
                    if (aggregate) {
                        p.addLast(new WebSocketFrameAggregator(MAX_FRAME));
                    }
                    p.addLast(new ServerEcho());
                }
            });
        Channel ch = b.bind(new InetSocketAddress("127.0.0.1", Integer.parseInt(a.value("--port", "0"))))
            .sync().channel();
        emit("{\"event\":\"listening\",\"port\":" + ((InetSocketAddress) ch.localAddress()).getPort()
             + ",\"netty\":" + json(nettyVersion()) + ",\"names\":" + json(String.join(",", names))
             + ",\"params\":" + custom + ",\"respond\":" + json(respond.toString())
             + ",\"permessage\":" + permessage + ",\"aggregate\":" + aggregate + "}");
        ch.closeFuture().sync();
    }

    static String nettyVersion() {
        Version v = Version.identify().get("netty-codec-http");
        return v == null ? "unknown" : v.artifactVersion();
    }

    // ---------------------------------------------------------------- client

    static final class Msg {
        final boolean text;
        final byte[] data;
        final boolean fragmented;
        final String kind;

        Msg(boolean text, byte[] data, boolean fragmented, String kind) {
            this.text = text;
            this.data = data;
            this.fragmented = fragmented;
            this.kind = kind;
        }
    }

    static final int[] SIZES = {0, 1, 125, 126, 1000, 4096, 65535, 65536, 256 << 10};

    /** Truncates UTF-8 bytes to at most n bytes at a character boundary. */
    static byte[] utf8Prefix(byte[] b, int n) {
        int end = Math.min(n, b.length);
        while (end > 0 && end < b.length && (b[end] & 0xC0) == 0x80) {
            end--;
        }
        return Arrays.copyOf(b, end);
    }

    static Msg message(int i) {
        int size = SIZES[i % SIZES.length];
        boolean fragmented = (i / SIZES.length) % 2 == 1;
        Random rnd = new Random(0x5eed + i);
        switch (i % 4) {
            case 0: {
                String unit = "weft ✓ κόσμε 𝄞 netty ";
                StringBuilder sb = new StringBuilder();
                while (sb.length() < size + unit.length()) {
                    sb.append(unit);
                }
                return new Msg(true, utf8Prefix(sb.toString().getBytes(StandardCharsets.UTF_8), size),
                               fragmented, "text-repetitive");
            }
            case 1: {
                byte[] d = new byte[size];
                for (int k = 0; k < size; k++) {
                    d[k] = (byte) ((k * 7 + i) % 61);
                }
                return new Msg(false, d, fragmented, "binary-pattern");
            }
            case 2: {
                byte[] d = new byte[size];
                rnd.nextBytes(d);
                return new Msg(false, d, fragmented, "binary-random");
            }
            default: {
                int[] cps = {'a', 'Z', '0', ' ', 0xe9, 0x3ba, 0x3cc, 0x2713, 0x4e2d, 0x1d11e, 0x1f600};
                StringBuilder sb = new StringBuilder();
                int bytes = 0;
                while (bytes < size + 4) {
                    int cp = cps[rnd.nextInt(cps.length)];
                    sb.appendCodePoint(cp);
                    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                }
                return new Msg(true, utf8Prefix(sb.toString().getBytes(StandardCharsets.UTF_8), size),
                               fragmented, "text-random");
            }
        }
    }

    static final class Echo {
        final boolean text;
        final byte[] data;
        final String error;

        Echo(boolean text, byte[] data, String error) {
            this.text = text;
            this.data = data;
            this.error = error;
        }
    }

    static final class ClientHandler extends SimpleChannelInboundHandler<Object> {
        final WebSocketClientHandshaker hs;
        final CompletableFuture<Void> handshake = new CompletableFuture<>();
        final CompletableFuture<CloseWebSocketFrame> closed = new CompletableFuture<>();
        final BlockingQueue<Echo> echoes = new LinkedBlockingQueue<>();
        ByteArrayOutputStream partial;
        boolean partialText;

        ClientHandler(WebSocketClientHandshaker hs) {
            this.hs = hs;
        }

        @Override
        public void channelActive(ChannelHandlerContext ctx) {
            hs.handshake(ctx.channel());
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) {
            handshake.completeExceptionally(new IllegalStateException("connection closed during handshake"));
            closed.complete(null);
            echoes.add(new Echo(false, null, "connection closed"));
        }

        @Override
        protected void channelRead0(ChannelHandlerContext ctx, Object msg) {
            if (!hs.isHandshakeComplete()) {
                try {
                    hs.finishHandshake(ctx.channel(), (FullHttpResponse) msg);
                    handshake.complete(null);
                } catch (RuntimeException e) {
                    handshake.completeExceptionally(e);
                    ctx.close();
                }
                return;
            }
            if (msg instanceof FullHttpResponse) {
                fail(ctx, "unexpected HTTP response after handshake");
                return;
            }
            WebSocketFrame f = (WebSocketFrame) msg;
            if (f.rsv() != 0) {
                fail(ctx, "frame with RSV bits " + f.rsv() + " after extension decoding");
                return;
            }
            if (f instanceof TextWebSocketFrame || f instanceof BinaryWebSocketFrame) {
                if (partial != null) {
                    fail(ctx, "new data frame while a fragmented message is open");
                    return;
                }
                partial = new ByteArrayOutputStream();
                partialText = f instanceof TextWebSocketFrame;
            } else if (f instanceof ContinuationWebSocketFrame) {
                if (partial == null) {
                    fail(ctx, "continuation frame without a message");
                    return;
                }
            } else if (f instanceof PingWebSocketFrame) {
                ctx.writeAndFlush(new PongWebSocketFrame(f.content().retain()));
                return;
            } else if (f instanceof PongWebSocketFrame) {
                return;
            } else if (f instanceof CloseWebSocketFrame) {
                closed.complete((CloseWebSocketFrame) f.retain());
                return;
            }
            partial.writeBytes(ByteBufUtil.getBytes(f.content()));
            if (f.isFinalFragment()) {
                echoes.add(new Echo(partialText, partial.toByteArray(), null));
                partial = null;
            }
        }

        void fail(ChannelHandlerContext ctx, String why) {
            echoes.add(new Echo(false, null, why));
            ctx.close();
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            handshake.completeExceptionally(cause);
            echoes.add(new Echo(false, null, String.valueOf(cause)));
            ctx.close();
        }
    }

    /**
     * The frames of a message. {@code emptyFragments} false: never a
     * non-final empty fragment (Netty 4.1.48's permessage-deflate encoder
     * throws "cannot compress content buffer" on one), so messages under 3
     * bytes go unfragmented.
     */
    static List<WebSocketFrame> frames(Msg m, boolean emptyFragments) {
        List<WebSocketFrame> out = new ArrayList<>();
        if (!m.fragmented || (!emptyFragments && m.data.length < 3)) {
            ByteBuf b = Unpooled.wrappedBuffer(m.data);
            out.add(m.text ? new TextWebSocketFrame(true, 0, b) : new BinaryWebSocketFrame(true, 0, b));
            return out;
        }
        // Three fragments at arbitrary byte offsets (text may split a character).
        int third = m.data.length / 3;
        int[] cuts = {0, third, 2 * third, m.data.length};
        for (int k = 0; k < 3; k++) {
            ByteBuf b = Unpooled.wrappedBuffer(Arrays.copyOfRange(m.data, cuts[k], cuts[k + 1]));
            boolean fin = k == 2;
            if (k > 0) {
                out.add(new ContinuationWebSocketFrame(fin, 0, b));
            } else if (m.text) {
                out.add(new TextWebSocketFrame(fin, 0, b));
            } else {
                out.add(new BinaryWebSocketFrame(fin, 0, b));
            }
        }
        return out;
    }

    static int client(Args a) throws Exception {
        final URI uri = new URI(a.value("--url", "ws://127.0.0.1:9001/"));
        final int count = Integer.parseInt(a.value("--messages", "36"));
        final int level = Integer.parseInt(a.value("--level", "6"));
        final String expect = a.value("--expect", null);
        final Map<String, String> offerParams = params(a.all("--param"));
        final List<String> offers = a.all("--offer");
        final List<WebSocketClientExtensionHandshaker> hs = new ArrayList<>();
        for (String o : offers) {
            switch (o) {
                case "deflate-frame":
                case "x-webkit-deflate-frame":
                    hs.add(offerParams.isEmpty()
                           ? new DeflateFrameClientExtensionHandshaker(level, o.startsWith("x-webkit"))
                           : InteropPerFrame.client(level, o, offerParams));
                    break;
                case "permessage-deflate":
                    hs.add(new PerMessageDeflateClientExtensionHandshaker());
                    break;
                default:
                    throw new IllegalArgumentException("unknown extension " + o);
            }
        }

        final WebSocketClientHandshaker handshaker = WebSocketClientHandshakerFactory.newHandshaker(
            uri, WebSocketVersion.V13, null, !hs.isEmpty(), new DefaultHttpHeaders(), MAX_FRAME);
        final ClientHandler handler = new ClientHandler(handshaker);
        final HeaderRecorder rec = new HeaderRecorder(false);
        EventLoopGroup group = new NioEventLoopGroup(1);
        String error = null;
        int done = 0;
        String offered = null;
        String answered = null;
        try {
            Bootstrap b = new Bootstrap()
                .group(group)
                .channel(NioSocketChannel.class)
                .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, 5000)
                .option(ChannelOption.TCP_NODELAY, true)
                .handler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        ChannelPipeline p = ch.pipeline();
                        p.addLast(new HttpClientCodec());
                        p.addLast(new HttpObjectAggregator(65536));
                        p.addLast(rec);
                        if (!hs.isEmpty()) {
                            p.addLast(new WebSocketClientExtensionHandler(
                                hs.toArray(new WebSocketClientExtensionHandshaker[0])));
                        }
                        p.addLast(handler);
                    }
                });
            ChannelFuture cf = b.connect(uri.getHost(), uri.getPort());
            if (!cf.await(6, TimeUnit.SECONDS) || !cf.isSuccess()) {
                throw new IllegalStateException("connect failed: " + cf.cause());
            }
            Channel ch = cf.channel();
            try {
                handler.handshake.get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                throw new IllegalStateException("handshake: " + e.getCause());
            } finally {
                offered = rec.offered;
                answered = rec.answered;
            }
            String negotiated = negotiatedName(answered);
            if (expect != null && !expect.equals(negotiated.isEmpty() ? "none" : negotiated)) {
                throw new IllegalStateException("expected " + expect + " to be negotiated, server answered "
                                                + json(answered));
            }
            for (int i = 0; i < count; i++) {
                Msg m = message(i);
                for (WebSocketFrame f : frames(m, !negotiated.equals("permessage-deflate"))) {
                    ch.write(f).addListener(fut -> {
                        if (!fut.isSuccess()) {
                            handler.echoes.add(new Echo(false, null, "write failed: " + fut.cause()));
                        }
                    });
                }
                ch.flush();
                Echo e = handler.echoes.poll(20, TimeUnit.SECONDS);
                String where = "message " + i + " (" + m.kind + ", " + m.data.length + " B"
                               + (m.fragmented ? ", fragmented" : "") + ")";
                if (e == null) {
                    throw new IllegalStateException(where + ": no echo within 20 s");
                }
                if (e.error != null) {
                    throw new IllegalStateException(where + ": " + e.error);
                }
                if (e.text != m.text || !Arrays.equals(e.data, m.data)) {
                    throw new IllegalStateException(where + ": wrong echo (" + (e.text ? "text" : "binary")
                                                    + ", " + e.data.length + " B)");
                }
                done++;
            }
            boolean perFrame = negotiated.endsWith("deflate-frame");
            if (perFrame && (rec.inCompressed == 0 || rec.outCompressed == 0)) {
                throw new IllegalStateException(negotiated + " negotiated but not used both ways: " + rec.stats());
            }
            if (negotiated.isEmpty() && (rec.inCompressed != 0 || rec.outCompressed != 0)) {
                throw new IllegalStateException("RSV1 frames without an extension: " + rec.stats());
            }
            ch.writeAndFlush(new CloseWebSocketFrame(1000, "done"));
            CloseWebSocketFrame close = handler.closed.get(5, TimeUnit.SECONDS);
            if (close == null) {
                throw new IllegalStateException("connection closed without a close frame");
            }
            if (close.statusCode() != 1000) {
                throw new IllegalStateException("server closed with " + close.statusCode() + " "
                                                + close.reasonText());
            }
            close.release();
            ch.close().await(5, TimeUnit.SECONDS);
        } catch (Exception e) {
            error = e.getMessage() == null ? e.toString() : e.getMessage();
            if (offered == null) {
                offered = rec.offered;
                answered = rec.answered;
            }
        } finally {
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
        }
        String common = ",\"netty\":" + json(nettyVersion()) + ",\"offered\":" + json(offered)
                        + ",\"answered\":" + json(answered) + ",\"negotiated\":" + json(negotiatedName(answered))
                        + ",\"messages\":" + done + "," + rec.stats();
        if (error != null) {
            emit("{\"ok\":false,\"error\":" + json(error) + common + "}");
            return 1;
        }
        emit("{\"ok\":true" + common + "}");
        return 0;
    }

    static String negotiatedName(String header) {
        if (header == null) {
            return "";
        }
        String first = header.split(",")[0];
        return first.split(";")[0].trim();
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length < 1) {
            System.err.println("usage: NettyEcho server|client [options]");
            System.exit(2);
        }
        Set<String> flags = new LinkedHashSet<>(Arrays.asList("--permessage", "--params", "--aggregate"));
        Args a = new Args(argv, 1, flags);
        if (argv[0].equals("server")) {
            server(a);
        } else if (argv[0].equals("client")) {
            System.exit(client(a));
        } else {
            System.err.println("usage: NettyEcho server|client [options]");
            System.exit(2);
        }
    }
}
