//! Builder accessors: what a setter set, the getter returns.

use weft_core::{Config, ServerBuilder};

#[test]
fn server_builder_getters_return_what_the_setters_set() {
    let b = ServerBuilder::new()
        .config(Config::default().max_message_size(123))
        .protocols(&["chat"]);
    assert_eq!(b.connection_config().max_message_size, 123);
    let select = b.handshake_options().protocol.as_ref().expect("a selector");
    assert_eq!(select(&["x", "chat"]).as_deref(), Some("chat"));
    assert!(ServerBuilder::new().handshake_options().protocol.is_none());
}
