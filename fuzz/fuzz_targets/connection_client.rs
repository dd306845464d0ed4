//! A client-role `Connection` fed arbitrary bytes, hand-made frames and
//! honest server traffic, interleaved with application commands; see
//! `weft_fuzz::conn` for the invariants.
#![no_main]

#[global_allocator]
static ALLOC: weft_fuzz::CountingAlloc = weft_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|case: weft_fuzz::conn::Case| {
    weft_fuzz::conn::run(weft_core::Role::Client, case).report();
});
