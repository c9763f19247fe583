//! orderctl
fn main() {}
