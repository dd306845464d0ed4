//! The one seeded random number generator of the repository's tests,
//! examples and benches.

use rand::SeedableRng;
pub use rand::{Rng, RngCore};

/// The generator [`rng`] returns.
pub type SeededRng = rand::rngs::StdRng;

/// A deterministic generator: the same `seed` gives the same sequence on
/// every run (with the `rand` version of `Cargo.lock`), so a randomized
/// test or a generated bench payload repeats exactly.
pub fn rng(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let draw = |seed| {
            let mut r = rng(seed);
            [r.next_u64(), r.next_u64(), r.next_u64()]
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
