//! Helpers shared by weft tests.
