//! Cross-crate tests for ballot; see `tests/`.
