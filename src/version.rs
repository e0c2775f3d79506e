//! What this build is: the crate's version and the git revision it was built from (`build.rs`
//! finds it; `unknown` when neither git nor `SESSIONGATE_REVISION` told).

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision (12 hex digits), the `SESSIONGATE_REVISION` a build was given, or
/// `unknown`.
pub const REVISION: &str = env!("SESSIONGATE_REVISION");

/// `0.1.0 (revision 1a2b3c4d5e6f)`: what `sessiongate --version` prints after the name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("SESSIONGATE_REVISION"),
    ")"
);
