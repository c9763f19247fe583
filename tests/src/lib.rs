//! Cross-service end-to-end suite for orderflow; the tests live in `tests/`.
