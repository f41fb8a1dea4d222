//! How the function binary is linked (only its own link: the dependencies compile as usual, so
//! a dependency that also builds a shared library still links):
//!
//! - position-dependent (`-no-pie`): it needs no dynamic relocation table (about 0.9 MB less to
//!   store and to load at a cold start);
//! - in the release profile (what is deployed; `panic = "abort"` there), without unwind tables
//!   (`no-unwind-tables.ld`): nothing unwinds, and a panic still prints its message before the
//!   process ends; the tables were about 0.9 MB, kept only for backtraces, which a stripped
//!   binary cannot name anyway. Debug builds unwind, and keep them.
fn main() {
    println!("cargo::rustc-link-arg-bin=bootstrap=-no-pie");
    println!("cargo::rerun-if-changed=no-unwind-tables.ld");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        let script = std::path::Path::new(&dir).join("no-unwind-tables.ld");
        println!("cargo::rustc-link-arg-bin=bootstrap=-Wl,-T,{}", script.display());
    }
}
